"""Pieces both drivers' loops are made of: paced collection and prefetched sampling."""

from __future__ import annotations

from typing import Callable

import ray

from ..actors.envs import EnvInfo
from ..actors.remote import RedisBufferClient, ShardedBuffer, make_buffer
from ..actors.wire import Schema
from ..learners.batch import TransitionBatch
from .config import RunConfig
from .control import RunControl


def run_buffer(cfg: RunConfig, info: EnvInfo, *, options: dict, name: str) -> ShardedBuffer | RedisBufferClient:
    """The run's buffer, as the config asks: backend, capacity (capped by buffer_bytes), shards."""
    schema = Schema(info.obs_shape, info.n_actions)
    return make_buffer(cfg.buffer, capacity=cfg.capacity_for(schema.record_size), shards=cfg.shards,
                       prefix=cfg.redis_prefix, chunk_size=cfg.chunk_size, schema=schema, seed=cfg.seed,
                       options=options, name=name)


def stop_actors(rollout_actors: list[ray.actor.ActorHandle], others: list[ray.actor.ActorHandle]) -> None:
    """Let the rollout actors hand over what they collected (10 s at most), then end every actor."""
    flushes = [actor.flush.remote() for actor in rollout_actors]
    ray.wait(flushes, num_returns=len(flushes), timeout=10)
    for handle in [*rollout_actors, *others]:
        ray.kill(handle)


def budget_spent(cfg: RunConfig, env_steps: int, elapsed_s: float) -> str | None:
    """"steps" or "time" once that budget is spent, else None."""
    if cfg.steps is not None and env_steps >= cfg.steps:
        return "steps"
    if cfg.time is not None and elapsed_s >= cfg.time:
        return "time"
    return None


def pace(cfg: RunConfig, env_steps: int, learner_steps: int, call_size: int, actors: int,
         since: tuple[int, int] = (0, 0)) -> tuple[bool, float]:
    """The replay ratio, both ways: whether the learner owes steps for the data collected, and how
    many env steps the `actors` (those up) may have collected or under way (one call each ahead of
    the learner). Counted from `since` (env steps, learner steps): where a resumed run started
    again, refilling its buffer before it learns."""
    env, learner = env_steps - since[0], learner_steps - since[1]
    owes = env >= cfg.learning_starts and (env - cfg.learning_starts) * cfg.replay_ratio > learner
    allowed = since[0] + cfg.learning_starts + learner / cfg.replay_ratio + actors * call_size
    return owes, allowed


class Collector:
    """Keeps rollout actors busy with one `collect` call each, never further ahead than allowed;
    grows or shrinks the fleet on request (`resize`)."""

    def __init__(self, make_actor: Callable[[int], ray.actor.ActorHandle], actors: int, *, steps_per_call: int,
                 envs_per_actor: int) -> None:
        self.make_actor = make_actor  # actor id → a new rollout actor
        self.steps_per_call = steps_per_call
        self.call_size = steps_per_call * envs_per_actor
        self.actors: dict[int, ray.actor.ActorHandle] = {}
        self.pending: dict[ray.ObjectRef, int] = {}
        self.starting: dict[ray.ObjectRef, int] = {}  # actors not up yet: no collect waits on them
        self.idle: list[int] = []
        self.retiring: set[int] = set()
        self.next_id = 0
        self.env_steps = 0
        self.failures = 0  # collects lost with their actor (Ray restarts the actor)
        self.dropped_nonfinite = 0  # transitions the actors dropped for NaN or inf
        self.retired = 0
        self.resize(actors)

    @property
    def wanted(self) -> int:
        return len(self.actors) - len(self.retiring)

    @property
    def up(self) -> int:
        return len(self.actors) - len(self.starting)

    def handles(self) -> list[ray.actor.ActorHandle]:
        return list(self.actors.values())

    def resize(self, actors: int) -> None:
        """Start new actors, or retire the newest ones (each hands over what it collected first)."""
        for _ in range(actors - self.wanted):
            i, self.next_id = self.next_id, self.next_id + 1
            self.actors[i] = self.make_actor(i)
            self.starting[self.actors[i].node.remote()] = i
        keep = sorted(i for i in self.actors if i not in self.retiring)[:max(actors, 0)]
        for i in set(self.actors) - set(keep) - self.retiring:
            self.retiring.add(i)
            if i in self.idle or i in self.starting.values():  # not collecting: retire it now
                was_up = i in self.idle
                self.idle = [j for j in self.idle if j != i]
                self.starting = {ref: j for ref, j in self.starting.items() if j != i}
                self._retire(i, flush=was_up)

    def _started(self) -> None:
        """Actors that came up since the last look join the idle ones."""
        if self.starting:
            ready, _ = ray.wait(list(self.starting), num_returns=len(self.starting), timeout=0)
            for ref in ready:
                self.idle.append(self.starting.pop(ref))

    def _retire(self, i: int, *, flush: bool = True) -> None:
        actor = self.actors.pop(i)
        self.retiring.discard(i)
        if flush:  # hand over what it collected (an actor never started has nothing)
            ray.wait([actor.flush.remote()], timeout=10)
        ray.kill(actor)
        self.retired += 1

    def launch(self, allowed_env_steps: float, epsilon: float, beta: float = 1.0,
               dynamics: dict[str, float] | None = None) -> None:
        """Start collects on idle actors while the steps collected or under way stay within
        `allowed_env_steps`; `dynamics`: a changed task's parameters, once it has changed."""
        self._started()
        while self.idle and self.env_steps + len(self.pending) * self.call_size < allowed_env_steps:
            i = self.idle.pop()
            self.pending[self.actors[i].collect.remote(self.steps_per_call, epsilon, beta, dynamics)] = i

    def harvest(self, timeout: float = 0.0) -> list[dict[str, object]]:
        """Results of the collects that have finished (waiting up to `timeout` for the first)."""
        if not self.pending:
            return []
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        results = []
        for ref in ready:
            i = self.pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError:
                self.failures += 1  # the next collect waits for the restarted actor
                result = None
            if result is not None:
                self.env_steps += result["env_steps"]
                self.dropped_nonfinite += result["dropped_nonfinite"]
                results.append(result)
            if i in self.retiring:
                self._retire(i)
            else:
                self.idle.append(i)
        return results

    def view(self) -> dict[str, object]:
        """Where the rollout actors are, for status and metrics."""
        from .placement import fleet

        return {**fleet(self.handles()), "wanted": self.wanted, "collect_failures": self.failures,
                "retired": self.retired}


def steer(control: RunControl, collector: Collector) -> str | None:
    """Apply what came from outside: a new actor count now; "stopped" once a stop is asked for."""
    wanted = control.take_scale()
    if wanted is not None:
        collector.resize(wanted)
    return "stopped" if control.stop_requested else None


class Prefetcher:
    """Samples `chunk` transitions from the buffer, keeping the next request in flight."""

    def __init__(self, buffer: ShardedBuffer, chunk: int) -> None:
        self.buffer = buffer
        self.chunk = chunk
        self.next_refs: list | None = None

    def sample(self) -> tuple:
        refs = self.next_refs or self.buffer.sample_async(self.chunk)
        self.next_refs = self.buffer.sample_async(self.chunk)
        return self.buffer.gather(refs)


def minibatches(ids, batch: TransitionBatch, size: int):
    """(ids, batch) of each whole minibatch of a sampled chunk."""
    for start in range(0, len(batch) - size + 1, size):
        part = slice(start, start + size)
        yield ids[part], batch.take(part)
