"""The in-memory FIFO ring that every Ray buffer shard holds (the Redis backend keeps the same contract)."""

from __future__ import annotations

import numpy as np

from ..learners.batch import TransitionBatch


def check_capacity(capacity: int) -> None:
    if capacity < 1:
        raise ValueError(f"buffer capacity {capacity} is not valid: expected at least 1 transition")


class ReplayRing:
    """Bounded FIFO ring of transitions with uniform sampling.

    Every transition gets an id, its insertion index (0, 1, 2, …); it lives at slot id % capacity
    until `capacity` newer transitions overwrite it.
    """

    def __init__(self, capacity: int, *, seed: int = 0) -> None:
        check_capacity(capacity)
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.storage: dict[str, np.ndarray] | None = None
        self.inserted = 0  # total transitions ever added; the next id
        self.sampled = 0
        self.relabelled = 0

    def __len__(self) -> int:
        return min(self.inserted, self.capacity)

    def _allocate(self, batch: TransitionBatch) -> dict[str, np.ndarray]:
        return {
            name: np.zeros((self.capacity, *arr.shape[1:]), dtype=arr.dtype)
            for name, arr in batch.arrays().items()
        }

    def add(self, batch: TransitionBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        if self.storage is None:
            self.storage = self._allocate(batch)
        arrays = batch.arrays()
        if n > self.capacity:  # only the newest `capacity` survive
            arrays = {k: v[n - self.capacity :] for k, v in arrays.items()}
            self.inserted += n - self.capacity
            n = self.capacity
        start = self.inserted % self.capacity
        first = min(n, self.capacity - start)  # rows up to the end of the ring, then the rest wrap to 0
        for name, arr in arrays.items():
            self.storage[name][start : start + first] = arr[:first]
            self.storage[name][: n - first] = arr[first:]
        self.inserted += n

    def ids(self) -> np.ndarray:
        """Ids of the stored transitions, oldest first."""
        return np.arange(self.inserted - len(self), self.inserted)

    def get(self, ids: np.ndarray) -> TransitionBatch:
        if self.storage is None:
            raise ValueError("the buffer is empty")
        ids = np.asarray(ids, dtype=np.int64)
        oldest = self.inserted - len(self)
        if ids.size and (ids.min() < oldest or ids.max() >= self.inserted):
            raise KeyError(f"ids outside the stored range [{oldest}, {self.inserted})")
        slots = ids % self.capacity
        return TransitionBatch.from_arrays({name: arr[slots] for name, arr in self.storage.items()})

    def sample(self, batch_size: int) -> tuple[np.ndarray, TransitionBatch]:
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size} is not valid: expected at least 1")
        if len(self) == 0:
            raise ValueError("cannot sample from an empty buffer")
        ids = self.inserted - len(self) + self.rng.integers(0, len(self), batch_size)
        self.sampled += batch_size
        return ids, self.get(ids)

    def relabel(self, ids: np.ndarray, teacher_q: np.ndarray, version: int) -> int:
        """Rewrite the labels of the given ids in place; ids evicted meanwhile are skipped.

        Returns how many were rewritten.
        """
        if self.storage is None:
            return 0
        ids = np.asarray(ids, dtype=np.int64)
        live = (ids >= self.inserted - len(self)) & (ids < self.inserted)
        slots = ids[live] % self.capacity
        self.storage["teacher_q"][slots] = np.asarray(teacher_q, dtype=np.float32)[live]
        self.storage["label_version"][slots] = version
        self.relabelled += int(live.sum())
        return int(live.sum())

    def stale_ids(self, version: int, limit: int) -> np.ndarray:
        """Up to `limit` ids whose label is older than `version`, oldest first."""
        if self.storage is None:
            return np.zeros(0, dtype=np.int64)
        ids = self.ids()
        stale = ids[self.storage["label_version"][ids % self.capacity] < version]
        return stale[:limit]

    def stats(self) -> dict[str, float]:
        nbytes = sum(a.nbytes for a in self.storage.values()) if self.storage else 0
        return {
            "buffer/size": float(len(self)),
            "buffer/capacity": float(self.capacity),
            "buffer/inserted": float(self.inserted),
            "buffer/sampled": float(self.sampled),
            "buffer/relabelled": float(self.relabelled),
            "buffer/rejected": 0.0,  # rows in memory are never read back from bytes: nothing to refuse
            "buffer/bytes": float(nbytes),
        }
