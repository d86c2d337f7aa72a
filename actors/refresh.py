"""Label refresh: rewrite stale teacher labels with the newest teacher, and measure staleness."""

from __future__ import annotations

import numpy as np

from ..learners.policy import GreedyPolicy
from .buffer import ReplayRing
from .redis_buffer import RedisBuffer


class LabelRefresher:
    """Holds its own copy of the teacher and relabels a ring's stale records, a chunk at a time,
    so inserts and samples interleave with the work."""

    def __init__(self, net: str, obs_shape: tuple[int, ...], n_actions: int) -> None:
        self.teacher = GreedyPolicy(net, obs_shape, n_actions)

    def load_teacher(self, version: int, weights: dict[str, np.ndarray]) -> None:
        self.teacher.load(version, weights)

    def refresh_pulled(self, pulled: tuple[int, dict[str, np.ndarray] | None], ring: ReplayRing | RedisBuffer,
                       chunk: int) -> int:
        """Take the teacher a parameter server's `pull` returned (no weights: the one held is the
        newest), then refresh."""
        version, weights = pulled
        if weights is not None:
            self.load_teacher(version, weights)
        return self.refresh(ring, chunk)

    def refresh(self, ring: ReplayRing | RedisBuffer, chunk: int) -> int:
        """Relabel up to `chunk` of the oldest records labelled by an older teacher; returns how many."""
        if self.teacher.version < 0:
            return 0
        ids = ring.stale_ids(self.teacher.version, chunk)
        if ids.size == 0:
            return 0
        try:
            rows = ring.get(ids)
        except KeyError:  # evicted, or refused as damaged, since the scan: the next pass scans again
            return 0
        q = self.teacher.q_values(rows.observations)
        return ring.relabel(ids, q, self.teacher.version)


def staleness(label_versions: np.ndarray, version: int, published_at: dict[int, float], now: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per record: how many teacher versions its label lags, and for how many seconds it has been
    out of date (since the first newer version was published; 0 for a current label)."""
    label_versions = np.asarray(label_versions, dtype=np.int64)
    lag = version - label_versions
    seconds = np.zeros(len(label_versions))
    stale = lag > 0
    if stale.any():  # one look-up per distinct version, not per record
        versions, which = np.unique(label_versions[stale], return_inverse=True)
        seconds[stale] = now - np.array([published_at.get(int(v) + 1, now) for v in versions])[which]
    return lag, seconds
