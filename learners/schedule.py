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


def behaviour_beta(behaviour: str, schedule: LinearSchedule, t: int) -> float:
    """β, the probability that the teacher acts an episode: 1 for `teacher`, 0 for `student`,
    the schedule's value at env step t for `mixed` (DAgger-style: the student takes over)."""
    if behaviour == "teacher":
        return 1.0
    if behaviour == "student":
        return 0.0
    if behaviour == "mixed":
        return schedule(t)
    raise ValueError(f"behaviour {behaviour!r} is not known: expected one of teacher, student, mixed")
