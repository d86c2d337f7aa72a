"""The driver's side of the run's buffer: one interface, `BufferClient`, with the Ray-shard and
Redis implementations behind it. Rollout actors add rows through their sink (actors/sinks.py);
the driver samples, relabels, refreshes, reads stats and releases through its client."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import ray

from ..learners.batch import TransitionBatch
from .buffer import check_capacity
from .ratelimit import SampleToInsertRatio
from .redis_buffer import RedisBuffer, RedisSpec
from .remote import BufferShard, RedisRefresherActor
from .wire import Schema


class BufferClient(Protocol):
    """What the run loop asks of the buffer, whichever backend holds it."""

    def sink_for(self, actor_id: int) -> str | RedisSpec:
        """Where rollout actor `actor_id` adds its rows (actors/sinks.py opens it)."""
    def sample_async(self, batch_size: int) -> Any:
        """Ask for a uniform sample; `ready` and `gather` take what this returns."""
    def ready(self, pending: Any, timeout: float = 0.0) -> bool: ...
    def gather(self, pending: Any) -> tuple[np.ndarray, TransitionBatch]:
        """(ids, rows) of a sample asked for with `sample_async`."""
    def relabel(self, ids: np.ndarray, teacher_q: np.ndarray, version: int) -> object:
        """New labels for these ids (rows evicted meanwhile are skipped); not waited for."""
    def attach_teacher(self, params: ray.actor.ActorHandle, net: str, obs_shape: tuple[int, ...],
                       n_actions: int) -> None:
        """Relabel in the background from this parameter server's teacher (`refresh_async`)."""
    def refresh_async(self, chunk: int) -> list[ray.ObjectRef]:
        """One background relabelling pass; each ref gives the rows it relabelled."""
    def stats(self) -> dict[str, float]: ...
    def release(self) -> None:
        """Stop rate limiting (a run ending: rollout actors hand over what they hold)."""
    def actors(self) -> list[ray.actor.ActorHandle]:
        """The buffer's own actors, ended with the run."""


class RedisBufferClient(RedisBuffer):
    """The driver's side of a Redis buffer: the same client surface as ShardedBuffer."""

    def __init__(self, spec: RedisSpec, *, seed: int = 0, options: dict | None = None) -> None:
        super().__init__(spec, seed=seed)
        self.r.delete(self.p + ":released")  # a run (re)starting: limited again
        self.options = options or {}
        self.refresher: ray.actor.ActorHandle | None = None

    def sink_for(self, actor_id: int) -> RedisSpec:
        return self.spec  # every actor writes to Redis itself

    def attach_teacher(self, params: ray.actor.ActorHandle, net: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        self.refresher = RedisRefresherActor.options(**self.options).remote(self.spec, params, net, obs_shape, n_actions)

    def refresh_async(self, chunk: int) -> list[ray.ObjectRef]:
        return [self.refresher.refresh.remote(chunk)] if self.refresher else []

    def actors(self) -> list[ray.actor.ActorHandle]:
        return [self.refresher] if self.refresher else []


def make_buffer(url: str, *, capacity: int, shards: int, prefix: str, chunk_size: int, schema: Schema,
                seed: int = 0, options: dict | None = None, name: str | None = None,
                limit: SampleToInsertRatio | None = None) -> ShardedBuffer | RedisBufferClient:
    """`ray`: Ray buffer shards; `redis://…` / `rediss://…`: the Redis backend. `options` place
    the buffer's own actors (shards, or the Redis refresher); `limit`: the rate limiter."""
    if url == "ray":
        return ShardedBuffer(shards, capacity, seed=seed, options=options, name=name, limit=limit)
    return RedisBufferClient(RedisSpec(url, prefix, capacity, chunk_size, schema, limit), seed=seed, options=options)


class ShardedBuffer:
    """Client side of the Ray buffer: actors write to their own shard; samples come from all."""

    def __init__(self, num_shards: int, capacity: int, *, seed: int = 0, options: dict | None = None,
                 name: str | None = None, limit: SampleToInsertRatio | None = None) -> None:
        """`limit`: each shard limits its own inserts and samples at this ratio and tolerance,
        sampling once it holds its share of the minimum size."""
        if num_shards < 1:
            raise ValueError(f"shard count {num_shards} is not valid: expected at least 1")
        check_capacity(capacity)
        per_shard = -(-capacity // num_shards)
        if limit is not None:
            limit = replace(limit, min_size_to_sample=-(-limit.min_size_to_sample // num_shards))
        self.names = [f"{name or 'qdistill-' + uuid.uuid4().hex[:8]}-shard-{i}" for i in range(num_shards)]
        self.shards = [BufferShard.options(name=n, **(options or {})).remote(per_shard, seed=seed + i, limit=limit)
                       for i, n in enumerate(self.names)]

    def sink_for(self, actor_id: int) -> str:
        """The name of the shard a rollout actor writes to."""
        return self.names[actor_id % len(self.shards)]

    def sample_async(self, batch_size: int) -> list[tuple[int, ray.ObjectRef]]:
        sizes = np.full(len(self.shards), batch_size // len(self.shards))
        sizes[: batch_size % len(self.shards)] += 1
        return [(i, s.sample.remote(int(n))) for i, (s, n) in enumerate(zip(self.shards, sizes)) if n > 0]

    @staticmethod
    def ready(refs: list[tuple[int, ray.ObjectRef]], timeout: float = 0.0) -> bool:
        """Whether a sample asked for with `sample_async` has come back (waiting up to `timeout`)."""
        waiting = [ref for _, ref in refs]
        return len(ray.wait(waiting, num_returns=len(waiting), timeout=timeout)[0]) == len(waiting)

    def release(self) -> None:
        """Stop rate limiting (a run ending: rollout actors hand over what they hold)."""
        ray.wait([s.release.remote() for s in self.shards], num_returns=len(self.shards), timeout=10)

    def gather(self, refs: list[tuple[int, ray.ObjectRef]]) -> tuple[np.ndarray, TransitionBatch]:
        """Global ids: a shard's own id × shard count + the shard's index."""
        parts = ray.get([ref for _, ref in refs])
        ids = np.concatenate([local * len(self.shards) + i for (i, _), (local, _) in zip(refs, parts)])
        return ids, TransitionBatch.concat([b for _, b in parts])

    def sample(self, batch_size: int) -> tuple[np.ndarray, TransitionBatch]:
        return self.gather(self.sample_async(batch_size))

    def relabel(self, ids: np.ndarray, teacher_q: np.ndarray, version: int) -> list[ray.ObjectRef]:
        """Send each shard the new labels of its own ids; each ref gives the rows it rewrote."""
        n = len(self.shards)
        return [shard.relabel.remote(ids[ids % n == i] // n, teacher_q[ids % n == i], version)
                for i, shard in enumerate(self.shards) if (ids % n == i).any()]

    def attach_teacher(self, params: ray.actor.ActorHandle, net: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        ray.get([s.attach_teacher.remote(params, net, obs_shape, n_actions) for s in self.shards])

    def refresh_async(self, chunk: int) -> list[ray.ObjectRef]:
        return [s.refresh.remote(chunk) for s in self.shards]

    def actors(self) -> list[ray.actor.ActorHandle]:
        return list(self.shards)

    def stats(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for s in ray.get([shard.stats.remote() for shard in self.shards]):
            for k, v in s.items():
                total[k] = total.get(k, 0.0) + v
        return total
