"""The one place where plain components become Ray actors."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import numpy as np
import ray

from ..learners.batch import TransitionBatch
from .buffer import ReplayRing, check_capacity
from .dynamics import set_dynamics
from .evaluator import Evaluator
from .metrics import RolloutMetrics
from .params import ParameterServer
from .ratelimit import SampleToInsertRatio
from .redis_buffer import RedisBuffer, RedisSpec
from .refresh import LabelRefresher
from .rollout import Rollout
from .wire import Schema


@ray.remote(num_cpus=0)
class BufferShard(ReplayRing):
    """One shard of the Ray buffer: a ReplayRing inside an actor, relabelling next to its data.

    With a rate limiter, `add` and `sample` wait until it lets them through (an asyncio actor: a
    waiting call does not hold up the others, which run one at a time on its event loop)."""

    def __init__(self, capacity: int, *, seed: int = 0, limit: SampleToInsertRatio | None = None) -> None:
        super().__init__(capacity, seed=seed)
        self.limit = limit
        self._changed: asyncio.Condition | None = None  # made on the actor's event loop

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _when(self, allowed) -> None:
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.limit is None or allowed(self.limit))

    async def _notify(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify_all()

    async def add(self, batch: TransitionBatch) -> None:
        await self._when(lambda limit: limit.can_insert(self.inserted, self.sampled, len(batch)))
        ReplayRing.add(self, batch)
        await self._notify()

    async def sample(self, batch_size: int) -> tuple[np.ndarray, TransitionBatch]:
        await self._when(lambda limit: limit.can_sample(self.inserted, self.sampled, batch_size))
        result = ReplayRing.sample(self, batch_size)
        await self._notify()
        return result

    async def release(self) -> None:
        """Stop limiting: what waits goes through (a run ending hands over what its actors hold)."""
        self.limit = None
        await self._notify()

    def attach_teacher(self, params: ray.actor.ActorHandle, net: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        self.teacher_params = params
        self.refresher = LabelRefresher(net, obs_shape, n_actions)

    async def refresh(self, chunk: int) -> int:
        pulled = await self.teacher_params.pull.remote(self.refresher.teacher.version)
        return self.refresher.refresh_pulled(pulled, self, chunk)


@ray.remote(num_cpus=0)
class ParameterServerActor(ParameterServer):
    pass


@ray.remote
class RolloutActor:
    """Steps a vector env next to its data and streams labelled batches to a buffer shard.

    Before each collect it pulls newer teacher (and student) weights by version, unless the caller
    says it has them already; at most `max_in_flight` adds are outstanding, so a slow shard pushes
    back on the actor instead of filling the object store.
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
        params: str,
        shard: str | RedisSpec,
        student: str | None = None,
        student_params: str | None = None,
        max_in_flight: int = 1,
        run: str = "",
    ) -> None:
        """`params`, `student_params` and a Ray `shard` are named actors, looked up here: a
        restarted actor finds them again (handles passed as arguments would pin the restart to
        objects that may be gone). `run`: the run's name, which its Ray metrics are tagged with."""
        import torch

        torch.set_num_threads(1)
        self.rollout = Rollout(env_id, net=net, obs_shape=obs_shape, n_actions=n_actions,
                               num_envs=num_envs, seed=seed, actor_id=actor_id, student=student)
        self.params = ray.get_actor(params)
        self.student_name = student
        self.student_params = ray.get_actor(student_params) if student_params else None
        # a Ray buffer shard to send batches to, or a Redis buffer this actor writes to itself
        self.shard = ray.get_actor(shard) if isinstance(shard, str) else None
        self.redis = RedisBuffer(shard, seed=seed) if isinstance(shard, RedisSpec) else None
        self.max_in_flight = max_in_flight
        self.in_flight: list[ray.ObjectRef] = []
        self.dynamics: dict[str, float] | None = None
        self.metrics = RolloutMetrics(run, actor_id)

    def _has(self, versions: tuple[int, int] | None) -> bool:
        """Whether this actor already holds the given (teacher, student) versions."""
        if versions is None:
            return False
        teacher, student = versions
        return self.rollout.teacher.version >= teacher and (
            self.student_params is None or self.rollout.student.version >= student)

    def _pull(self) -> int:
        refs = [self.params.pull.remote(self.rollout.teacher.version)]
        if self.student_params is not None:
            refs.append(self.student_params.pull.remote(self.rollout.student.version))
        pulled = ray.get(refs)
        version, weights = pulled[0]
        if weights is not None:
            self.rollout.load_weights(version, weights)
        if len(pulled) > 1 and pulled[1][1] is not None:
            self.rollout.load_student(pulled[1][0], pulled[1][1][self.student_name])
        return version

    def collect(self, num_steps: int, epsilon: float, beta: float = 1.0,
                dynamics: dict[str, float] | None = None,
                versions: tuple[int, int] | None = None) -> dict[str, object]:
        """`dynamics`: the task's parameters now (a changed task), set on this actor's envs when
        they differ from what it has; passed with every call, so restarted actors get it too.
        `versions`: the newest (teacher, student) versions the caller has published; an actor that
        holds them skips the pull (a round trip per call), any other pulls first."""
        if dynamics and dynamics != self.dynamics:
            set_dynamics(self.rollout.env, dynamics)
            self.dynamics = dynamics
        latest = versions[0] if self._has(versions) else self._pull()
        dropped = self.rollout.dropped_nonfinite
        batch, episodes = self.rollout.collect(num_steps, epsilon, beta)
        self._add(batch)
        self.metrics.collected(len(batch))
        return {
            "env_steps": len(batch),
            "dropped_nonfinite": self.rollout.dropped_nonfinite - dropped,
            "episodes": episodes,
            "weights_version": self.rollout.teacher.version,
            "latest_version": latest,
            "student_steps": int((batch.behaviour == 1).sum()),
        }

    def _add(self, batch: TransitionBatch) -> None:
        if self.redis is not None:
            self.redis.add(batch)
            return
        self.in_flight.append(self.shard.add.remote(batch))
        if len(self.in_flight) > self.max_in_flight:
            done, self.in_flight = ray.wait(self.in_flight, num_returns=len(self.in_flight) - self.max_in_flight)
            ray.get(done)

    def node(self) -> str:
        """Where this actor runs: "IP/node-id prefix" (nodes of one machine share an IP)."""
        return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"

    def flush(self) -> int:
        """Everything collected so far is in the buffer when this returns."""
        if self.redis is not None:
            self.redis.flush()
        ray.get(self.in_flight)
        self.in_flight = []
        return self.rollout.env_steps


