"""The online distillation run: teacher-labelled states stream in, students are distilled.

collect (teacher/student/mixed behaviour, teacher labels) → buffer.add → buffer.sample →
[a learning teacher's DQN step] → [relabel stale labels] → learner.step (every student) →
publish students → evaluate, on the one run loop (driver/loop.py).
"""

from __future__ import annotations

import time

import numpy as np
import ray

from ...actors.envs import EnvInfo
from ...actors.remote import EvaluatorActor, ParameterServerActor, RolloutActor
from ...actors.wire import Schema
from ...learners import checkpoint
from ...learners.background import BackgroundSteps
from ...learners.batch import TransitionBatch, Update
from ...learners.compute import learner_torch
from ...learners.distill import DistillLearner
from ...learners.dqn import DQNLearner
from ...learners.networks import from_numpy, to_numpy
from ...learners.schedule import LinearSchedule, behaviour_beta
from ..config import DistillRunConfig
from ..control import RunControl
from ..placement import actor_states, on_head, rollout_options
from ..rundir import RunDir
from ..rundir.report import summarize
from ..rundir.search import search_result
from .base import Driver
from .collect import run_buffer, stop_actors
from .evaluation import Snapshot, StudentEvaluation
from .labels import Labels
from .loop import minibatches
from .search import Searching, SizeSearch, candidate_figures
from .task import TaskChange
from .telemetry import Telemetry


