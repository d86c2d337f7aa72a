"""The one place where plain components become Ray actors."""

from __future__ import annotations

import numpy as np
import ray

from ..learners.batch import TransitionBatch
from .buffer import ReplayRing
from .params import ParameterServer
from .rollout import Rollout


@ray.remote(num_cpus=0)
class BufferShard(ReplayRing):
    """One shard of the Ray buffer: a ReplayRing inside an actor."""


@ray.remote(num_cpus=0)
class ParameterServerActor(ParameterServer):
    pass


@ray.remote
class RolloutActor:
    """Steps a vector env next to its data and streams batches to a buffer shard.

    Before each collect it pulls newer weights by version; at most `max_in_flight` adds are
    outstanding, so a slow shard pushes back on the actor instead of filling the object store.
    """

    def __init__(
        self,
        env_id: str,
        *,
        net: str,
        obs_shape: tuple[int, ...],
        n_actions: int,
        num_envs: int,
        seed: int,
        actor_id: int,
        params: ray.actor.ActorHandle,
        shard: ray.actor.ActorHandle,
        max_in_flight: int = 1,
    ) -> None:
        import torch

        torch.set_num_threads(1)
        self.rollout = Rollout(
            env_id, net=net, obs_shape=obs_shape, n_actions=n_actions,
            num_envs=num_envs, seed=seed, actor_id=actor_id,
        )
        self.params = params
        self.shard = shard
        self.max_in_flight = max_in_flight
        self.in_flight: list[ray.ObjectRef] = []

    def collect(self, num_steps: int, epsilon: float) -> dict[str, object]:
        version, weights = ray.get(self.params.pull.remote(self.rollout.policy.version))
        if weights is not None:
            self.rollout.load_weights(version, weights)
        batch, episodes = self.rollout.collect(num_steps, epsilon)
        self._add(batch)
        return {
            "env_steps": len(batch),
            "episodes": episodes,
            "weights_version": self.rollout.policy.version,
            "latest_version": version,
        }

    def _add(self, batch: TransitionBatch) -> None:
        self.in_flight.append(self.shard.add.remote(batch))
        if len(self.in_flight) > self.max_in_flight:
            done, self.in_flight = ray.wait(self.in_flight, num_returns=len(self.in_flight) - self.max_in_flight)
            ray.get(done)

    def flush(self) -> int:
        ray.get(self.in_flight)
        self.in_flight = []
        return self.rollout.env_steps


class ShardedBuffer:
    """Client side of the Ray buffer: actors write to their own shard; samples come from all."""

    def __init__(self, num_shards: int, capacity: int, *, seed: int = 0) -> None:
        if num_shards < 1:
            raise ValueError(f"shard count {num_shards} is not valid: expected at least 1")
        per_shard = -(-capacity // num_shards)
        self.shards = [BufferShard.remote(per_shard, seed=seed + i) for i in range(num_shards)]

    def shard_for(self, actor_id: int) -> ray.actor.ActorHandle:
        return self.shards[actor_id % len(self.shards)]

    def sample_async(self, batch_size: int) -> list[tuple[int, ray.ObjectRef]]:
        sizes = np.full(len(self.shards), batch_size // len(self.shards))
        sizes[: batch_size % len(self.shards)] += 1
        return [(i, s.sample.remote(int(n))) for i, (s, n) in enumerate(zip(self.shards, sizes)) if n > 0]

    def gather(self, refs: list[tuple[int, ray.ObjectRef]]) -> tuple[np.ndarray, TransitionBatch]:
        """Global ids: a shard's own id × shard count + the shard's index."""
        parts = ray.get([ref for _, ref in refs])
        ids = np.concatenate([local * len(self.shards) + i for (i, _), (local, _) in zip(refs, parts)])
        return ids, TransitionBatch.concat([b for _, b in parts])

    def sample(self, batch_size: int) -> tuple[np.ndarray, TransitionBatch]:
        return self.gather(self.sample_async(batch_size))

    def stats(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for s in ray.get([shard.stats.remote() for shard in self.shards]):
            for k, v in s.items():
                total[k] = total.get(k, 0.0) + v
        return total
