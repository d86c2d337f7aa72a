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
from ..actors.refresh import staleness
from ..actors.remote import EvaluatorActor, ParameterServerActor, RolloutActor
from ..learners import checkpoint
from ..learners.distill import DistillLearner
from ..learners.dqn import DQNLearner
from ..learners.networks import GreedyPolicy, from_numpy, to_numpy
from ..learners.schedule import LinearSchedule, behaviour_beta
from .config import DistillRunConfig
from .control import RunControl
from .placement import actor_states, actors_per_node, on_head, rollout_options
from .loop import (Collector, Prefetcher, budget_spent, hand_over, minibatches, run_buffer, steer, stop_actors,
                   wait_for_work)
from .report import summarize
from .rundir import RunDir


LAG_BINS = 1_000  # staleness histograms: lags of this many versions and more share the last bin


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
        self.resumed_env_steps = 0  # env steps this run (re)started from
        self.resumed_distill_s = 0.0
        self.teacher_version = teacher.version
        self.published_at = {teacher.version: time.monotonic()}
        # the learner's copy of the newest published teacher: relabels sampled rows, ends in the report
        self.teacher_policy = GreedyPolicy(teacher.net, teacher.obs_shape, teacher.n_actions)
        self.teacher_policy.load(teacher.version, teacher.weights)
        self.teacher_weights = teacher.weights
        # the teacher the evaluator has: none known, so the first evaluation hands it one (the evaluator
        # pulls the newest teacher when it starts, which a learning teacher may already have replaced)
        self.eval_teacher_version = -1
        # a learning teacher: DQN on the same minibatches the students distill from
        self.dqn = DQNLearner(config.dqn, info.obs_shape, info.n_actions, seed=config.seed, device=device) \
            if config.teacher_learns else None
        if self.dqn is not None:
            self.dqn.load_weights(teacher.weights)
        # how many versions each sampled label lagged, as sampled and as trained on
        self.best_teacher: tuple[float, int, dict[str, np.ndarray]] | None = None  # (return, version, weights)
        self.lag_sampled = np.zeros(LAG_BINS, dtype=np.int64)
        self.lag_used = np.zeros(LAG_BINS, dtype=np.int64)
        self.epsilon = LinearSchedule(config.exploration.start, config.exploration.end, config.exploration.steps)
        self.beta = LinearSchedule(config.beta_start, config.beta_end, config.beta_steps)
        self.best: dict[str, tuple[float, int, dict[str, np.ndarray]]] = {}
        self.counters = {"labels/relabelled_on_sample": 0, "labels/relabelled_in_shards": 0,
                         "labels/from_teacher_step": 0, "teacher/swaps": 0}
        self.changed_at: int | None = None  # env step at which a changing task changed
        self.evaluations_lost = 0  # evaluations lost with a failed evaluator

    def _set_teacher(self, weights: dict[str, np.ndarray]) -> None:
        """Publish a new teacher version: to the actors (who label with it), the shards (who
        relabel with it) and the learner's own copy (which relabels sampled rows)."""
        self.teacher_version += 1
        self.published_at[self.teacher_version] = time.monotonic()
        self.teacher_weights = weights
        self.teacher_policy.load(self.teacher_version, weights)
        self.teacher_params.publish.remote(self.teacher_version, weights)

    def reported_teacher(self) -> checkpoint.Checkpoint:
        """The teacher the run reports: its best evaluated version when it learned, else the one given."""
        _, version, weights = self.best_teacher if self.dqn is not None and self.best_teacher else \
            (None, self.teacher_version, self.teacher_weights)
        return checkpoint.Checkpoint(self.teacher.net, self.info.obs_shape, self.info.n_actions, self.config.env,
                                     version, weights)

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
            "teacher": {"version": self.teacher_version, "weights": from_numpy(self.teacher_weights)},
            "dqn": self.dqn.state_dict() if self.dqn is not None else {},
            "lag": {"sampled": torch.from_numpy(self.lag_sampled), "used": torch.from_numpy(self.lag_used)},
            "changed_at": self.changed_at,
        }

    def restore(self, state: dict[str, object]) -> None:
        """Carry on from a saved state: students, optimisers, counters and best students."""
        self.learner.load_state_dict(state["learner"])
        self.resumed_distill_s = float(state["distill_s"])
        self.student_version = int(state["student_version"])
        self.counters.update(state["counters"])
        self.best = {name: (float(b["return"]), int(b["version"]), to_numpy(b["weights"]))
                     for name, b in state["best"].items()}
        self.teacher_version = int(state["teacher"]["version"])
        self.teacher_weights = to_numpy(state["teacher"]["weights"])
        self.teacher_policy.load(self.teacher_version, self.teacher_weights)
        self.published_at = {self.teacher_version: time.monotonic()}
        if self.dqn is not None:
            self.dqn.load_state_dict(state["dqn"])
        self.lag_sampled, self.lag_used = state["lag"]["sampled"].numpy(), state["lag"]["used"].numpy()
        self.changed_at = state["changed_at"]
        self.resumed_env_steps = int(state["env_steps"])

    def counts(self, env_steps: int | None = None) -> dict[str, int]:
        """Env steps (the collector's unless given), student steps and a learning teacher's steps."""
        teacher = {"teacher/steps": self.dqn.steps} if self.dqn is not None else {}
        env_steps = self.collector.env_steps if env_steps is None else env_steps
        return {"env_steps": env_steps, "learner/steps": self.learner.steps, **teacher}

    @property
    def dynamics(self) -> dict[str, float] | None:
        """The task's changed parameters once it has changed (None: the env as registered)."""
        return dict(self.config.change) if self.changed_at is not None else None

    def _change_task(self) -> None:
        """The changing task changes now: actors and evaluator get the new dynamics with their next
        call; best students and teacher start again, as they were judged on the old task."""
        self.changed_at = self.collector.env_steps
        self.best, self.best_teacher = {}, None
        self.run.log({"event": "task_changed", **self.counts(), "distill_s": round(time.monotonic() - self.distill_started, 3),
                      "dynamics": self.dynamics})

    @property
    def updates(self) -> int:
        """Learner steps the run is paced by (replay_ratio per env step): the learning teacher's
        when there is one, else the students'."""
        return self.dqn.steps if self.dqn is not None else self.learner.steps

    def save_state(self) -> None:
        checkpoint.save_state(self.run.checkpoints / "state.pt", self.state())

    def train(self) -> dict[str, object]:
        cfg = self.config
        self.distill_started = time.monotonic() - self.resumed_distill_s
        local = on_head()
        run_id = self.run_id = f"qdistill-{uuid.uuid4().hex[:8]}"  # names of this run's actors
        self.teacher_params = ParameterServerActor.options(name=f"{run_id}-teacher-params", **local).remote()
        ray.get(self.teacher_params.publish.remote(self.teacher_version, self.teacher_weights))  # before any pull
        self.student_params = ParameterServerActor.options(name=f"{run_id}-student-params", **local).remote()
        self.student_params.publish.remote(self.student_version, self.learner.weights())
        self.buffer = run_buffer(cfg, self.info, options=local, name=run_id)
        self.inserted_at_start = int(self.buffer.stats()["buffer/inserted"])  # a Redis buffer may hold rows
        # the buffer relabels in the background for a fixed (or swapped) teacher; a learning
        # teacher labels every row it trains on itself, in its own step, so that would be wasted work
        self.shards_refresh = cfg.refresh == "periodic" and self.dqn is None
        if self.shards_refresh:
            self.buffer.attach_teacher(self.teacher_params, self.teacher.net, self.info.obs_shape, self.info.n_actions)
        self.collector = Collector(self._make_actor, cfg.actors, steps_per_call=cfg.steps_per_call,
                                   envs_per_actor=cfg.envs_per_actor)
        self.collector.env_steps = self.resumed_env_steps
        # restarted by Ray when it dies (it takes the newest teacher again); an evaluation lost with
        # it is counted
        self.evaluator = EvaluatorActor.options(num_cpus=0, max_restarts=-1, max_task_retries=0, **local).remote(
            cfg.env, teacher_net=self.teacher.net, students=cfg.distill.students, obs_shape=self.info.obs_shape,
            n_actions=self.info.n_actions, episodes=cfg.eval_episodes, seed=cfg.seed, tau=cfg.distill.tau,
            teacher_params=f"{run_id}-teacher-params",
        )
        self.placement = {"actors_per_node_at_start": actors_per_node(self.collector.handles(), timeout=60)}
        try:
            reason = self._loop()
            distill_wall_s = time.monotonic() - self.distill_started
            hand_over(self.buffer, self.collector)
            self.handed_over = self._buffer_account()
            view = self.collector.view()
            self.placement.update(actors_per_node_at_end=view["per_node"], actor_failures=self.collector.failures,
                                  actor_restarts=view["restarts"])
            return self._finish(reason, distill_wall_s)
        finally:
            stop_actors([*self.collector.handles(), *self.buffer.actors(), self.teacher_params, self.student_params,
                         self.evaluator])

    def _make_actor(self, i: int) -> ray.actor.ActorHandle:
        cfg = self.config
        acting = cfg.distill.students[0] if cfg.behaviour != "teacher" else None
        return RolloutActor.options(**rollout_options(cfg)).remote(
            cfg.env, net=self.teacher.net, obs_shape=self.info.obs_shape, n_actions=self.info.n_actions,
            num_envs=cfg.envs_per_actor, seed=cfg.seed * 1000 + i, actor_id=i,
            params=f"{self.run_id}-teacher-params", shard=self.buffer.shard_for(i),
            student=acting, student_params=f"{self.run_id}-student-params" if acting else None,
            run=self.run.name,
        )

    def _loop(self) -> str:
        cfg = self.config
        collector = self.collector
        # a learning teacher paces the run: updates_per_sample of its minibatches per buffer call,
        # and the students take one step per distill.batch_size rows of them (fewer, larger steps
        # on the same data: a small student's step costs about the same at any batch size)
        batch_size = cfg.update_rows
        chunk = cfg.chunk_rows
        student_batch = batch_size if self.dqn is None else \
            max(batch_size, min(chunk, cfg.distill.batch_size // batch_size * batch_size))
        prefetch = Prefetcher(self.buffer, chunk)
        recent: list[float] = []
        metrics: dict[str, float] = {}
        eval_ref = None
        eval_snapshot: tuple[int, dict] | None = None
        eval_task: int | None = None
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
            if cfg.change_at is not None and self.changed_at is None and collector.env_steps >= cfg.change_at:
                self._change_task()
            if not stop:
                collector.launch(self.epsilon(collector.env_steps), self._beta(collector.env_steps), self.dynamics,
                                 versions=(self.teacher_version, self.student_version))
            # the buffer's rate limiter keeps the replay ratio: a sample comes back when it allows
            ready, results = wait_for_work(prefetch, collector, stop)
            for result in results:
                recent = (recent + [ret for ret, _ in result["episodes"]])[-20:]

            swap = self.control.take_teacher()
            if swap is not None:  # a newer teacher from outside: the next version
                self._set_teacher(swap.weights)
                if self.dqn is not None:
                    self.dqn.load_weights(swap.weights)
                self.counters["teacher/swaps"] += 1
            if ready:
                ids, batch = prefetch.take()
                metrics.update(self._staleness(batch))
                relabelled: list[tuple[np.ndarray, np.ndarray, int]] = []
                lag_used = 0  # the most any trained-on label of this chunk lagged
                for mb_ids, mb in minibatches(ids, batch, student_batch):
                    fresh = None
                    if self.dqn is not None:  # the teacher learns first, on the same rows
                        q_values, versions = [], []
                        for _, dqn_mb in minibatches(mb_ids, mb, batch_size):
                            versions.append(np.full(len(dqn_mb), self.teacher_version))
                            metrics.update(self.dqn.step(dqn_mb))
                            q_values.append(self.dqn.last_q_values)
                            if self.dqn.steps % cfg.publish_every == 0:
                                self._set_teacher(self.dqn.weights())
                        fresh = np.concatenate(q_values), np.concatenate(versions)
                    writes, most = self._within_bound(mb_ids, mb, fresh)
                    relabelled, lag_used = relabelled + writes, max(lag_used, most)
                    metrics.update(self.learner.step(mb.observations, mb.teacher_q))
                    if self.learner.steps % cfg.publish_every == 0:
                        self.student_version += 1
                        self.student_params.publish.remote(self.student_version, self.learner.weights())
                self._write_back(relabelled)
                metrics["buffer/label_staleness_used_max"] = lag_used
                if self.shards_refresh and self.learner.steps - last_refresh >= cfg.refresh_every:
                    done, refresh_refs = ray.wait(refresh_refs, num_returns=len(refresh_refs), timeout=0)
                    self.counters["labels/relabelled_in_shards"] += sum(ray.get(done))
                    if not refresh_refs:
                        refresh_refs = self.buffer.refresh_async(cfg.refresh_chunk)
                        last_refresh = self.learner.steps

            now = time.monotonic()
            if eval_ref is None and not stop and self.learner.steps > 0 and now - last_eval_at >= cfg.eval_every_s:
                eval_snapshot = (self.student_version, self.learner.weights())
                eval_teacher = (self.teacher_version, self.teacher_weights)
                eval_task = self.changed_at
                eval_ref = self.evaluator.evaluate.remote(*eval_snapshot, teacher=self._teacher_for_eval(),
                                                          dynamics=self.dynamics)
                last_eval_at = now
            if eval_ref is not None and ray.wait([eval_ref], timeout=0)[0]:
                ref, eval_ref = eval_ref, None
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError:
                    self._evaluator_lost()
                else:
                    if result["eval/teacher_version"] != eval_teacher[0]:  # a restarted evaluator's own teacher
                        self.eval_teacher_version = -1
                    # not judged when played on a task that has changed since, or against another teacher
                    current = eval_task == self.changed_at and result["eval/teacher_version"] == eval_teacher[0]
                    self._record_eval(result, eval_snapshot, eval_teacher, judge=current,
                                      changed_task=eval_task is not None)
                    if current and self._reached_target(result):
                        stop = "target"

            if stop or now - last_log >= 2.0:  # and once more at the end
                sps = (collector.env_steps - steps_at_log) / max(now - last_log, 1e-9)
                last_log, steps_at_log = now, collector.env_steps
                view, buffer = collector.view(), self.buffer.stats()
                self.run.log({**self.counts(), "distill_s": round(now - self.distill_started, 3),
                              "rollout/actors": view["alive"], "rollout/actors_pending": view["pending"],
                              "rollout/actor_restarts": view["restarts"], "rollout/actor_failures": collector.failures,
                              "rollout/dropped_nonfinite": collector.dropped_nonfinite,
                              "evaluator/evaluations_lost": self.evaluations_lost,
                              "rollout/steps_per_s": round(sps, 1), "rollout/beta": self._beta(collector.env_steps),
                              "charts/episodic_return": float(np.mean(recent)) if recent else None,
                              "buffer/size": buffer["buffer/size"], "buffer/capacity": buffer["buffer/capacity"],
                              "buffer/inserted": buffer["buffer/inserted"], "buffer/sampled": buffer["buffer/sampled"],
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
            teacher={"net": self.teacher.net, "version": self.teacher_version, "learns": self.dqn is not None},
            returns={"teacher": self.last_eval.get("eval/return/teacher"),
                     **{n: self.last_eval.get(f"eval/return/{n}") for n in cfg.distill.students}},
        )

    def _finish(self, reason: str, distill_wall_s: float) -> dict[str, object]:
        """Last checkpoints, then the final evaluation of each student's best on other held-out episodes."""
        last = self.learner.weights()
        # the last weights compete for best on the same episodes as every periodic evaluation
        snapshot, teacher = (self.student_version, last), (self.teacher_version, self.teacher_weights)
        self._record_eval(self._evaluate_now(*snapshot), snapshot, teacher, changed_task=self.changed_at is not None)
        students = {}
        for name in self.config.distill.students:
            last_path = self.save_student(name, "last", self.student_version, last[name])
            students[name] = {"last_checkpoint": last_path,
                              "checkpoint": str(self.run.checkpoints / f"student-{name}-best.pt")}
        best = {name: self.best[name][2] for name in students}
        teacher = self.reported_teacher()
        final = self._evaluate_now(self.student_version, best, final=True, teacher=(teacher.version, teacher.weights))
        facts = {
            "mode": "online",
            "wall_s": round(time.monotonic() - self.started, 2),
            "distill_wall_s": round(distill_wall_s, 2),
            "env_steps": self.collector.env_steps,
            "learner_steps": self.learner.steps,
            **({"teacher_steps": self.dqn.steps} if self.dqn is not None else {}),
            "dropped_nonfinite": self.collector.dropped_nonfinite,
            "buffer": self.handed_over,
            "evaluator": {"restarts": int(actor_states([self.evaluator])[0].get("NumRestarts", 0)),
                          "evaluations_lost": self.evaluations_lost},
            "stop_reason": reason,
            "actors": self.placement,
            "labels": self.label_summary(),
            **({"task_change": {"at": self.config.change_at, "changed_at": self.changed_at,
                                "dynamics": dict(self.config.change)}} if self.config.change_at else {}),
        }
        summary = summarize(self.run, self.config, teacher, final, students, facts)
        self.save_state()
        self.run.close()
        return summary

    def _buffer_account(self) -> dict[str, int]:
        """Once the actors have handed over: the rows the buffer counts inserted since this run
        (re)started, and `lost`: the rows the actors reported collecting since then that it does
        not count (a Redis server that lost its last writes in a crash, an actor killed holding rows)."""
        inserted = int(self.buffer.stats()["buffer/inserted"]) - self.inserted_at_start
        return {"inserted": inserted, "lost": self.collector.env_steps - self.resumed_env_steps - inserted}

    def _staleness(self, batch) -> dict[str, float]:
        """How far a sampled chunk's labels lag the newest teacher: versions (mean, p95) and seconds."""
        lag, seconds = staleness(batch.label_version, self.teacher_version, self.published_at, time.monotonic())
        return {"buffer/label_staleness": float(lag.mean()), "buffer/label_staleness_p95": float(np.percentile(lag, 95)),
                "buffer/label_staleness_s": float(seconds.mean())}

    def _within_bound(self, ids: np.ndarray, batch, fresh: tuple[np.ndarray, np.ndarray] | None = None,
                      ) -> tuple[list[tuple[np.ndarray, np.ndarray, int]], int]:
        """Relabel, just before training on them, the minibatch's rows that lag the newest teacher
        by more than allowed: any lag with on-sample refresh, more than max_label_staleness versions
        with periodic refresh (the shards relabel in the background), none with refresh off.
        `fresh`: a learning teacher's Q-values for these rows from its own step on them (and the
        version it had published then): the labels, unless refresh is off; no extra forward pass.
        Returns what to write back to the buffer, and the most a trained-on label lagged."""
        lag = self.teacher_version - batch.label_version
        self.lag_sampled += np.bincount(np.minimum(lag, LAG_BINS - 1), minlength=LAG_BINS)
        bound = {"on-sample": 0, "periodic": self.config.max_label_staleness}.get(self.config.refresh)
        if fresh is not None and bound is not None:
            batch.teacher_q[:], batch.label_version[:] = fresh
            self.counters["labels/from_teacher_step"] += len(lag)
            lag = self.teacher_version - batch.label_version
        stale = lag > bound if bound is not None else np.zeros(len(lag), dtype=bool)
        out = []
        if stale.any():
            q = self.teacher_policy.q_values(batch.observations[stale])
            batch.teacher_q[stale] = q
            batch.label_version[stale] = self.teacher_version
            lag = np.where(stale, 0, lag)
            out.append((ids[stale], q, self.teacher_version))
            self.counters["labels/relabelled_on_sample"] += int(stale.sum())
        self.lag_used += np.bincount(np.minimum(lag, LAG_BINS - 1), minlength=LAG_BINS)
        return out, int(lag.max(initial=0))

    def _write_back(self, relabelled: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
        """New labels go back to the buffer, one call per version (not one per minibatch)."""
        for version in sorted({v for _, _, v in relabelled}):
            parts = [(i, q) for i, q, v in relabelled if v == version]
            self.buffer.relabel(np.concatenate([i for i, _ in parts]), np.concatenate([q for _, q in parts]), version)

    def _evaluator_lost(self) -> None:
        self.evaluations_lost += 1
        self.eval_teacher_version = -1  # the next evaluation hands the (restarted) evaluator the newest teacher

    def _evaluate_now(self, version: int, students: dict[str, dict[str, np.ndarray]], *, final: bool = False,
                      teacher: tuple[int, dict[str, np.ndarray]] | None = None) -> dict[str, float]:
        """An evaluation waited for, tried again (up to 3 times) on a restarted evaluator."""
        for _ in range(3):
            try:
                return ray.get(self.evaluator.evaluate.remote(
                    version, students, final=final, teacher=teacher or self._teacher_for_eval(),
                    dynamics=self.dynamics))
            except ray.exceptions.RayActorError:
                self._evaluator_lost()
        raise RuntimeError("the evaluator failed three times in a row")

    def _teacher_for_eval(self) -> tuple[int, dict[str, np.ndarray]] | None:
        """The newest teacher, once, for the evaluator to measure students against."""
        if self.eval_teacher_version == self.teacher_version:
            return None
        self.eval_teacher_version = self.teacher_version
        return self.teacher_version, self.teacher_weights

    def label_summary(self) -> dict[str, object]:
        """How stale sampled labels were over the run (p95 as sampled and as trained on, in
        teacher versions) and how many were relabelled on sampling."""
        def p95(hist: np.ndarray) -> float | None:
            total = hist.sum()
            return int(np.searchsorted(np.cumsum(hist), 0.95 * total)) if total else None

        sampled = int(self.lag_sampled.sum())
        return {**self.counters, "teacher_versions": self.teacher_version, "sampled": sampled,
                "staleness_p95_sampled": p95(self.lag_sampled), "staleness_p95_used": p95(self.lag_used),
                "staleness_max_used": int(np.flatnonzero(self.lag_used).max()) if sampled else None,
                "relabelled_fraction": self.counters["labels/relabelled_on_sample"] / sampled if sampled else 0.0}

    def _record_eval(self, result: dict[str, float], snapshot: tuple[int, dict],
                     teacher: tuple[int, dict[str, np.ndarray]], *, changed_task: bool, judge: bool = True) -> None:
        """Log an evaluation (`changed_task`: played on the changed dynamics) and keep each
        student's best weights (by greedy return), and a learning teacher's best version; `judge`
        False: log it only."""
        self.last_eval = result
        task = {"eval/on_changed_task": changed_task} if self.config.change_at else {}
        self.run.log({**self.counts(), "distill_s": round(time.monotonic() - self.distill_started, 3), **result, **task})
        if not judge:
            return
        if self.best_teacher is None or result["eval/return/teacher"] > self.best_teacher[0]:
            self.best_teacher = (result["eval/return/teacher"], *teacher)
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
        """Every student at the target now; a learning teacher once (its best version is the one
        reported, as `train-teacher` keeps its best)."""
        target = self.config.target_return
        if target is None or (self.config.change_at is not None and self.changed_at is None):
            return False  # no target, or a changing task not changed yet
        teacher_there = self.dqn is None or (self.best_teacher is not None and self.best_teacher[0] >= target)
        return teacher_there and all(
            result[f"eval/return/{name}"] >= target for name in self.config.distill.students)

    def _progress_fields(self, sps: float, metrics: dict[str, float]) -> dict[str, str]:
        fields = {"steps/s": f"{sps:,.0f}", "stale": f"{metrics.get('buffer/label_staleness', 0):.1f}"}
        if self.dqn is not None:
            ret = self.last_eval.get("eval/return/teacher")
            fields["teacher"] = f"v{self.teacher_version} ret " + (f"{ret:.0f}" if ret is not None else "-")
        for name in self.config.distill.students:
            ret = self.last_eval.get(f"eval/return/{name}")
            agr = self.last_eval.get(f"eval/agreement/{name}")
            loss = metrics.get(f"learner/distill_loss/{name}")
            fields[name] = (f"ret {ret:.0f} " if ret is not None else "ret - ") + \
                (f"agr {agr:.2f} " if agr is not None else "") + (f"loss {loss:.3g}" if loss is not None else "")
        return fields
