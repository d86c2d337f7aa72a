"""The seed document's procedure: fit students to a fixed set of teacher labels for E epochs."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .distill import DistillLearner


def fit(learner: DistillLearner, observations: np.ndarray, teacher_q: np.ndarray, *, epochs: int,
        seed: int = 0, after_epoch: Callable[[int], None] | None = None) -> dict[str, float]:
    """E passes over the data in shuffled minibatches (a last partial minibatch is dropped);
    `after_epoch(e)` runs after each pass (evaluation, checkpoints)."""
    if len(observations) != len(teacher_q):
        raise ValueError(f"{len(observations)} observations but {len(teacher_q)} labels")
    size = learner.config.batch_size
    if len(observations) < size:
        raise ValueError(f"{len(observations)} labelled states are fewer than one batch of {size}")
    rng = np.random.default_rng(seed)
    metrics: dict[str, float] = {}
    for epoch in range(epochs):
        order = rng.permutation(len(observations))
        for start in range(0, len(order) - size + 1, size):
            idx = order[start:start + size]
            metrics = learner.step(observations[idx], teacher_q[idx])
        if after_epoch is not None:
            after_epoch(epoch)
    return metrics
