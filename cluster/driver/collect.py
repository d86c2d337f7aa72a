"""The rollout side of a run: the buffer it writes to, the fleet of rollout actors kept busy
(grown or shrunk on request), and the hand-over at the end."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import ray

from ...actors.buffer_client import BufferClient, make_buffer
from ...actors.balance import TaskBalance
from ...actors.envs import EnvInfo
from ...actors.ratelimit import SampleToInsertRatio
from ...actors.task_buffers import TaskBuffers
from ...actors.wire import Schema
from ..config import RunConfig
from ..control import RunControl


def run_buffer(cfg: RunConfig, info: EnvInfo, *, options: dict, name: str,
               limit: SampleToInsertRatio | None = None) -> BufferClient:
    """The run's buffer (a multi-task run's: one task's), as the config asks: backend, capacity
    (capped by buffer_bytes), shards, and the rate limiter that keeps the replay ratio (`limit`
    where a task's share of samples and inserts sets another)."""
    schema = Schema.of(info, next_obs=cfg.next_obs)
    return make_buffer(cfg.buffer, capacity=cfg.capacity_for(schema.record_size), shards=cfg.shards,
                       prefix=cfg.redis_prefix, chunk_size=cfg.chunk_size, schema=schema, seed=cfg.seed,
                       options=options, name=name, limit=limit or cfg.rate_limit)


def task_buffers(cfg: RunConfig, infos: list[EnvInfo], weights: tuple[float, ...], balance: TaskBalance, *,
                 options: dict, name: str) -> TaskBuffers:
    """A multi-task run's buffers, one per task: each keeps the replay ratio for its share of the
    samples and of the actors (1/n), and is sampled once it holds its share of learning_starts;
    whole update minibatches are drawn per task when each minibatch holds one task's rows."""
    n, limit = len(infos), cfg.rate_limit
    buffers = [run_buffer(replace(cfg, buffer_prefix=f"{cfg.redis_prefix}:task{t}"), info, options=options,
                          name=f"{name}-task{t}",
                          limit=replace(limit, samples_per_insert=limit.samples_per_insert * weights[t] * n,
                                        min_size_to_sample=max(1, -(-limit.min_size_to_sample // n))))
               for t, info in enumerate(infos)]
    return TaskBuffers(buffers, balance, unit=cfg.update_rows if cfg.task_batches == "one" else 1)


def hand_over(buffer: BufferClient, collector: Collector, timeout: float = 10.0) -> None:
    """The loop is over: lift the rate limit, take the collects still in flight and have every
    rollout actor that is up flush what it holds (`timeout` seconds at most in all)."""
    buffer.release()
    deadline = time.monotonic() + timeout
    while collector.pending and time.monotonic() < deadline:
        collector.harvest(timeout=0.1)
    flushes = [a.flush.remote() for i, a in collector.actors.items() if i not in collector.starting.values()]
    ray.wait(flushes, num_returns=len(flushes), timeout=max(deadline - time.monotonic(), 0.0))


def stop_actors(actors: list[ray.actor.ActorHandle | None]) -> None:
    """End every actor of the run."""
    for handle in actors:
        if handle is not None:  # None: not started (the run failed while it was wired)
            ray.kill(handle)


class Collector:
    """Keeps rollout actors busy with one `collect` call each (the buffer's rate limiter holds them
    back when the learner is behind); grows or shrinks the fleet on request (`resize`)."""

    def __init__(self, make_actor: Callable[[int], ray.actor.ActorHandle], actors: int, *, steps_per_call: int,
                 envs_per_actor: int) -> None:
        self.make_actor = make_actor  # actor id → a new rollout actor
        self.steps_per_call = steps_per_call
        self.actors: dict[int, ray.actor.ActorHandle] = {}
        self.groups: dict[int, int] = {}  # actor id → its group (a multi-task run's task; 0 otherwise)
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

    def wanted_in(self, group: int) -> int:
        return sum(1 for i in self.actors if self.groups[i] == group and i not in self.retiring)

    def handles(self) -> list[ray.actor.ActorHandle]:
        return list(self.actors.values())

    def resize(self, actors: int, group: int = 0) -> None:
        """Start new actors in `group`, or retire its newest ones (each hands over what it collected
        first); `make_actor` finds a new actor's group in `groups`."""
        for _ in range(actors - self.wanted_in(group)):
            i, self.next_id = self.next_id, self.next_id + 1
            self.groups[i] = group
            self.actors[i] = self.make_actor(i)
            self._probe(i)
        keep = sorted(i for i in self.actors if i not in self.retiring and self.groups[i] == group)[:max(actors, 0)]
        for i in {i for i in self.actors if self.groups[i] == group} - set(keep) - self.retiring:
            self.retiring.add(i)
            if i in self.idle or i in self.starting.values():  # not collecting: retire it now
                was_up = i in self.idle
                self.idle = [j for j in self.idle if j != i]
                self.starting = {ref: j for ref, j in self.starting.items() if j != i}
                self._retire(i, flush=was_up)

    def _started(self) -> None:
        """Actors that came up since the last look join the idle ones; one Ray could not reach
        (restarting) is asked again."""
        if self.starting:
            ready, _ = ray.wait(list(self.starting), num_returns=len(self.starting), timeout=0)
            for ref in ready:
                i = self.starting.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError:
                    self._probe(i)
                else:
                    self.idle.append(i)

    def _probe(self, i: int) -> None:
        """Wait for actor `i` to be up (again) before it gets a collect."""
        self.starting[self.actors[i].node.remote()] = i

    def _retire(self, i: int, *, flush: bool = True) -> None:
        actor = self.actors.pop(i)
        self.retiring.discard(i)
        if flush:  # hand over what it collected (an actor never started has nothing)
            ray.wait([actor.flush.remote()], timeout=10)
        ray.kill(actor)
        self.retired += 1

    def launch(self, epsilon: float, beta: float = 1.0, dynamics: dict[str, float] | None = None,
               versions: tuple[int, int] | None = None, student: str | None = None) -> None:
        """Start a collect on every idle actor; `dynamics`: a changed task's parameters, once it
        has changed; `versions`: the newest (teacher, student) weights published, so an actor that
        has them need not ask; `student`: the one that acts (None: the actor's own). The buffer's
        rate limiter holds an actor's insert while the learner is behind: its next collect then
        waits on it, with one batch in flight."""
        self._started()
        while self.idle:
            i = self.idle.pop()
            call = self.actors[i].collect.remote(self.steps_per_call, epsilon, beta, dynamics, versions, student)
            self.pending[call] = i

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
                self.failures += 1
                result = None
            if result is not None:
                self.env_steps += result["env_steps"]
                self.dropped_nonfinite += result["dropped_nonfinite"]
                results.append(result)
            if i in self.retiring:
                self._retire(i)
            elif result is None:  # lost with its actor: no collect until Ray has it up again
                self._probe(i)
            else:
                self.idle.append(i)
        return results

    def view(self) -> dict[str, object]:
        """Where the rollout actors are, for status and metrics."""
        from ..placement import fleet

        return {**fleet(self.handles()), "wanted": self.wanted, "collect_failures": self.failures,
                "retired": self.retired}


def steer(control: RunControl, resize: Callable[[int, str | None], None]) -> str | None:
    """Apply what came from outside: a new actor count now (in all, or a task's: `resize(actors,
    env)`); "stopped" once a stop is asked for."""
    wanted = control.take_scale()
    if wanted is not None:
        resize(*wanted)
    return "stopped" if control.stop_requested else None
