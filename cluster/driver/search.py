"""The smallest-student search (`qdistill shrink`): candidates distilled side by side in one run,
on the same stream, and halved at rungs of the budget (successive halving on their evaluations).

At each rung (1/8, 1/4 and 1/2 of the budget) the candidates still in the run are ranked by the
mean % of the teacher's return over their last `WINDOW` evaluations, counted no higher than the
threshold (`keep` x 100): every candidate at the threshold ranks alike, and among alike ones the
smaller ranks first. A mean, not the best: an evaluation is 20 episodes, and on a game whose return
spreads as widely as its mean (MinAtar) the best of many such figures is mostly luck. The
lower half is dropped: it stops training and being evaluated. So the candidates that cannot reach
the threshold go first, and once several reach it, the larger of them. At the end the candidates
left play the final held-out evaluation; the winner is the smallest whose 95% interval of % of
teacher lies wholly at or above the threshold, or none.

A run of several tasks ranks a candidate by the geometric mean over tasks of its % of each task's
teacher, each counted no higher than the threshold (so a task far above it cannot make up for one
below), per evaluation; its winner's interval must clear the threshold on every task."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .loop import budget_fraction

RUNGS = (0.125, 0.25, 0.5)  # fractions of the budget at which the candidates are halved
WINDOW = 5  # a candidate ranks by the mean of its last WINDOW evaluations (100 episodes)


@dataclass
class SizeSearch:
    keep: float  # the share of the teacher's return to keep (0.95: 95%)
    params: dict[str, int]  # every candidate's parameters
    active: list[str] = field(default_factory=list)  # the candidates still in the run
    dropped: dict[str, dict[str, object]] = field(default_factory=dict)  # name -> when, and its figures then
    rung: int = 0  # the next rung
    scores: dict[str, list[float]] = field(default_factory=dict)  # name -> its last `window` scores
    window: int = WINDOW

    def __post_init__(self) -> None:
        self.active = self.active or sorted(self.params, key=lambda n: (self.params[n], n))

    @property
    def threshold(self) -> float:
        return 100.0 * self.keep

    def due(self, fraction: float) -> bool:
        """Whether the run, `fraction` of the way through its budget, has reached the next rung."""
        return self.rung < len(RUNGS) and fraction >= RUNGS[self.rung]

    def observe(self, scores: dict[str, float]) -> None:
        """One evaluation's score (% of teacher) of each active candidate; a figure that is not
        finite (a teacher that scored 0) is left out."""
        for name, score in scores.items():
            if name in self.active and math.isfinite(score):
                self.scores[name] = [*self.scores.get(name, []), float(score)][-self.window:]

    def ranked_score(self, name: str) -> float:
        """The mean of a candidate's last `window` scores (-inf before any)."""
        window = self.scores.get(name)
        return sum(window) / len(window) if window else -math.inf

    def halve(self, *, env_steps: int, figures: dict[str, dict[str, float]]) -> list[str]:
        """Drop the lower half (rounded down) of the active candidates by their ranked score (a
        candidate not evaluated yet ranks last); returns the dropped names, smallest first.
        `figures`: each candidate's newest evaluation, kept for the dropped ones' rows."""
        def rank(name: str) -> tuple[float, int, str]:
            return -min(self.ranked_score(name), self.threshold), self.params[name], name

        ranked = sorted(self.active, key=rank)
        kept, out = ranked[:math.ceil(len(ranked) / 2)], ranked[math.ceil(len(ranked) / 2):]
        self.active = [n for n in self.active if n in kept]
        for name in out:
            score = self.ranked_score(name)
            self.dropped[name] = {"at_env_steps": env_steps, "at_rung": RUNGS[self.rung],
                                  "ranked_pct_of_teacher": score if math.isfinite(score) else None,
                                  **figures.get(name, {})}
            self.scores.pop(name, None)
        self.rung += 1
        return sorted(out, key=lambda n: (self.params[n], n))

    def winner(self, pct_ci_low: dict[str, float]) -> str | None:
        """The smallest active candidate whose interval's low end clears the threshold."""
        return next((n for n in sorted(self.active, key=lambda n: (self.params[n], n))
                     if pct_ci_low.get(n, -math.inf) >= self.threshold), None)

    def state(self) -> dict[str, object]:
        return {"active": list(self.active), "dropped": self.dropped, "rung": self.rung, "scores": self.scores}

    def restore(self, state: dict[str, object]) -> None:
        self.active, self.dropped, self.rung = list(state["active"]), dict(state["dropped"]), int(state["rung"])
        self.scores = {name: list(window) for name, window in state.get("scores", {}).items()}


class Searching:
    """A distillation driver's part in a size search (`search` None: no search). The driver gives
    `_search_scores(result)`, each active candidate's score in this evaluation and its figures,
    and `_drop(name)`, which stops a candidate training and being evaluated."""

    search: SizeSearch | None

    def _fraction(self) -> float:
        return budget_fraction(self.config, self.collector.env_steps, time.monotonic() - self.telemetry.started)

    def _halve_due(self, result: dict[str, float]) -> None:
        """Note this evaluation's scores, then apply every rung of the search the run has passed and
        not yet applied. Every evaluation comes here once."""
        if self.search is None:
            return
        scores, figures = self._search_scores(result)
        self.search.observe(scores)
        while self.search.due(self._fraction()):
            dropped = self.search.halve(env_steps=self.collector.env_steps, figures=figures)
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
