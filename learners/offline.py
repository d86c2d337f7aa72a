"""The seed document's procedure: fit students to a fixed set of teacher labels for E epochs."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .batch import TransitionBatch
from .distill import DistillLearner


def fit(learner: DistillLearner, labelled: TransitionBatch, *, epochs: int, seed: int = 0,
        after_epoch: Callable[[int], None] | None = None) -> dict[str, float]:
    """E passes over the labelled states in shuffled minibatches (a last partial minibatch is
    dropped); `after_epoch(e)` runs after each pass (evaluation, checkpoints). Returns the newest
    metrics the learner measured (it measures one step in METRICS_EVERY)."""
    size = learner.config.batch_size
    if len(labelled) < size:
        raise ValueError(f"{len(labelled)} labelled states are fewer than one batch of {size}")
    rng = np.random.default_rng(seed)
    metrics: dict[str, float] = {}
    for epoch in range(epochs):
        order = rng.permutation(len(labelled))
        for start in range(0, len(order) - size + 1, size):
            metrics.update(learner.step(labelled.take(order[start:start + size])).metrics)
        if after_epoch is not None:
            after_epoch(epoch)
    return metrics
