"""The online distillation driver: teacher-labelled states stream in, students are distilled.

collect (teacher/student/mixed behaviour, teacher labels) → buffer.add → buffer.sample →
[relabel stale labels] → learner.step (every student) → publish students → evaluate.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import ray
import torch

from ..actors.envs import EnvInfo
from ..actors.wire import Schema
from ..actors.refresh import staleness
from ..actors.remote import EvaluatorActor, ParameterServerActor, RolloutActor, make_buffer
from ..learners import checkpoint
from ..learners.distill import DistillLearner
from ..learners.networks import GreedyPolicy, from_numpy, to_numpy
from ..learners.schedule import LinearSchedule, behaviour_beta
from .config import DistillRunConfig
from .control import RunControl
from .placement import actors_per_node, on_head, rollout_options
from .loop import Collector, Prefetcher, budget_spent, minibatches, pace, steer, stop_actors
from .report import summarize
from .rundir import RunDir


class DistillDriver:
    def __init__(self, config: DistillRunConfig, info: EnvInfo, teacher: checkpoint.Checkpoint, *,
                 run: RunDir, started: float, control: RunControl, device: str = "cpu") -> None:
        self.config = config
        self.info = info
        self.teacher = teacher
        self.run = run
        self.started = started
        self.control = control
        torch.set_num_threads(config.learner_threads)
        self.learner = DistillLearner(config.distill, info.obs_shape, info.n_actions, seed=config.seed, device=device)
        self.student_version = 0
        self.resumed_at = (0, 0)  # env and learner steps this run (re)started from
        self.resumed_distill_s = 0.0
        self.teacher_version = teacher.version
        self.published_at = {teacher.version: time.monotonic()}
        # the learner's own teacher copy, for on-sample refresh
        self.teacher_policy = GreedyPolicy(teacher.net, teacher.obs_shape, teacher.n_actions)
        self.teacher_policy.load(teacher.version, teacher.weights)
        self.epsilon = LinearSchedule(config.exploration.start, config.exploration.end, config.exploration.steps)
        self.beta = LinearSchedule(config.beta_start, config.beta_end, config.beta_steps)
        self.best: dict[str, tuple[float, int, dict[str, np.ndarray]]] = {}
        self.counters = {"labels/relabelled_on_sample": 0, "labels/relabelled_in_shards": 0}

    def _beta(self, env_steps: int) -> float:
        return behaviour_beta(self.config.behaviour, self.beta, env_steps)

    # -- resumable state ------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {
            "learner": self.learner.state_dict(),
            "env_steps": self.collector.env_steps,
            "distill_s": time.monotonic() - self.distill_started,
            "student_version": self.student_version,
            "counters": dict(self.counters),
            "best": {name: {"return": ret, "version": version, "weights": from_numpy(weights)}
                     for name, (ret, version, weights) in self.best.items()},
        }

    def restore(self, state: dict[str, object]) -> None:
        """Carry on from a saved state: students, optimisers, counters and best students."""
        self.learner.load_state_dict(state["learner"])
        self.resumed_at = (int(state["env_steps"]), self.learner.steps)
        self.resumed_distill_s = float(state["distill_s"])
        self.student_version = int(state["student_version"])
        self.counters.update(state["counters"])
        self.best = {name: (float(b["return"]), int(b["version"]), to_numpy(b["weights"]))
                     for name, b in state["best"].items()}

    def save_state(self) -> None:
        checkpoint.save_state(self.run.checkpoints / "state.pt", self.state())

    def train(self) -> dict[str, object]:
        cfg = self.config
        self.distill_started = time.monotonic() - self.resumed_distill_s
        local = on_head()
        run_id = self.run_id = f"qdistill-{uuid.uuid4().hex[:8]}"  # names of this run's actors
        self.teacher_params = ParameterServerActor.options(name=f"{run_id}-teacher-params", **local).remote()
        self.teacher_params.publish.remote(self.teacher_version, self.teacher.weights)
        self.student_params = ParameterServerActor.options(name=f"{run_id}-student-params", **local).remote()
        self.student_params.publish.remote(self.student_version, self.learner.weights())
        self.buffer = make_buffer(cfg.buffer, capacity=cfg.buffer_capacity, shards=cfg.shards, prefix=cfg.redis_prefix,
                                  chunk_size=cfg.chunk_size, schema=Schema(self.info.obs_shape, self.info.n_actions),
                                  seed=cfg.seed, options=local, name=run_id)
        if cfg.refresh == "periodic":
            self.buffer.attach_teacher(self.teacher_params, self.teacher.net, self.info.obs_shape, self.info.n_actions)
        self.collector = Collector(self._make_actor, cfg.actors, steps_per_call=cfg.steps_per_call,
                                   envs_per_actor=cfg.envs_per_actor)
        self.collector.env_steps = self.resumed_at[0]
        self.evaluator = EvaluatorActor.options(num_cpus=0, **local).remote(
            cfg.env, teacher_net=self.teacher.net, students=cfg.distill.students, obs_shape=self.info.obs_shape,
            n_actions=self.info.n_actions, episodes=cfg.eval_episodes, seed=cfg.seed, tau=cfg.distill.tau,
            teacher_version=self.teacher_version, teacher_weights=self.teacher.weights,
        )
        self.placement = {"actors_per_node_at_start": actors_per_node(self.collector.handles(), timeout=60)}
        try:
            reason = self._loop()
            distill_wall_s = time.monotonic() - self.distill_started
            view = self.collector.view()
            self.placement.update(actors_per_node_at_end=view["per_node"], actor_failures=self.collector.failures,
                                  actor_restarts=view["restarts"])
            return self._finish(reason, distill_wall_s)
        finally:
            stop_actors(self.collector.handles(),
                        [*self.buffer.actors(), self.teacher_params, self.student_params, self.evaluator])

    def _make_actor(self, i: int) -> ray.actor.ActorHandle:
        cfg = self.config
        acting = cfg.distill.students[0] if cfg.behaviour != "teacher" else None
        return RolloutActor.options(**rollout_options(cfg)).remote(
            cfg.env, net=self.teacher.net, obs_shape=self.info.obs_shape, n_actions=self.info.n_actions,
            num_envs=cfg.envs_per_actor, seed=cfg.seed * 1000 + i, actor_id=i,
            params=f"{self.run_id}-teacher-params", shard=self.buffer.shard_for(i),
            student=acting, student_params=f"{self.run_id}-student-params" if acting else None,
        )

    def _loop(self) -> str:
        cfg = self.config
        collector = self.collector
        prefetch = Prefetcher(self.buffer, cfg.distill.batch_size * cfg.updates_per_sample)
        recent: list[float] = []
        metrics: dict[str, float] = {}
        eval_ref = None
        eval_snapshot: tuple[int, dict] | None = None
        last_eval_at = -np.inf
        refresh_refs: list = []
        last_refresh = 0
        last_log, steps_at_log = time.monotonic(), collector.env_steps
        last_save = time.monotonic()
        self.last_eval: dict[str, float] = {}
        stop = None
        while stop is None:
            stop = budget_spent(cfg, collector.env_steps, time.monotonic() - self.distill_started) or \
                steer(self.control, collector)
            owes, allowed = pace(cfg, collector.env_steps, self.learner.steps, collector.call_size, collector.up,
                                  since=self.resumed_at)
            if not stop:
                collector.launch(allowed, self.epsilon(collector.env_steps), self._beta(collector.env_steps))
            for result in collector.harvest(timeout=0.0 if owes or stop else 0.05):
                recent = (recent + [ret for ret, _ in result["episodes"]])[-20:]

            if owes and not stop:
                ids, batch = prefetch.sample()
                metrics.update(self._label_metrics(ids, batch))
                for mb in minibatches(batch, cfg.distill.batch_size):
                    metrics.update(self.learner.step(mb.observations, mb.teacher_q))
                    if self.learner.steps % cfg.publish_every == 0:
                        self.student_version += 1
                        self.student_params.publish.remote(self.student_version, self.learner.weights())
                if cfg.refresh == "periodic" and self.learner.steps - last_refresh >= cfg.refresh_every:
                    done, refresh_refs = ray.wait(refresh_refs, num_returns=len(refresh_refs), timeout=0)
                    self.counters["labels/relabelled_in_shards"] += sum(ray.get(done))
                    if not refresh_refs:
                        refresh_refs = self.buffer.refresh_async(cfg.refresh_chunk)
                        last_refresh = self.learner.steps

            now = time.monotonic()
            if eval_ref is None and not stop and self.learner.steps > 0 and now - last_eval_at >= cfg.eval_every_s:
                eval_snapshot = (self.student_version, self.learner.weights())
                eval_ref = self.evaluator.evaluate.remote(*eval_snapshot)
                last_eval_at = now
            if eval_ref is not None and ray.wait([eval_ref], timeout=0)[0]:
                result = ray.get(eval_ref)
                eval_ref = None
                self._record_eval(result, eval_snapshot)
                if self._reached_target(result):
                    stop = "target"

            if stop or now - last_log >= 2.0:  # and once more at the end
                sps = (collector.env_steps - steps_at_log) / max(now - last_log, 1e-9)
                last_log, steps_at_log = now, collector.env_steps
                view, buffer = collector.view(), self.buffer.stats()
                self.run.log({"env_steps": collector.env_steps, "learner/steps": self.learner.steps,
                              "distill_s": round(now - self.distill_started, 3),
                              "rollout/actors": view["alive"], "rollout/actors_pending": view["pending"],
                              "rollout/actor_restarts": view["restarts"], "rollout/actor_failures": collector.failures,
                              "rollout/steps_per_s": round(sps, 1), "rollout/beta": self._beta(collector.env_steps),
                              "charts/episodic_return": float(np.mean(recent)) if recent else None,
                              "buffer/size": buffer["buffer/size"],
                              "students/version": self.student_version, **self.counters, **metrics})
                self._publish(now, sps, metrics, view, buffer)
            if not stop and now - last_save >= cfg.checkpoint_every_s:
                self.save_state()
                last_save = now
        return stop

    def _publish(self, now: float, sps: float, metrics: dict[str, float], view: dict, buffer: dict) -> None:
        cfg = self.config
        self.control.publish(
            state="running", phase="distill", env_steps=self.collector.env_steps, learner_steps=self.learner.steps,
            progress={"done": self.collector.env_steps if cfg.steps else now - self.distill_started,
                      "total": cfg.steps or cfg.time, "unit": "steps" if cfg.steps else "s"},
            fields=self._progress_fields(sps, metrics), steps_per_s=round(sps, 1), actors=view,
            buffer={"size": int(buffer["buffer/size"]), "capacity": int(buffer["buffer/capacity"])},
            label_staleness=metrics.get("buffer/label_staleness"),
            returns={"teacher": self.last_eval.get("eval/return/teacher"),
                     **{n: self.last_eval.get(f"eval/return/{n}") for n in cfg.distill.students}},
        )

    def _finish(self, reason: str, distill_wall_s: float) -> dict[str, object]:
        """Last checkpoints, then the final evaluation of each student's best on other held-out episodes."""
        last = self.learner.weights()
        # the last weights compete for best on the same episodes as every periodic evaluation
        snapshot = (self.student_version, last)
        self._record_eval(ray.get(self.evaluator.evaluate.remote(*snapshot)), snapshot)
        students = {}
        for name in self.config.distill.students:
            last_path = self.save_student(name, "last", self.student_version, last[name])
            students[name] = {"last_checkpoint": last_path,
                              "checkpoint": str(self.run.checkpoints / f"student-{name}-best.pt")}
        best = {name: self.best[name][2] for name in students}
        final = ray.get(self.evaluator.evaluate.remote(self.student_version, best, final=True))
        facts = {
            "mode": "online",
            "wall_s": round(time.monotonic() - self.started, 2),
            "distill_wall_s": round(distill_wall_s, 2),
            "env_steps": self.collector.env_steps,
            "learner_steps": self.learner.steps,
            "stop_reason": reason,
            "actors": self.placement,
            "labels": dict(self.counters),
        }
        summary = summarize(self.run, self.config, self.teacher, final, students, facts)
        self.save_state()
        self.run.close()
        return summary

    def _label_metrics(self, ids: np.ndarray, batch) -> dict[str, float]:
        """Staleness of the sampled labels; with on-sample refresh, stale rows are relabelled first."""
        now = time.monotonic()
        lag, seconds = staleness(batch.label_version, self.teacher_version, self.published_at, now)
        out = {
            "buffer/label_staleness": float(lag.mean()),
            "buffer/label_staleness_p95": float(np.percentile(lag, 95)),
            "buffer/label_staleness_s": float(seconds.mean()),
        }
        stale = lag > 0
        if self.config.refresh == "on-sample" and stale.any():
            q = self.teacher_policy.q_values(batch.observations[stale])
            batch.teacher_q[stale] = q
            batch.label_version[stale] = self.teacher_version
            self.buffer.relabel(ids[stale], q, self.teacher_version)
            self.counters["labels/relabelled_on_sample"] += int(stale.sum())
        return out

    def _record_eval(self, result: dict[str, float], snapshot: tuple[int, dict]) -> None:
        """Log an evaluation and keep each student's best weights (by greedy return)."""
        self.last_eval = result
        self.run.log({"env_steps": self.collector.env_steps, "learner/steps": self.learner.steps,
                      "distill_s": round(time.monotonic() - self.distill_started, 3), **result})
        version, weights = snapshot
        for name in self.config.distill.students:
            ret = result[f"eval/return/{name}"]
            if name not in self.best or ret > self.best[name][0]:
                self.best[name] = (ret, version, weights[name])
                self.save_student(name, "best", version, weights[name])

    def save_student(self, name: str, which: str, version: int, weights: dict[str, np.ndarray]) -> str:
        return self.run.save_student(name, which, env=self.config.env, obs_shape=self.info.obs_shape,
                                     n_actions=self.info.n_actions, version=version, weights=weights)

    def _reached_target(self, result: dict[str, float]) -> bool:
        target = self.config.target_return
        return target is not None and all(
            result[f"eval/return/{name}"] >= target for name in self.config.distill.students)

    def _progress_fields(self, sps: float, metrics: dict[str, float]) -> dict[str, str]:
        fields = {"steps/s": f"{sps:,.0f}", "stale": f"{metrics.get('buffer/label_staleness', 0):.1f}"}
        for name in self.config.distill.students:
            ret = self.last_eval.get(f"eval/return/{name}")
            agr = self.last_eval.get(f"eval/agreement/{name}")
            loss = metrics.get(f"learner/distill_loss/{name}")
            fields[name] = (f"ret {ret:.0f} " if ret is not None else "ret - ") + \
                (f"agr {agr:.2f} " if agr is not None else "") + (f"loss {loss:.3g}" if loss is not None else "")
        return fields
