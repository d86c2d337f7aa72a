"""Offline mode, the baseline: label a fixed set of teacher-visited states once, fit, test."""

from __future__ import annotations

import time

import numpy as np
import torch

from ..actors.envs import EnvInfo
from ..actors.evaluator import Evaluator
from ..actors.rollout import Rollout
from ..learners import checkpoint
from ..learners.distill import DistillLearner
from ..learners.offline import fit
from .config import DistillRunConfig
from .report import summarize
from .rundir import RunDir


def run_offline(config: DistillRunConfig, info: EnvInfo, teacher: checkpoint.Checkpoint, *, run: RunDir,
                started: float) -> dict[str, object]:
    cfg = config
    torch.set_num_threads(cfg.learner_threads)
    t0 = time.monotonic()
    # 1. teacher-visited states, labelled once with the teacher's Q-values
    rollout = Rollout(cfg.env, net=teacher.net, obs_shape=info.obs_shape, n_actions=info.n_actions,
                      num_envs=cfg.envs_per_actor, seed=cfg.seed)
    rollout.load_weights(teacher.version, teacher.weights)
    parts, have = [], 0
    while have < cfg.samples:
        batch, _ = rollout.collect(cfg.steps_per_call, cfg.exploration.end)
        parts.append(batch)
        have += len(batch)
    rollout.close()
    observations = np.concatenate([b.observations for b in parts])[: cfg.samples]
    labels = np.concatenate([b.teacher_q for b in parts])[: cfg.samples]
    # 2. fit each student for E epochs
    learner = DistillLearner(cfg.distill, info.obs_shape, info.n_actions, seed=cfg.seed)
    metrics = fit(learner, observations, labels, epochs=cfg.epochs, seed=cfg.seed)
    run.log({"env_steps": len(observations), "learner/steps": learner.steps, **metrics})
    # 3. test
    weights = learner.weights()
    students = {}
    for name in cfg.distill.students:
        ckpt = checkpoint.Checkpoint(name, info.obs_shape, info.n_actions, cfg.env, 1, weights[name])
        path = str(checkpoint.save(run.checkpoints / f"student-{name}-best.pt", ckpt))
        students[name] = {"checkpoint": path, "last_checkpoint": path}
    evaluator = Evaluator(cfg.env, teacher_net=teacher.net, students=cfg.distill.students,
                          obs_shape=info.obs_shape, n_actions=info.n_actions, episodes=cfg.eval_episodes,
                          seed=cfg.seed, tau=cfg.distill.tau)
    evaluator.load_teacher(teacher.version, teacher.weights)
    evaluator.load_students(1, weights)
    distill_wall_s = time.monotonic() - t0
    final = evaluator.evaluate(final=True)
    facts = {
        "mode": "offline",
        "wall_s": round(time.monotonic() - started, 2),
        "distill_wall_s": round(distill_wall_s, 2),
        "env_steps": len(observations),
        "learner_steps": learner.steps,
        "stop_reason": "epochs",
        "labels": {"labelled": len(observations)},
    }
    summary = summarize(run, cfg, teacher, final, students, facts)
    run.close()
    return summary