class DistillDriver(Searching, Driver):
    def __init__(self, config: DistillRunConfig, info: EnvInfo, teacher: checkpoint.Checkpoint, *,
                 run: RunDir, started: float, control: RunControl, device: str = "cpu") -> None:
        self.distill_started = time.monotonic()
        super().__init__(config, control, started=self.distill_started)
        cfg = config
        self.info, self.teacher, self.run, self.started = info, teacher, run, started
        learner_torch(cfg.learner_threads)
        # beside a learning teacher, the students step on a worker thread while the teacher takes its next
        # step (the learner's thread is the run's bottleneck; benchmarks/online_teacher.py)
        self.learner = BackgroundSteps(
            DistillLearner(cfg.distill, [(info.obs_shape, info.n_actions)], seed=cfg.seed, device=device),
            self._stepped, background=cfg.teacher_learns)
        self.learner.take_statistics(teacher.weights)  # `norm-` students normalise as their teacher does
        # a learning teacher: DQN on the same minibatches the students distill from; it labels the
        # rows it trains on itself, so the buffer does not relabel in the background then
        self.dqn = DQNLearner(cfg.dqn, [(info.obs_shape, info.n_actions)], seed=cfg.seed, device=device) \
            if cfg.teacher_learns else None
        if self.dqn is not None:
            self.dqn.load_weights(teacher.weights)
        self.labels = Labels(teacher, {"on-sample": 0, "periodic": cfg.max_label_staleness}.get(cfg.refresh))
        self.refresh_in_buffer = cfg.refresh == "periodic" and self.dqn is None
        self.evaluation = StudentEvaluation(cfg.distill.students, every_s=cfg.eval_every_s, target=cfg.target_return,
                                            save_best=lambda name, v, w: self.save_student(name, "best", v, w),
                                            every_steps=cfg.eval_every, teacher_learns=cfg.teacher_learns)
        self.search = SizeSearch(cfg.search_keep, self.learner.params()) if cfg.search_keep is not None else None
        self.task = TaskChange(cfg.change_at, cfg.change)
        self.epsilon = LinearSchedule(cfg.exploration.start, cfg.exploration.end, cfg.exploration.steps)
        self.beta = LinearSchedule(cfg.beta_start, cfg.beta_end, cfg.beta_steps)
        self.student_version = 0
        self.student_params: ray.actor.ActorHandle | None = None
        self.metrics: dict[str, float] = {}  # the newest learner and label figures
        self.recent: list[float] = []  # the last 20 episodes' returns
        self.inserted_at_start = 0

    @property
    def distill_s(self) -> float:
        """Seconds of distillation so far (a resumed run's earlier ones included)."""
        return time.monotonic() - self.distill_started

    # -- resumable state ------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {
            "learner": self.learner.state_dict(),
            "env_steps": self.collector.env_steps,
            "distill_s": self.distill_s,
            "student_version": self.student_version,
            "best": {name: {"return": ret, "agreement": agr, "version": version, "weights": from_numpy(weights)}
                     for name, ((ret, agr), version, weights) in self.evaluation.best.items()},
            "dqn": self.dqn.state_dict() if self.dqn is not None else {},
            "changed_at": self.task.changed_at,
            **({"search": self.search.state()} if self.search is not None else {}),
            **self.labels.state(),
        }

    def restore(self, state: dict[str, object]) -> None:
        """Carry on from a saved state: students, optimisers, counters, labels and best students."""
        self.learner.load_state_dict(state["learner"])
        if self.search is not None:
            self.search.restore(state["search"])
            self.evaluation.students = tuple(n for n in self.evaluation.students if n in self.search.active)
        self.distill_started = time.monotonic() - float(state["distill_s"])
        self.telemetry.started = self.distill_started
        self.student_version = int(state["student_version"])
        self.evaluation.best = {name: ((float(b["return"]), float(b.get("agreement", -np.inf))), int(b["version"]),
                                       to_numpy(b["weights"])) for name, b in state["best"].items()}
        if self.dqn is not None:
            self.dqn.load_state_dict(state["dqn"])
        self.labels.restore(state)
        self.task.changed_at = state["changed_at"]
        self._resumed_at(int(state["env_steps"]))

    def counts(self, env_steps: int | None = None) -> dict[str, int]:
        """Env steps (the collector's unless given), student steps and a learning teacher's steps."""
        teacher = {"teacher/steps": self.dqn.steps} if self.dqn is not None else {}
        env_steps = self.collector.env_steps if env_steps is None else env_steps
        return {"env_steps": env_steps, "learner/steps": self.learner.steps, **teacher}

    def save_state(self) -> None:
        self.run.save_state(self.state())

    def save_student(self, name: str, which: str, version: int, weights: dict[str, np.ndarray]) -> str:
        return self.run.save_student(name, which, env=self.config.env, obs_shape=self.info.obs_shape,
                                     n_actions=self.info.n_actions, version=version, weights=weights)

    # -- wiring and the loop ----------------------------------------------------------------------

    def train(self) -> dict[str, object]:
        try:
            self._wire()
            reason = self._loop()
            return self._finish(reason, self.distill_s)
        finally:
            self.learner.close()
            stop_actors([*self.collector.handles(), *(self.buffer.actors() if self.buffer else []), self.labels.params, self.student_params,
                         self.evaluation.evaluator])

    def _wire(self) -> None:
        """Parameter servers, buffer and evaluator, on the head node."""
        cfg, info, local, run_id = self.config, self.info, on_head(), self.run_id
        self.labels.params = ParameterServerActor.options(name=f"{run_id}-teacher-params", **local).remote()
        ray.get(self.labels.params.publish.remote(self.labels.version, self.labels.weights))  # before any pull
        self.student_params = ParameterServerActor.options(name=f"{run_id}-student-params", **local).remote()
        self.student_params.publish.remote(self.student_version, self.learner.weights())
        self.buffer = run_buffer(cfg, info, options=local, name=run_id)
        self.inserted_at_start = int(self.buffer.stats()["buffer/inserted"])  # a Redis buffer may hold rows
        if self.refresh_in_buffer:
            self.buffer.attach_teacher(self.labels.params, self.teacher.net, info.obs_shape, info.n_actions)
        # restarted by Ray when it dies (it takes the newest teacher again); an evaluation lost with it is counted
        self.evaluation.evaluator = EvaluatorActor.options(num_cpus=0, max_restarts=-1, max_task_retries=0, **local).remote(
            cfg.env, teacher_net=self.teacher.net, students=cfg.distill.students, obs_shape=info.obs_shape,
            n_actions=info.n_actions, episodes=cfg.eval_episodes, seed=cfg.seed, tau=cfg.distill.tau,
            teacher_params=f"{run_id}-teacher-params", ci_width=cfg.eval_ci, max_episodes=cfg.eval_max_episodes)

    def _make_actor(self, i: int) -> ray.actor.ActorHandle:
        cfg = self.config
        acting = self.acting()
        return RolloutActor.options(**rollout_options(cfg)).remote(
            cfg.env, net=self.teacher.net, obs_shape=self.info.obs_shape, n_actions=self.info.n_actions,
            num_envs=cfg.envs_per_actor, seed=cfg.seed * 1000 + i, actor_id=i,
            params=f"{self.run_id}-teacher-params", sink=self.buffer.sink_for(i),
            student=acting, student_params=f"{self.run_id}-student-params" if acting else None,
            run=self.run.name, **cfg.td_rows,
        )

    def should_stop(self) -> str | None:
        stop = super().should_stop()
        if self.task.due(self.collector.env_steps):
            self._change_task()
        swap = self.control.take_teacher()
        if swap is not None:  # a newer teacher from outside: the next version
            self.labels.publish(swap.weights)
            if self.dqn is not None:
                self.dqn.load_weights(swap.weights)
            self.labels.counters["teacher/swaps"] += 1
        return stop

    def behaviour(self) -> tuple[float, float, dict[str, float] | None, tuple[int, int], str | None]:
        env_steps = self.collector.env_steps
        return (self.epsilon(env_steps), behaviour_beta(self.config.behaviour, self.beta, env_steps),
                self.task.dynamics, (self.labels.version, self.student_version), self.acting())

    def acting(self) -> str | None:
        """The student that acts besides the teacher (behaviour student or mixed): the first one; in a
        size search, the largest candidate still in it (a dropped one hands over at the next collect)."""
        if self.config.behaviour == "teacher":
            return None
        return self.search.active[-1] if self.search is not None else self.config.distill.students[0]

    def collected(self, results: list[dict[str, object]]) -> None:
        for result in results:
            self.recent = (self.recent + result["episodes"].returns[-20:].tolist())[-20:]

    def learn(self, sample: tuple[np.ndarray, TransitionBatch]) -> None:
        """Each minibatch of the chunk: a learning teacher's step first (its Q-values label the rows);
        on the minibatches the students step on, stale labels relabelled, then every student's step;
        new labels written back once. A fixed teacher's version holds for the whole chunk, so its
        stale labels are relabelled for all of the chunk's minibatches at once (one forward pass;
        the per-minibatch checks took 6% of the learner's time in `qdistill run`)."""
        cfg, (ids, batch) = self.config, sample
        self.metrics.update(self.labels.sampled(batch))
        size = self._student_batch()
        relabelled, lag_used = [], 0  # the most any trained-on label of this chunk lagged
        if self.dqn is None:
            whole = len(batch) - len(batch) % size  # the rows of the whole minibatches, the ones trained on
            with self.loop_clock("learn/labels"):
                relabelled, lag_used = self.labels.within_bound(ids[:whole], batch.take(slice(0, whole)))
        for mb_ids, mb in minibatches(ids, batch, size):
            if self.dqn is not None:
                with self.loop_clock("learn/teacher"):
                    fresh = self._teacher_learns(mb)
                if not self._students_step():
                    continue
                with self.loop_clock("learn/labels"):
                    writes, most = self.labels.within_bound(mb_ids, mb, fresh)
                relabelled, lag_used = relabelled + writes, max(lag_used, most)
            with self.loop_clock("learn/students"):
                self.learner.submit(mb)
        self.labels.write_back(self.buffer, relabelled)
        self.metrics["buffer/label_staleness_used_max"] = lag_used
        if self.refresh_in_buffer:
            self.labels.refresh(self.buffer, self.learner.steps, every=cfg.refresh_every, chunk=cfg.refresh_chunk)

    def _stepped(self, update: Update) -> None:
        """A student step done: its metrics kept; every `publish_every` steps the students published."""
        self.metrics.update(update.metrics)
        if self.learner.steps % self.config.publish_every == 0:
            self.student_version += 1
            self.student_params.publish.remote(self.student_version, self.learner.weights())

    def _student_batch(self) -> int:
        """Rows per student step: a learning teacher paces the run (update_rows per step of its own),
        and the students take one step per distill.batch_size rows of its minibatches (fewer, larger
        steps on the same data: a small MLP student's step costs about the same at any batch size)."""
        cfg, rows = self.config, self.config.update_rows
        return rows if self.dqn is None else max(rows, min(cfg.chunk_rows, cfg.distill.batch_size // rows * rows))

    def _students_step(self) -> bool:
        """Whether the students step on this batch: every one, or with a learning teacher one in
        `student_every` (counted by its steps, so a resumed run keeps the rhythm)."""
        if self.dqn is None or self.config.student_every == 1:
            return True
        batches = self.dqn.steps * self.config.update_rows // self._student_batch()
        return (batches - 1) % self.config.student_every == 0

    def _teacher_learns(self, mb: TransitionBatch) -> tuple[np.ndarray, np.ndarray]:
        """The learning teacher's steps on a student minibatch: its Q-values for the rows (from each
        step's own forward pass) and the version it had published then."""
        q_values, versions = [], []
        for _, dqn_mb in minibatches(np.arange(len(mb)), mb, self.config.update_rows):
            versions.append(np.full(len(dqn_mb), self.labels.version))
            update = self.dqn.step(dqn_mb)
            self.metrics.update(update.metrics)
            q_values.append(update.q_values)
            if self.dqn.steps % self.config.publish_every == 0:
                self.labels.publish(self.dqn.weights())
        return np.concatenate(q_values), np.concatenate(versions)

    def evaluate(self, stop: str | None) -> str | None:
        reached = None
        done = self.evaluation.finished()
        if done is not None:
            result, snapshot, teacher, task = done
            result = self._without_dropped(result)  # an evaluation started before a rung dropped some
            # not judged when played on a task that has changed since, or against another teacher
            current = task == self.task.changed_at and result["eval/teacher_version"] == teacher[0]
            self._record_eval(result, snapshot, teacher, judge=current, changed_task=task is not None)
            if current and not self.task.waiting and self.evaluation.reached(result):
                reached = "target"
            self._halve_due(result)
        env_steps = self.collector.env_steps
        # due first: reading the learner waits for the student step in flight, a wait each pass need not take
        if not stop and not reached and self.evaluation.due(time.monotonic(), env_steps) and self.learner.steps > 0:
            students = self.learner.weights()  # first: a student step in flight may publish a version
            self.evaluation.start((self.student_version, students),
                                  (self.labels.version, self.labels.weights),
                                  task=self.task.changed_at, dynamics=self.task.dynamics, env_steps=env_steps)
        return reached

    def record(self, stop: str | None) -> None:
        if not self.telemetry.due(stop):
            return
        sps = self.telemetry.rate(self.collector.env_steps)
        view, buffer = self.collector.view(), self.buffer.stats()
        _, beta, _, _, acting = self.behaviour()
        self.run.log({**Telemetry.distilling(self, sps=sps, view=view, buffer=buffer),
                      "evaluator/evaluations_lost": self.evaluation.lost, "rollout/beta": beta,
                      **({"rollout/acting": acting} if acting else {}),
                      "charts/episodic_return": float(np.mean(self.recent)) if self.recent else None,
                      **self.labels.counters})
        last = self.evaluation.last
        self.telemetry.publish(
            self.config, phase="distill", env_steps=self.collector.env_steps, learner_steps=self.learner.steps,
            sps=sps, view=view, buffer=buffer, fields=self._progress_fields(sps),
            label_staleness=self.metrics.get("buffer/label_staleness"),
            teacher={"net": self.teacher.net, "version": self.labels.version, "learns": self.dqn is not None},
            returns={"teacher": last.get("eval/return/teacher"),
                     **{n: last.get(f"eval/return/{n}") for n in self.evaluation.students}})

    # -- parts of the loop ------------------------------------------------------------------------

    def _change_task(self) -> None:
        """The changing task changes now: actors and evaluator get the new dynamics with their next
        call; best students and teacher start again, as they were judged on the old task."""
        self.task.changed_at = self.collector.env_steps
        self.evaluation.forget_best()
        self.run.log({"event": "task_changed", **self.counts(),
                      "distill_s": round(self.distill_s, 3), "dynamics": self.task.dynamics})

    def _record_eval(self, result: dict[str, float], snapshot: Snapshot, teacher: tuple[int, dict],
                     *, changed_task: bool, judge: bool = True) -> None:
        """Log an evaluation (`changed_task`: played on the changed dynamics) and, `judge`, keep the bests."""
        self.evaluation.last = result
        task = {"eval/on_changed_task": changed_task} if self.config.change_at else {}
        self.run.log({**self.counts(), "distill_s": round(self.distill_s, 3), **result, **task})
        if judge:
            self.evaluation.judge(result, snapshot, teacher)

    def _search_scores(self, result: dict[str, float]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """A search's scores: each active candidate's % of teacher in `result`, and its figures there."""
        scores = {name: result[f"eval/pct_of_teacher/{name}"] for name in self.search.active
                  if f"eval/pct_of_teacher/{name}" in result}
        return scores, candidate_figures(result, list(self.search.active))

    def _drop(self, name: str) -> None:
        self.learner.drop(name)
        self.evaluation.drop(name)

    def _progress_fields(self, sps: float) -> dict[str, str]:
        last, metrics = self.evaluation.last, self.metrics
        fields = {"steps/s": f"{sps:,.0f}", "stale": f"{metrics.get('buffer/label_staleness', 0):.1f}"}
        if self.dqn is not None:
            ret = last.get("eval/return/teacher")
            fields["teacher"] = f"v{self.labels.version} ret " + (f"{ret:.0f}" if ret is not None else "-")
        for name in self.evaluation.students:
            ret, agr = last.get(f"eval/return/{name}"), last.get(f"eval/agreement/{name}")
            loss = metrics.get(f"learner/distill_loss/{name}")
            fields[name] = (f"ret {ret:.0f} " if ret is not None else "ret - ") + \
                (f"agr {agr:.2f} " if agr is not None else "") + (f"loss {loss:.3g}" if loss is not None else "")
        return fields

    # -- the end ----------------------------------------------------------------------------------

    def reported_teacher(self) -> checkpoint.Checkpoint:
        """The teacher the run reports: its best evaluated version when it learned, else the newest."""
        best = self.evaluation.best_teacher
        _, version, weights = best if self.dqn is not None and best else (None, self.labels.version, self.labels.weights)
        return checkpoint.Checkpoint(self.teacher.net, self.info.obs_shape, self.info.n_actions, self.config.env,
                                     version, weights)

    def _finish(self, reason: str, distill_wall_s: float) -> dict[str, object]:
        """The state and last checkpoints first (what a resume needs, within the few seconds a
        scheduler's stop leaves), then the final evaluation of each student's best on other
        held-out episodes, the summary and report."""
        self.save_state()
        last = self.learner.weights()
        students = {name: {"last_checkpoint": self.save_student(name, "last", self.student_version, last[name]),
                           "checkpoint": str(self.run.student_checkpoint(name, "best"))}
                    for name in self.evaluation.students}
        # the last weights compete for best on the same episodes as every periodic evaluation
        snapshot, newest = (self.student_version, last), (self.labels.version, self.labels.weights)
        result = self.evaluation.now(snapshot, newest, dynamics=self.task.dynamics)
        self._record_eval(result, snapshot, newest, changed_task=self.task.changed_at is not None)
        self._halve_due(result)  # a search's rungs no evaluation reached before the budget ran out
        students = {name: students[name] for name in self.evaluation.students}
        teacher = self.reported_teacher()
        final = self.evaluation.now((self.student_version, {n: self.evaluation.best[n][2] for n in students}),
                                    (teacher.version, teacher.weights), final=True, dynamics=self.task.dynamics)
        facts = self._facts(reason, distill_wall_s)
        if self.search is not None:
            facts["search"] = search_result(self.search, {self.config.env: final}, self.run)
        summary = summarize(self.run, self.config, teacher, final, students, facts)
        self.save_state()  # again: the last weights may have become a student's best
        self.run.close()
        return summary

    def _facts(self, reason: str, distill_wall_s: float) -> dict[str, object]:
        """The run's own figures for summary.json. `buffer`: the rows the buffer counts inserted since
        this run (re)started, and `lost`: the rows the actors reported collecting since then that it
        does not count (a Redis server that lost its last writes in a crash, an actor killed holding rows);
        `rejected`: rows of a Redis buffer that failed their checksum when read (never trained on)."""
        stats = self.buffer.stats()
        inserted = int(stats["buffer/inserted"]) - self.inserted_at_start
        return {
            "mode": "online", "wall_s": round(time.monotonic() - self.started, 2),
            "loop_s": self.loop_clock.facts(),
            "distill_wall_s": round(distill_wall_s, 2), "env_steps": self.collector.env_steps,
            "learner_steps": self.learner.steps, **({"teacher_steps": self.dqn.steps} if self.dqn is not None else {}),
            "students_worker_s": round(self.learner.worker_s, 3),  # their steps beside the loop (a learning teacher's run)
            "dropped_nonfinite": self.collector.dropped_nonfinite,
            "buffer": {"inserted": inserted, "lost": self.collector.env_steps - self.resumed_env_steps - inserted,
                       "rejected": int(stats["buffer/rejected"]),
                       "bytes_per_row": Schema.of(self.info, next_obs=self.config.next_obs).record_size},
            "evaluator": {"restarts": int(actor_states([self.evaluation.evaluator])[0].get("NumRestarts", 0)),
                          "evaluations_lost": self.evaluation.lost},
            "stop_reason": reason, "actors": self.placement, "labels": self.labels.summary(), **self.task.facts(),
        }
