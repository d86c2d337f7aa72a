"""Test batches whose every field encodes the transition's sequence number, so alignment is checkable."""

import numpy as np

from qdistill.learners.batch import TransitionBatch


def sequence_batch(start: int, n: int, *, version: int = 0, actor: int = 0, task: int | None = None) -> TransitionBatch:
    seq = np.arange(start, start + n)
    return TransitionBatch(
        observations=np.stack([seq, -seq], axis=1).astype(np.float32),
        actions=seq.astype(np.int64),
        rewards=seq.astype(np.float32),
        next_observations=np.stack([seq + 1, -seq - 1], axis=1).astype(np.float32),
        terminations=seq % 3 == 0,
        truncations=seq % 5 == 0,
        teacher_q=np.stack([seq, 2 * seq], axis=1).astype(np.float32),
        label_version=np.full(n, version, np.int64),
        behaviour=np.zeros(n, np.int8),
        actor_id=np.full(n, actor, np.int32),
        task=(seq % 7 if task is None else np.full(n, task)).astype(np.int16),  # 7 tasks, unless one is given
        horizon=(1 + seq % 3).astype(np.int8),
    )


def labelled_batch(observations: np.ndarray, teacher_q: np.ndarray) -> TransitionBatch:
    """States and their teacher labels as a batch (what a distillation learner reads); the other
    fields are zeros."""
    n = len(observations)
    return TransitionBatch(
        observations=observations, actions=np.zeros(n, np.int64), rewards=np.zeros(n, np.float32),
        next_observations=np.zeros_like(observations), terminations=np.zeros(n, bool),
        truncations=np.zeros(n, bool), teacher_q=teacher_q, label_version=np.zeros(n, np.int64),
        behaviour=np.zeros(n, np.int8), actor_id=np.zeros(n, np.int32), task=np.zeros(n, np.int16),
    )
