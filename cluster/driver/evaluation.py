"""Evaluation and best keeping. A distillation run: greedy episodes of the teacher and students on
the evaluator actor, beside the learner; each student's best weights (and a learning teacher's best
version) kept; the target judged. A teacher run: greedy episodes in the learner's process, the
best teacher kept, the target judged on held-out seeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import ray
import torch

from ...actors.evaluate import EvalResult, evaluate
from ...learners.networks import greedy_actions, to_numpy
from ...learners.policy import GreedyPolicy
from ..config import TeacherRunConfig

Weights = dict[str, np.ndarray]
Snapshot = tuple[int, dict[str, Weights]]  # (students' version, each student's weights)
Teacher = tuple[int, Weights]  # (version, weights)
FINAL_SEED = 1_000_000  # a teacher run's final evaluation: seeds never used while training
UP_TIMEOUT_S = 120.0  # the most a waited-for evaluation waits for a restarted evaluator
PROBE_PAUSE_S = 0.2  # between probes of an evaluator Ray cannot reach yet


class StudentEvaluation:
    """One evaluation in flight at a time, every `every_s` seconds (and, given `every_steps`, that many
    env steps after the last one started); `save_best(name, version, weights)`
    writes a student's new best checkpoint. An evaluation that fails with the evaluator is counted
    lost, and none is asked for again until Ray has the evaluator up (a call to a restarting actor
    fails at once, and would be counted too)."""

    def __init__(self, students: tuple[str, ...], *, every_s: float, target: float | None,
                 save_best: Callable[[str, int, Weights], None], every_steps: int | None = None,
                 teacher_learns: bool = False) -> None:
        self.students = students  # those still evaluated (a size search drops candidates)
        self.teacher_learns = teacher_learns  # each evaluation's agreement is with another teacher version
        self.every_s = every_s
        self.every_steps = every_steps or 0
        self.next_at_step = 0  # the env step the next evaluation waits for
        self.target = target
        self.save_best = save_best
        self.evaluator: ray.actor.ActorHandle | None = None  # set when the run is wired
        # name → ((return, agreement), version, weights)
        self.best: dict[str, tuple[tuple[float, float], int, Weights]] = {}
        self.best_teacher: tuple[float, int, Weights] | None = None
        self.last: dict[str, float] = {}  # the newest evaluation's figures
        self.lost = 0  # evaluations lost with a failed evaluator
        self.teacher_version = -1  # the teacher the evaluator has: none known, so the first evaluation hands it one
        self.pending: ray.ObjectRef | None = None
        self.pending_of: tuple[Snapshot, Teacher, int | None] | None = None  # what is being evaluated, on which task
        self.probe: ray.ObjectRef | None = None  # after a loss: answered once the evaluator is up again
        self.started_at = -np.inf

    def due(self, now: float, env_steps: int = 0) -> bool:
        return (self.pending is None and env_steps >= self.next_at_step and now - self.started_at >= self.every_s
                and self._up(timeout=0))

    def start(self, snapshot: Snapshot, teacher: Teacher, *, task: int | None, dynamics: dict | None,
              env_steps: int = 0) -> None:
        """Evaluate these students against this teacher, `task` being when the task last changed, at
        `env_steps` of the run."""
        self.pending = self.evaluator.evaluate.remote(*snapshot, teacher=self._teacher_to_hand(teacher),
                                                      dynamics=dynamics)
        self.pending_of = (snapshot, teacher, task)
        self.started_at = time.monotonic()
        self.next_at_step = env_steps + self.every_steps

    def finished(self) -> tuple[dict[str, float], Snapshot, Teacher, int | None] | None:
        """The evaluation in flight once it is back (None before, or when it was lost with the evaluator)."""
        if self.pending is None or not ray.wait([self.pending], timeout=0)[0]:
            return None
        ref, self.pending = self.pending, None
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError:
            self._lost()
            return None
        snapshot, teacher, task = self.pending_of
        if result["eval/teacher_version"] != teacher[0]:  # a restarted evaluator's own teacher
            self.teacher_version = -1
        return result, snapshot, teacher, task

    def now(self, snapshot: Snapshot, teacher: Teacher, *, final: bool = False,
            dynamics: dict | None = None) -> dict[str, float]:
        """An evaluation waited for, tried again (up to 3 times) on a restarted evaluator, once it is
        up (`UP_TIMEOUT_S` at most each time)."""
        for _ in range(3):
            if not self._up(timeout=UP_TIMEOUT_S):
                break
            try:
                return ray.get(self.evaluator.evaluate.remote(*snapshot, final=final, dynamics=dynamics,
                                                              teacher=self._teacher_to_hand(teacher)))
            except ray.exceptions.RayActorError:
                self._lost()
        raise RuntimeError(f"the evaluator failed three times in a row, or was not up again within {UP_TIMEOUT_S:.0f} s")

    def judge(self, result: dict[str, float], snapshot: Snapshot, teacher: Teacher) -> None:
        """Keep each student's best weights (`beats`), and the teacher's best version."""
        if self.best_teacher is None or result["eval/return/teacher"] > self.best_teacher[0]:
            self.best_teacher = (result["eval/return/teacher"], *teacher)
        version, weights = snapshot
        for name in self.students:
            score = (result[f"eval/return/{name}"], result[f"eval/agreement/{name}"])
            interval = (result.get(f"eval/return_ci_low/{name}", score[0]),
                        result.get(f"eval/return_ci_high/{name}", score[0]))
            if name not in self.best or beats(score, interval, self.best[name][0], by_agreement=not self.teacher_learns):
                self.best[name] = (score, version, weights[name])
                self.save_best(name, version, weights[name])

    def reached(self, result: dict[str, float]) -> bool:
        """Every student at the target now; a learning teacher once (its best version is the one
        reported, as `train-teacher` keeps its best)."""
        if self.target is None:
            return False
        teacher_there = not self.teacher_learns or (self.best_teacher is not None and self.best_teacher[0] >= self.target)
        return teacher_there and all(result[f"eval/return/{name}"] >= self.target for name in self.students)

    def drop(self, name: str) -> None:
        """Student `name` is evaluated no more; its best checkpoint stays."""
        self.students = tuple(n for n in self.students if n != name)

    def forget_best(self) -> None:
        """The task changed: best students and teacher start again, as they were judged on the old one."""
        self.best, self.best_teacher = {}, None

    def _lost(self) -> None:
        self.lost += 1
        self.teacher_version = -1  # the next evaluation hands the (restarted) evaluator the newest teacher
        self.probe = self.evaluator.__ray_ready__.remote()

    def _up(self, *, timeout: float) -> bool:
        """Whether the evaluator is up: no loss since it last was, or the probe sent after one was
        answered (within `timeout` s). A probe that fails (Ray had not seen the death yet, or the
        actor is restarting) is sent again."""
        deadline = time.monotonic() + timeout
        while self.probe is not None:
            if not ray.wait([self.probe], timeout=max(deadline - time.monotonic(), 0.0))[0]:
                return False
            try:
                ray.get(self.probe)
            except ray.exceptions.RayActorError:
                self.probe = self.evaluator.__ray_ready__.remote()
                if time.monotonic() >= deadline:
                    return False
                time.sleep(min(PROBE_PAUSE_S, max(deadline - time.monotonic(), 0.0)))
            else:
                self.probe = None
        return True

    def _teacher_to_hand(self, teacher: Teacher) -> Teacher | None:
        """The teacher, once per version, for the evaluator to measure students against."""
        if self.teacher_version == teacher[0]:
            return None
        self.teacher_version = teacher[0]
        return teacher


@dataclass
class BestTeacher:
    version: int = -1
    eval_mean: float = -np.inf
    weights: Weights | None = None
    final: EvalResult | None = None  # on the held-out seeds


def beats(score: tuple[float, float], interval: tuple[float, float], best: tuple[float, float], *,
          by_agreement: bool = True) -> bool:
    """Whether a student's new evaluation, `score` (greedy return, agreement with the teacher) with
    its return's 95% interval, beats its best so far. The return decides where the interval lies
    wholly above or below the best's return; where it holds it, the returns cannot be told apart
    (20 episodes of a weak teacher's task are 80-150 points wide) and the higher agreement wins,
    which 2,000 held-out states measure closely. So an early version that was lucky once does
    not stay the best, and a teacher that scores the same whatever it does (a briefly trained Pong
    teacher loses every point) does not leave the first, untrained student as the best. Without
    `by_agreement` (a learning teacher: each agreement is with another version of it) the newer wins."""
    (_, agreement), (low, high), (best_ret, best_agreement) = score, interval, best
    if low > best_ret or high < best_ret:  # told apart by return
        return low > best_ret
    return agreement > best_agreement if by_agreement else True


class TeacherEvaluation:
    """A teacher run's greedy evaluation, in the learner's process every `every` env steps; keeps
    the best teacher and judges the target on held-out seeds."""

    def __init__(self, cfg: TeacherRunConfig, obs_shape: tuple[int, ...], n_actions: int, *, env_steps: int) -> None:
        self.cfg = cfg
        self.policy = GreedyPolicy(cfg.dqn.net, obs_shape, n_actions)
        self.best = BestTeacher()
        self.next_at = max(cfg.eval_every, cfg.learning_starts, env_steps + 1)

    def due(self, env_steps: int) -> bool:
        return env_steps >= self.next_at

    def evaluate(self, q: torch.nn.Module, version: int, env_steps: int) -> tuple[EvalResult, bool]:
        """(the result, whether it is a new best) of the online network `q` at this version."""
        self.next_at += self.cfg.eval_every
        result = evaluate(self.cfg.env, lambda obs: greedy_actions(q, obs), episodes=self.cfg.eval_episodes,
                          seed=self.cfg.seed * 100_003 + env_steps)
        if result.mean <= self.best.eval_mean:
            return result, False
        self.best = BestTeacher(version, result.mean, to_numpy(q.state_dict()))
        return result, True

    def reached(self) -> bool:
        """The best teacher at the target on held-out seeds (played once it is at it on the evaluation seeds)."""
        target = self.cfg.target_return
        if target is None or self.best.eval_mean < target:
            return False
        self.best.final = self.final(self.best.version, self.best.weights)
        return self.best.final.mean >= target

    def final(self, version: int, weights: Weights) -> EvalResult:
        """Greedy episodes on seeds never used while training."""
        self.policy.load(version, weights)
        return evaluate(self.cfg.env, self.policy.act, episodes=self.cfg.eval_episodes,
                        seed=FINAL_SEED + self.cfg.seed * 1000)
