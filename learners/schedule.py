"""Exploration schedules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """ε(t) = start + (end − start) · min(1, t / duration)."""

    start: float
    end: float
    duration: int

    def __call__(self, t: int) -> float:
        if self.duration <= 0:
            return self.end
        frac = min(1.0, max(0, t) / self.duration)
        return self.start + (self.end - self.start) * frac
