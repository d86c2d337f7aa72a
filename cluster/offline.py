"""Offline mode, the baseline: label a fixed set of teacher-visited states once, fit, test."""

from __future__ import annotations

import time

import numpy as np

from ..actors.envs import EnvInfo
from ..actors.evaluator import Evaluator
from ..actors.rollout import Rollout
from ..learners import checkpoint
from ..learners.batch import TransitionBatch
from ..learners.compute import learner_torch
from ..learners.distill import DistillLearner
from ..learners.offline import fit
from .config import DistillRunConfig
from .rundir.report import summarize
from .rundir import RunDir


def run_offline(config: DistillRunConfig, info: EnvInfo, teacher: checkpoint.Checkpoint, *, run: RunDir,
                started: float) -> dict[str, object]:
    cfg = config
    learner_torch(cfg.learner_threads)
    t0 = time.monotonic()
    labelled, dropped_nonfinite = _label(cfg, info, teacher)
    observations = labelled.observations
    # 2. fit each student for E epochs, evaluating after each (the same early stopping as online)
    learner = DistillLearner(cfg.distill, [(info.obs_shape, info.n_actions)], seed=cfg.seed)
    learner.take_statistics(teacher.weights)
    evaluator = Evaluator(cfg.env, teacher_net=teacher.net, students=cfg.distill.students,
                          obs_shape=info.obs_shape, n_actions=info.n_actions, episodes=cfg.eval_episodes,
                          seed=cfg.seed, tau=cfg.distill.tau, ci_width=cfg.eval_ci,
                          max_episodes=cfg.eval_max_episodes)
    evaluator.load_teacher(teacher.version, teacher.weights)
    best: dict[str, tuple[float, dict[str, np.ndarray]]] = {}

    def after_epoch(epoch: int) -> None:
        weights = learner.weights()
        evaluator.load_students(epoch + 1, weights)
        result = evaluator.evaluate()
        run.log({"env_steps": len(observations), "learner/steps": learner.steps, "epoch": epoch + 1,
                 "distill_s": round(time.monotonic() - t0, 3), **result})
        for name in cfg.distill.students:
            if name not in best or result[f"eval/return/{name}"] > best[name][0]:
                best[name] = (result[f"eval/return/{name}"], weights[name])
                run.save_student(name, "best", env=cfg.env, obs_shape=info.obs_shape, n_actions=info.n_actions,
                                 version=epoch + 1, weights=weights[name])

    fit(learner, labelled, epochs=cfg.epochs, seed=cfg.seed, after_epoch=after_epoch)
    distill_wall_s = time.monotonic() - t0
    # 3. test each student's best on other held-out episodes
    students = {}
    last = learner.weights()
    for name in cfg.distill.students:
        students[name] = {"checkpoint": str(run.student_checkpoint(name, "best")),
                          "last_checkpoint": run.save_student(name, "last", env=cfg.env, obs_shape=info.obs_shape,
                                                             n_actions=info.n_actions, version=cfg.epochs,
                                                             weights=last[name])}
        evaluator.load_students(0, {name: best[name][1]})
    final = evaluator.evaluate(final=True)
    facts = {
        "mode": "offline",
        "wall_s": round(time.monotonic() - started, 2),
        "distill_wall_s": round(distill_wall_s, 2),
        "env_steps": len(observations),
        "learner_steps": learner.steps,
        "dropped_nonfinite": dropped_nonfinite,
        "stop_reason": "epochs",
        "labels": {"labelled": len(observations)},
    }
    summary = summarize(run, cfg, teacher, final, students, facts)
    run.close()
    return summary


def _label(cfg: DistillRunConfig, info: EnvInfo, teacher: checkpoint.Checkpoint) -> tuple[TransitionBatch, int]:
    """1. `samples` teacher-visited states, labelled once with the teacher's Q-values; and how many
    transitions the rollout dropped for NaN or inf."""
    rollout = Rollout(cfg.env, net=teacher.net, obs_shape=info.obs_shape, n_actions=info.n_actions, next_obs=False,
                      num_envs=cfg.envs_per_actor, seed=cfg.seed)
    rollout.load_weights(teacher.version, teacher.weights)
    parts, have = [], 0
    while have < cfg.samples:
        batch, _ = rollout.collect(cfg.steps_per_call, cfg.exploration.end)
        parts.append(batch)
        have += len(batch)
    rollout.close()
    return TransitionBatch.concat(parts).take(slice(0, cfg.samples)), rollout.dropped_nonfinite
