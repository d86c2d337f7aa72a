"""Where a rollout actor hands its rows: a Ray buffer shard or a Redis buffer, behind one
two-method interface, so the actor has no backend branches."""

from __future__ import annotations

from typing import Protocol

import ray

from ..learners.batch import TransitionBatch
from .redis_buffer import RedisBuffer, RedisSpec


class Sink(Protocol):
    def add(self, batch: TransitionBatch) -> None: ...
    def flush(self) -> None: ...


class ShardSink:
    """Adds to a named Ray buffer shard with at most `max_in_flight` adds outstanding, so a slow
    shard (or its rate limiter) pushes back on the actor instead of filling the object store."""

    def __init__(self, name: str, *, max_in_flight: int = 1) -> None:
        self.shard = ray.get_actor(name)
        self.max_in_flight = max_in_flight
        self.in_flight: list[ray.ObjectRef] = []

    def add(self, batch: TransitionBatch) -> None:
        self.in_flight.append(self.shard.add.remote(batch))
        if len(self.in_flight) > self.max_in_flight:
            done, self.in_flight = ray.wait(self.in_flight, num_returns=len(self.in_flight) - self.max_in_flight)
            ray.get(done)

    def flush(self) -> None:
        ray.get(self.in_flight)
        self.in_flight = []


def open_sink(where: str | RedisSpec, *, seed: int = 0) -> Sink:
    """A shard's name: that Ray shard; a Redis spec: the Redis buffer, written by this process itself,
    each batch at once."""
    return RedisBuffer(where, seed=seed, write_through=True) if isinstance(where, RedisSpec) else ShardSink(where)
