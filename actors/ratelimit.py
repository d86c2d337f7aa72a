"""Backpressure between rollout actors and the learner: a samples-per-insert rate limiter with the
semantics of Reverb's SampleToInsertRatio.

The state is two counters every buffer keeps anyway: rows inserted and rows sampled, ever. With
`diff = inserted * samples_per_insert - sampled` and `offset = min_size_to_sample * samples_per_insert`,
the limiter keeps `diff` within `offset ± tolerance` once the buffer holds `min_size_to_sample` rows:

- an insert of n rows waits while it would take `diff` above `offset + tolerance` (the learner has
  fallen behind: actors stop adding instead of filling memory); until the buffer holds
  `min_size_to_sample` rows, inserts never wait;
- a sample of m rows waits while the buffer holds fewer than `min_size_to_sample` rows, or while it
  would take `diff` below `offset - tolerance` (data is too thin: the learner stops instead of
  overfitting what is there).

Both can wait at once only if the tolerance is too small for the largest insert and sample;
`check_sizes` refuses such a pairing up front.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SampleToInsertRatio:
    samples_per_insert: float
    min_size_to_sample: int
    tolerance: float  # in sampled rows, either side of the ratio

    def __post_init__(self) -> None:
        if not self.samples_per_insert > 0:
            raise ValueError(f"samples_per_insert {self.samples_per_insert} is not valid: expected a number > 0")
        if not (isinstance(self.min_size_to_sample, int) and self.min_size_to_sample >= 1):
            raise ValueError(f"min_size_to_sample {self.min_size_to_sample} is not valid: expected an integer >= 1")
        if not self.tolerance >= 0:
            raise ValueError(f"rate tolerance {self.tolerance} is not valid: expected a number of rows >= 0")

    @property
    def offset(self) -> float:
        return self.min_size_to_sample * self.samples_per_insert

    def can_insert(self, inserted: int, sampled: int, n: int) -> bool:
        if inserted < self.min_size_to_sample:  # filling up to the minimum is never held back
            return True
        return (inserted + n) * self.samples_per_insert - sampled <= self.offset + self.tolerance

    def can_sample(self, inserted: int, sampled: int, m: int) -> bool:
        if inserted < self.min_size_to_sample:
            return False
        return inserted * self.samples_per_insert - (sampled + m) >= self.offset - self.tolerance

    def check_sizes(self, insert: int, sample: int) -> None:
        """Refuse a tolerance under which an insert of `insert` rows and a sample of `sample` rows
        could both wait for each other for ever."""
        needed = (insert * self.samples_per_insert + sample) / 2
        if self.tolerance < needed:
            raise ValueError(
                f"rate tolerance {self.tolerance:g} is too small for inserts of {insert} rows and samples of "
                f"{sample} at {self.samples_per_insert:g} samples per insert: expected at least {needed:g} rows")
