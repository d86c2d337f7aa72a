"""TransitionBatch: the struct of numpy arrays that flows actor → buffer → learner."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

# Who acted when the transition was collected.
BEHAVIOUR_TEACHER = 0
BEHAVIOUR_STUDENT = 1


@dataclass
class TransitionBatch:
    """B transitions, CleanRL field names; terminations and truncations kept apart."""

    observations: np.ndarray  # [B, *obs_shape] in the env's stored dtype: float32 vectors, uint8 frames
    actions: np.ndarray  # [B] int64
    rewards: np.ndarray  # [B] float32
    next_observations: np.ndarray | None  # like observations; None where no learning teacher needs them
    terminations: np.ndarray  # [B] bool
    truncations: np.ndarray  # [B] bool
    teacher_q: np.ndarray  # [B, A] float32: the teacher's Q-values for `observations` (the soft label)
    label_version: np.ndarray  # [B] int64: the teacher version that produced `teacher_q`
    behaviour: np.ndarray  # [B] int8, BEHAVIOUR_*
    actor_id: np.ndarray  # [B] int32
    task: np.ndarray  # [B] int16: the row's task, an index into the run's task list (0 in a one-task run)
    # [B] int8: env steps a learning teacher's row spans (an n-step return: `rewards` sums that many,
    # discounted, and `next_observations` is the state after the last); None: one step each
    horizon: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return _FIELDS

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that are there (next_observations may not be)."""
        return {name: a for name in _FIELDS if (a := getattr(self, name)) is not None}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TransitionBatch:
        return cls(**{name: arrays.get(name) for name in _FIELDS})

    @classmethod
    def concat(cls, batches: list[TransitionBatch]) -> TransitionBatch:
        return cls.from_arrays({n: np.concatenate([b.arrays()[n] for b in batches]) for n in batches[0].arrays()})

    def finite_rows(self) -> np.ndarray:
        """[B] bool: rows whose observations, reward and teacher Q-values are all finite."""
        def finite(a: np.ndarray) -> np.ndarray:
            return np.isfinite(a).reshape(len(self), -1).all(axis=1)

        rows = finite(self.observations) & finite(self.rewards) & finite(self.teacher_q)
        return rows if self.next_observations is None else rows & finite(self.next_observations)

    def take(self, index: np.ndarray | slice) -> TransitionBatch:
        """The rows at `index` (a slice gives views; an index array, copies). A learner cuts every
        minibatch with it: fields in order, no dicts (about half the time it took with them)."""
        return TransitionBatch(*[None if (a := getattr(self, name)) is None else a[index] for name in _FIELDS])


_FIELDS = tuple(f.name for f in fields(TransitionBatch))  # looked up once: a learner slices batches in its hot loop


@dataclass(frozen=True)
class Update:
    """What one learner step gives back: its metrics and, from a DQN learner, the online network's
    Q-values for the batch's observations before the step (the freshest labels for those rows)."""

    metrics: dict[str, float]
    q_values: np.ndarray | None = None