@ray.remote
class EvaluatorActor:
    """Greedy episodes of the teacher and students, away from the learner's CPU."""

    def __init__(self, env_id: str, *, teacher_net: str, students: tuple[str, ...], obs_shape: tuple[int, ...],
                 n_actions: int, episodes: int, seed: int, tau: float, teacher_params: str) -> None:
        """`teacher_params`: the named parameter server to take the newest teacher from; by name,
        so a restarted evaluator finds it again (weights as arguments would have to outlive it)."""
        import torch

        torch.set_num_threads(1)
        self.evaluator = Evaluator(env_id, teacher_net=teacher_net, students=students, obs_shape=obs_shape,
                                   n_actions=n_actions, episodes=episodes, seed=seed, tau=tau)
        self.evaluator.load_teacher(*ray.get(ray.get_actor(teacher_params).pull.remote(-1)))

    def evaluate(self, version: int, students: dict[str, dict[str, np.ndarray]], final: bool = False,
                 teacher: tuple[int, dict[str, np.ndarray]] | None = None,
                 dynamics: dict[str, float] | None = None) -> dict[str, float]:
        """`teacher`: a new teacher (version, weights) to evaluate against from now on;
        `dynamics`: the task's parameters now."""
        if dynamics != self.evaluator.dynamics:
            self.evaluator.set_dynamics(dynamics)
        if teacher is not None:
            self.evaluator.load_teacher(*teacher)
        self.evaluator.load_students(version, students)
        return self.evaluator.evaluate(final=final)


@ray.remote(num_cpus=0)
class RedisRefresherActor:
    """Label refresh next to a Redis buffer: its own teacher copy, relabelling chunk by chunk."""

    def __init__(self, spec: RedisSpec, params: ray.actor.ActorHandle, net: str, obs_shape: tuple[int, ...],
                 n_actions: int) -> None:
        import torch

        torch.set_num_threads(1)
        self.buffer = RedisBuffer(spec)
        self.params = params
        self.refresher = LabelRefresher(net, obs_shape, n_actions)

    def refresh(self, chunk: int) -> int:
        pulled = ray.get(self.params.pull.remote(self.refresher.teacher.version))
        return self.refresher.refresh_pulled(pulled, self.buffer, chunk)


class RedisBufferClient(RedisBuffer):
    """The driver's side of a Redis buffer: the same client surface as ShardedBuffer."""

    def __init__(self, spec: RedisSpec, *, seed: int = 0, options: dict | None = None) -> None:
        super().__init__(spec, seed=seed)
        self.r.delete(self.p + ":released")  # a run (re)starting: limited again
        self.options = options or {}
        self.refresher: ray.actor.ActorHandle | None = None

    def shard_for(self, actor_id: int) -> RedisSpec:
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

    def shard_for(self, actor_id: int) -> str:
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
        """Send each shard the new labels of its own ids."""
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
