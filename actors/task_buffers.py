"""A multi-task run's buffer: one buffer per task (each task's rows have their own observation
shape and action count, so their own schema), sampled in the run's task balance.

Each task's buffer is an ordinary BufferClient (Ray shards, or its own prefix on the Redis
server); a sample asks each task's buffer for its rows (actors/balance.py decides how many) and
comes back as one part per task: (task, ids in that task's buffer, rows)."""

from __future__ import annotations

from typing import Any

import numpy as np
import ray

from ..learners.batch import TransitionBatch
from .balance import TaskBalance
from .buffer_client import BufferClient

TaskSample = list[tuple[int, np.ndarray, TransitionBatch]]  # (task, ids, rows) per task drawn


class TaskBuffers:
    """`unit`: rows are drawn per task in whole multiples of it (a minibatch's size, for runs that
    take each minibatch from one task; 1 mixes tasks row by row)."""

    def __init__(self, buffers: list[BufferClient], balance: TaskBalance, *, unit: int = 1) -> None:
        if len(buffers) != len(balance.weights):
            raise ValueError(f"{len(buffers)} task buffers for a balance over {len(balance.weights)} tasks")
        if unit < 1:
            raise ValueError(f"sample unit {unit} is not valid: expected an integer >= 1")
        self.buffers = buffers
        self.balance = balance
        self.unit = unit

    def sink_for(self, actor_id: int, task: int) -> object:
        """Where rollout actor `actor_id`, collecting task `task`, adds its rows."""
        return self.buffers[task].sink_for(actor_id)

    def counts(self, n: int) -> np.ndarray:
        """Rows of each task in the next sample of `n` rows (whole units; `n` rounds down to one)."""
        if n < self.unit:
            raise ValueError(f"a sample of {n} rows is smaller than one unit of {self.unit} rows")
        return self.balance.counts(n // self.unit) * self.unit

    def sample_async(self, n: int) -> list[tuple[int, Any]]:
        return [(task, self.buffers[task].sample_async(int(k))) for task, k in enumerate(self.counts(n)) if k > 0]

    def ready(self, pending: list[tuple[int, Any]], timeout: float = 0.0) -> bool:
        return all(self.buffers[task].ready(p, timeout) for task, p in pending)

    def gather(self, pending: list[tuple[int, Any]]) -> TaskSample:
        return [(task, *self.buffers[task].gather(p)) for task, p in pending]

    def sample(self, n: int) -> TaskSample:
        return self.gather(self.sample_async(n))

    def relabel(self, task: int, ids: np.ndarray, teacher_q: np.ndarray, version: int) -> object:
        return self.buffers[task].relabel(ids, teacher_q, version)

    def stats(self) -> dict[str, float]:
        """The buffers' figures summed, and each task's own under `buffer/task{t}/…`."""
        total: dict[str, float] = {}
        for task, buffer in enumerate(self.buffers):
            for key, value in buffer.stats().items():
                total[key] = total.get(key, 0.0) + value
                total[key.replace("buffer/", f"buffer/task{task}/", 1)] = value
        return total

    def release(self) -> None:
        for buffer in self.buffers:
            buffer.release()

    def actors(self) -> list[ray.actor.ActorHandle]:
        return [a for buffer in self.buffers for a in buffer.actors()]
