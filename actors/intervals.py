"""95% confidence intervals for evaluation figures: percentile bootstrap over episodes (and, for a
student's % of its teacher, over the episode seeds both played), and the interquartile mean over
runs with a bootstrap over runs (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"). numpy only; a fixed seed, so a figure and its interval are reproduced exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float  # the statistic on the samples themselves
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], columns: list[np.ndarray], *, level: float = LEVEL,
              resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """`statistic` of the paired samples (equal-length columns, row i of each drawn together),
    with the percentile bootstrap interval: `statistic` takes the resampled columns stacked as
    [resamples, n] arrays (one per column) and returns one value per resample."""
    n = len(columns[0])
    if n == 0 or any(len(c) != n for c in columns):
        raise ValueError(f"a bootstrap needs paired samples of one length >= 1, not lengths {[len(c) for c in columns]}")
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level} is not valid: expected a number in (0, 1)")
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    rows = np.random.default_rng(seed).integers(0, n, (resamples, n))
    values = statistic(*(c[rows] for c in cols))
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return Interval(float(statistic(*(c[None] for c in cols))[0]), float(low), float(high))


def mean_ci(samples, **kw) -> Interval:
    """The mean of episode returns, with its interval."""
    return bootstrap(lambda x: x.mean(axis=1), [np.asarray(samples)], **kw)


def percent_of(value, reference):
    """value as % of reference (numbers or arrays); for negative returns (Acrobot) the ratio
    flips so closer is higher; nan against a reference of 0."""
    value, reference = np.asarray(value, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        flipped = np.where(value != 0, reference / value, np.inf)
        pct = 100.0 * np.where(reference > 0, value / reference, flipped)
    pct = np.where(reference == 0, np.nan, pct)
    return float(pct) if pct.ndim == 0 else pct


def percent_ci(student, teacher, **kw) -> Interval:
    """A student's mean return as % of its teacher's (percent_of), both played on the same
    episode seeds: episode i of each is one pair, resampled together."""
    return bootstrap(lambda s, t: percent_of(s.mean(axis=1), t.mean(axis=1)), [np.asarray(student), np.asarray(teacher)],
                     **kw)


def geometric_mean(values) -> float:
    """Of positive values (a multi-task student's % of each task's teacher, Rusu et al. 2016); 0
    once any is 0 or below (a task the student fails)."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.exp(np.log(values).mean())) if (values > 0).all() else 0.0


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row: the mean of the middle 50% of its values (a quarter cut at
    each end, fractional cuts weighted, as scipy's trim_mean does for whole ones)."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=-1)
    n = x.shape[-1]
    weights = np.clip(np.minimum(np.arange(1, n + 1), n - np.arange(n)) - n / 4, 0, 1)  # 1 inside, a fraction at the cut
    return (x * weights).sum(axis=-1) / weights.sum()


def iqm_ci(scores, **kw) -> Interval:
    """The interquartile mean of one score per run (seed), with a bootstrap over runs."""
    return bootstrap(iqm, [np.asarray(scores)], **kw)
