"""How a multi-task run's samples divide between its tasks: in a stated balance, exactly.

Each task is owed its weight's share of all rows sampled so far. A sample of n rows gives every
task the whole rows it is owed, then the rows left over, one each, to the tasks owed the largest
fractions (the lower task first on a tie). So after any number of samples every task has had its
share within one row: equal weights over 3 tasks split batches of 256 as 86/85/85, 85/86/85,
85/85/86, and batches of one row (one task per minibatch) go round robin."""

from __future__ import annotations

import math

import numpy as np


def parse_balance(text: str, n_tasks: int) -> tuple[float, ...]:
    """``"equal"`` or weights joined by ':' (``"2:1:1"``), one per task, normalised to sum to 1."""
    if text.strip() == "equal":
        return (1 / n_tasks,) * n_tasks
    try:
        weights = [float(w) for w in text.split(":")]
    except ValueError:
        weights = []
    if len(weights) != n_tasks or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"task balance {text!r} is not valid: expected 'equal' or {n_tasks} weights >= 0 joined by ':' "
                         f"(e.g. '{':'.join(['1'] * n_tasks)}'), one per task, not all 0")
    return tuple(w / sum(weights) for w in weights)


class TaskBalance:
    """Rows per task for each sample, keeping every task within one row of its share."""

    def __init__(self, weights: tuple[float, ...]) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.given = np.zeros(len(weights), dtype=np.int64)  # rows each task has had

    def counts(self, n: int) -> np.ndarray:
        """[tasks] rows of each task in the next sample of `n` rows."""
        owed = (self.given.sum() + n) * self.weights - self.given
        counts = np.maximum(np.floor(owed), 0).astype(np.int64)
        while counts.sum() > n:  # tasks over-given before (owed < 0) count as 0: take back from the least owed
            counts[np.argmin(np.where(counts > 0, owed - counts, np.inf))] -= 1
        order = np.lexsort((np.arange(len(owed)), -(owed - counts)))  # largest fraction still owed first
        for task in order[: n - counts.sum()]:
            counts[task] += 1
        self.given += counts
        return counts

    def state(self) -> list[int]:
        return self.given.tolist()

    def load(self, given: list[int]) -> None:
        self.given = np.asarray(given, dtype=np.int64)
