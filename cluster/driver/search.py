"""The smallest-student search (`qdistill shrink`): candidates distilled side by side in one run,
on the same stream, and halved at rungs of the budget (successive halving on their evaluations).

At each rung (1/8, 1/4 and 1/2 of the budget) the candidates still in the run are ranked by their
best evaluated % of the teacher's return, counted no higher than the threshold (`keep` x 100):
every candidate at the threshold ranks alike, and among alike ones the smaller ranks first. The
lower half is dropped: it stops training and being evaluated. So the candidates that cannot reach
the threshold go first, and once several reach it, the larger of them. At the end the candidates
left play the final held-out evaluation; the winner is the smallest whose 95% interval of % of
teacher lies wholly at or above the threshold, or none.

A run of several tasks ranks a candidate by the geometric mean over tasks of its % of each task's
teacher, each counted no higher than the threshold (so a task far above it cannot make up for one
below); its winner's interval must clear the threshold on every task."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .loop import budget_fraction

RUNGS = (0.125, 0.25, 0.5)  # fractions of the budget at which the candidates are halved


@dataclass
class SizeSearch:
    keep: float  # the share of the teacher's return to keep (0.95: 95%)
    params: dict[str, int]  # every candidate's parameters
    active: list[str] = field(default_factory=list)  # the candidates still in the run
    dropped: dict[str, dict[str, object]] = field(default_factory=dict)  # name -> when, and its figures then
    rung: int = 0  # the next rung

    def __post_init__(self) -> None:
        self.active = self.active or sorted(self.params, key=lambda n: (self.params[n], n))

    @property
    def threshold(self) -> float:
        return 100.0 * self.keep

    def due(self, fraction: float) -> bool:
        """Whether the run, `fraction` of the way through its budget, has reached the next rung."""
        return self.rung < len(RUNGS) and fraction >= RUNGS[self.rung]

    def halve(self, best_pct: dict[str, float], *, env_steps: int,
              figures: dict[str, dict[str, float]]) -> list[str]:
        """Drop the lower half (rounded down) of the active candidates by their best % of teacher
        (`best_pct`; a candidate not evaluated yet ranks last); returns the dropped names, smallest
        first. `figures`: each candidate's newest evaluation, kept for the dropped ones' rows."""
        def rank(name: str) -> tuple[float, int, str]:
            pct = best_pct.get(name, -math.inf)
            return -min(pct if math.isfinite(pct) else -math.inf, self.threshold), self.params[name], name

        ranked = sorted(self.active, key=rank)
        kept, out = ranked[:math.ceil(len(ranked) / 2)], ranked[math.ceil(len(ranked) / 2):]
        self.active = [n for n in self.active if n in kept]
        for name in out:
            self.dropped[name] = {"at_env_steps": env_steps, "at_rung": RUNGS[self.rung],
                                  "best_pct_of_teacher": best_pct.get(name), **figures.get(name, {})}
        self.rung += 1
        return sorted(out, key=lambda n: (self.params[n], n))

    def winner(self, pct_ci_low: dict[str, float]) -> str | None:
        """The smallest active candidate whose interval's low end clears the threshold."""
        return next((n for n in sorted(self.active, key=lambda n: (self.params[n], n))
                     if pct_ci_low.get(n, -math.inf) >= self.threshold), None)

    def state(self) -> dict[str, object]:
        return {"active": list(self.active), "dropped": self.dropped, "rung": self.rung}

    def restore(self, state: dict[str, object]) -> None:
        self.active, self.dropped, self.rung = list(state["active"]), dict(state["dropped"]), int(state["rung"])


class Searching:
    """A distillation driver's part in a size search (`search` None: no search). The driver gives
    `_search_scores(result)`, each active candidate's best score so far and its newest figures,
    and `_drop(name)`, which stops a candidate training and being evaluated."""

    search: SizeSearch | None

    def _fraction(self) -> float:
        return budget_fraction(self.config, self.collector.env_steps, time.monotonic() - self.telemetry.started)

    def _halve_due(self, result: dict[str, float]) -> None:
        """Every rung of the search the run has passed and not yet applied, on this evaluation."""
        while self.search is not None and self.search.due(self._fraction()):
            best, figures = self._search_scores(result)
            dropped = self.search.halve(best, env_steps=self.collector.env_steps, figures=figures)
            for name in dropped:
                self._drop(name)
            self.metrics = self._without_dropped(self.metrics)
            self.run.log({"event": "candidates_dropped", **self.counts(), "dropped": dropped,
                          "candidates": list(self.search.active)})

    def _without_dropped(self, figures: dict[str, float]) -> dict[str, float]:
        """The figures but those of the search's dropped candidates (KEY/NAME)."""
        if self.search is None or not self.search.dropped:
            return figures
        return {k: v for k, v in figures.items() if k.rsplit("/", 1)[-1] not in self.search.dropped}


def candidate_figures(result: dict[str, float], names: list[str]) -> dict[str, dict[str, float]]:
    """Each candidate's figures in an evaluation's result, its name taken off their keys."""
    return {n: {k[:-len(n) - 1]: v for k, v in result.items() if k.endswith(f"/{n}")} for n in names}
