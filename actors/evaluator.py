"""Evaluator: greedy episodes of the teacher and each student, and how close each student is."""

from __future__ import annotations

import time

import numpy as np
import torch

from ..learners.configs import DEFAULT_TAU
from ..learners.losses import agreement, kl_loss
from ..learners.policy import GreedyPolicy
from .evaluate import MAX_FINAL_EPISODES, EvalResult, evaluate, visited_states
from .intervals import mean_ci, percent_ci, percent_of

HELDOUT_SEED = 2_000_000  # held-out states and episodes come from seeds training never uses
FINAL_OFFSET = 100_000  # the final evaluation's episodes differ from the periodic ones


class Evaluator:
    """Plain class; `EvaluatorActor` runs it next to its own environments."""

    def __init__(self, env_id: str, *, teacher_net: str, students: tuple[str, ...], obs_shape: tuple[int, ...],
                 n_actions: int, episodes: int = 20, heldout_states: int = 2_000, seed: int = 0,
                 tau: float = DEFAULT_TAU, ci_width: float | None = None,
                 max_episodes: int = MAX_FINAL_EPISODES) -> None:
        self.env_id = env_id
        self.episodes = episodes
        self.ci_width = ci_width  # the final evaluation plays on until each % of teacher's interval is this narrow ...
        self.max_episodes = max_episodes  # ... or it has played this many
        self.heldout_size = heldout_states
        self.seed = HELDOUT_SEED + seed * 1_000
        self.tau = tau
        self.teacher = GreedyPolicy(teacher_net, obs_shape, n_actions)
        self.students = {name: GreedyPolicy(name, obs_shape, n_actions) for name in students}
        self.teacher_result: EvalResult | None = None
        self.heldout: np.ndarray | None = None
        self.heldout_q: np.ndarray | None = None
        self.dynamics: dict[str, float] | None = None

    def load_teacher(self, version: int, weights: dict[str, np.ndarray]) -> None:
        """A new teacher: new held-out states (the ones it visits) and a new reference return."""
        self.teacher.load(version, weights)
        self._reference()

    def set_dynamics(self, dynamics: dict[str, float] | None) -> None:
        """A changed task: episodes and held-out states from now on play under `dynamics`."""
        self.dynamics = dynamics
        if self.teacher_result is not None:
            self._reference()

    def _reference(self) -> None:
        self.heldout = visited_states(self.env_id, self.teacher.act, num_states=self.heldout_size,
                                      seed=self.seed + 500, dynamics=self.dynamics)
        self.heldout_q = self.teacher.q_values(self.heldout)
        self.teacher_result = self._episodes(self.teacher.act, self.seed)

    def _episodes(self, act, seed: int, episodes: int | None = None) -> EvalResult:
        return evaluate(self.env_id, act, episodes=episodes or self.episodes, seed=seed, dynamics=self.dynamics)

    def load_students(self, version: int, weights: dict[str, dict[str, np.ndarray]]) -> None:
        for name, w in weights.items():
            self.students[name].load(version, w)

    def evaluate(self, *, final: bool = False, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """Returns, agreement and KL; `final` plays other held-out episodes than the periodic ones
        (which chose the best checkpoints), with the teacher replayed on the same seeds. `names`:
        the students to play (default all; a size search plays fewer once it drops candidates)."""
        if self.teacher_result is None:
            raise ValueError("the evaluator has no teacher yet: call load_teacher first")
        start = time.monotonic()
        seed = self.seed + (FINAL_OFFSET if final else 0)
        teacher = self._episodes(self.teacher.act, seed) if final else self.teacher_result
        students = {name: self.students[name] for name in (self.students if names is None else names)}
        results = {name: self._episodes(student.act, seed) for name, student in students.items()}
        if final:
            teacher, results = self._narrowed(seed, teacher, results)
        teacher_mean = teacher.mean
        metrics = {
            "eval/return/teacher": teacher_mean,
            "eval/return_std/teacher": teacher.std,
            "eval/teacher_version": float(self.teacher.version),
            "eval/episodes": float(teacher.episodes),
            **_interval("eval/return_ci", "teacher", mean_ci(teacher.returns)),
        }
        teacher_q = torch.from_numpy(self.heldout_q)
        for name, student in students.items():
            result = results[name]
            student_q = torch.from_numpy(student.q_values(self.heldout))
            metrics[f"eval/return/{name}"] = result.mean
            metrics[f"eval/return_std/{name}"] = result.std
            metrics[f"eval/pct_of_teacher/{name}"] = percent_of(result.mean, teacher_mean)
            metrics.update(_interval("eval/return_ci", name, mean_ci(result.returns)))
            metrics.update(_interval("eval/pct_of_teacher_ci", name, percent_ci(result.returns, teacher.returns)))
            metrics[f"eval/agreement/{name}"] = agreement(student_q, teacher_q)
            # KL is >= 0; float32 rounding can leave a near-equal pair a hair below it
            metrics[f"eval/kl/{name}"] = max(float(kl_loss(student_q, teacher_q, self.tau)), 0.0)
            metrics[f"eval/student_version/{name}"] = float(student.version)
        metrics["eval/wall_s"] = time.monotonic() - start
        return metrics

    def _narrowed(self, seed: int, teacher: EvalResult,
                  results: dict[str, EvalResult]) -> tuple[EvalResult, dict[str, EvalResult]]:
        """With `ci_width`: rounds of `episodes` more, on the next seeds, for the teacher and every
        student alike (the pairs stay paired), until each student's 95% interval of % of its teacher
        is at most `ci_width` points wide, or `max_episodes` are played."""
        while self.ci_width is not None and teacher.episodes < self.max_episodes and any(
                _width(percent_ci(r.returns, teacher.returns)) > self.ci_width for r in results.values()):
            more = min(self.episodes, self.max_episodes - teacher.episodes)
            at = seed + teacher.episodes
            teacher = teacher + self._episodes(self.teacher.act, at, more)
            results = {name: results[name] + self._episodes(self.students[name].act, at, more) for name in results}
        return teacher, results


def _width(interval) -> float:
    """An interval's width; an undefined one (a teacher's mean of 0) counts as infinitely wide."""
    width = interval.high - interval.low
    return width if np.isfinite(width) else np.inf


def _interval(key: str, name: str, interval) -> dict[str, float]:
    """A 95% bootstrap interval as two metrics, KEY_low/NAME and KEY_high/NAME."""
    return {f"{key}_low/{name}": interval.low, f"{key}_high/{name}": interval.high}
