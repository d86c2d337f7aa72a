"""The multi-task distillation run: one teacher per task, rollout actors per task, one buffer per
task sampled in the run's task balance, one multi-task student (a shared trunk, a head per task).

collect (each task's actors, its teacher's labels) → its task's buffer → a balanced sample →
[relabel stale labels, per task] → learner.step over the tasks' minibatches → publish each task's
student weights → evaluate every task (one evaluator per task), on the one run loop (driver/loop.py).

A student's best version is judged on all tasks at once: the geometric mean over tasks of its %
of each task's teacher (Rusu et al. 2016), then its mean agreement."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import ray

from ...actors.balance import TaskBalance, parse_balance
from ...actors.envs import EnvInfo
from ...actors.intervals import geometric_mean
from ...actors.remote import EvaluatorActor, ParameterServerActor, RolloutActor
from ...actors.task_buffers import TaskBuffers, TaskSample
from ...actors.wire import Schema
from ...learners import checkpoint
from ...learners.compute import learner_torch
from ...learners.distill import DistillLearner
from ...learners.networks import from_numpy, to_numpy
from ...learners.schedule import LinearSchedule
from ..config import DistillRunConfig
from ..control import RunControl
from ..placement import actor_states, on_head, rollout_options
from ..rundir import RunDir
from ..rundir.multitask import summarize_tasks, task_dir
from ..rundir.search import search_result
from .base import Driver
from .collect import stop_actors, task_buffers
from .evaluation import StudentEvaluation
from .search import Searching, SizeSearch, candidate_figures
from .labels import Labels
from .task_fleet import TaskFleet
from .telemetry import Telemetry


@dataclass
class Task:
    """One task of the run: its env, teacher, labels and evaluation."""

    index: int
    info: EnvInfo
    teacher: checkpoint.Checkpoint
    labels: Labels
    evaluation: StudentEvaluation
    result: dict[str, float] | None = None  # its part of the evaluation in flight, once back

    @property
    def env(self) -> str:
        return self.info.env_id


class MultiTaskDistillDriver(TaskFleet, Searching, Driver):
    def __init__(self, config: DistillRunConfig, infos: list[EnvInfo], teachers: list[checkpoint.Checkpoint], *,
                 run: RunDir, started: float, control: RunControl, device: str = "cpu") -> None:
        self.distill_started = time.monotonic()
        super().__init__(config, control, started=self.distill_started)
        cfg = config
        self.run, self.started = run, started
        learner_torch(cfg.learner_threads)
        self.learner = DistillLearner(cfg.distill, [(i.obs_shape, i.n_actions) for i in infos], seed=cfg.seed,
                                      device=device, inputs=cfg.task_inputs)
        bound = {"on-sample": 0, "periodic": cfg.max_label_staleness}.get(cfg.refresh)
        self.tasks = [Task(t, info, teacher, Labels(teacher, bound),
                           StudentEvaluation(cfg.distill.students, every_s=cfg.eval_every_s, target=None,
                                             save_best=lambda *_: None))
                      for t, (info, teacher) in enumerate(zip(infos, teachers))]
        self.search = SizeSearch(cfg.search_keep, self.learner.params()) if cfg.search_keep is not None else None
        self.weights = parse_balance(cfg.task_balance, len(infos))
        self.balance = TaskBalance(self.weights)
        self.refresh_in_buffer = cfg.refresh == "periodic"
        self.epsilon = LinearSchedule(cfg.exploration.start, cfg.exploration.end, cfg.exploration.steps)
        self.student_version = 0  # the students' weights version, counted as single-task runs count it
        self.metrics: dict[str, float] = {}
        self.best: dict[str, tuple[tuple[float, float], int, dict[str, np.ndarray]]] = {}  # name → (score, v, whole net)
        self.pending: tuple[int, dict[str, dict[str, np.ndarray]]] | None = None  # the snapshot being evaluated
        self.last: dict[str, float] = {}  # the newest evaluation's figures, every task's
        self.inserted_at_start = 0
        self.rows_taken = np.zeros(len(infos), dtype=np.int64)  # sampled rows the learner took, per task
        # a copy of each student's network, built once, to split saved whole-network weights into tasks' parts
        self.holders = {name: type(net)(net.spec, net.obs_shapes, net.n_actions, inputs=net.inputs)
                        for name, net in self.learner.students.items()}

    # -- resumable state ------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {"learner": self.learner.state_dict(), "env_steps": self.collector.env_steps,
                "distill_s": time.monotonic() - self.distill_started, "student_version": self.student_version,
                "balance": self.balance.state(), "rows_taken": self.rows_taken.tolist(),
                "best": {name: {"return": s, "agreement": a, "version": v, "weights": from_numpy(w)}
                         for name, ((s, a), v, w) in self.best.items()},
                "tasks": [task.labels.state() for task in self.tasks],
                **({"search": self.search.state()} if self.search is not None else {})}

    def restore(self, state: dict[str, object]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.distill_started = time.monotonic() - float(state["distill_s"])
        self.telemetry.started = self.distill_started
        self.student_version = int(state["student_version"])
        self.balance.load(state["balance"])
        self.rows_taken = np.asarray(state["rows_taken"], dtype=np.int64)
        self.best = {name: ((float(b["return"]), float(b["agreement"])), int(b["version"]), to_numpy(b["weights"]))
                     for name, b in state["best"].items()}
        for task, saved in zip(self.tasks, state["tasks"]):
            task.labels.restore(saved)
        if self.search is not None:
            self.search.restore(state["search"])
            for task in self.tasks:
                task.evaluation.students = tuple(n for n in task.evaluation.students if n in self.search.active)
        self._resumed_at(int(state["env_steps"]))

    def counts(self, env_steps: int | None = None) -> dict[str, int]:
        return {"env_steps": self.collector.env_steps if env_steps is None else env_steps,
                "learner/steps": self.learner.steps}

    def save_state(self) -> None:
        self.run.save_state(self.state())

    # -- wiring and the loop ----------------------------------------------------------------------

    def train(self) -> dict[str, object]:
        try:
            self._wire()
            reason = self._loop()
            return self._finish(reason, time.monotonic() - self.distill_started)
        finally:
            stop_actors([*self.collector.handles(), *(self.buffer.actors() if self.buffer else []),
                         *(t.labels.params for t in self.tasks), *(t.evaluation.evaluator for t in self.tasks)])

    def _wire(self) -> None:
        """Per task: a teacher parameter server, a buffer and an evaluator, on the head node."""
        cfg, local = self.config, on_head()
        self.buffer = task_buffers(cfg, [t.info for t in self.tasks], self.weights, self.balance, options=local,
                                   name=self.run_id)
        for task in self.tasks:
            name = f"{self.run_id}-task{task.index}"
            task.labels.params = ParameterServerActor.options(name=f"{name}-teacher-params", **local).remote()
            ray.get(task.labels.params.publish.remote(task.labels.version, task.labels.weights))
            if self.refresh_in_buffer:
                self.buffer.buffers[task.index].attach_teacher(task.labels.params, task.teacher.net,
                                                               task.info.obs_shape, task.info.n_actions)
            task.evaluation.evaluator = EvaluatorActor.options(num_cpus=0, max_restarts=-1, max_task_retries=0,
                                                               **local).remote(
                task.env, teacher_net=task.teacher.net, students=cfg.distill.students,
                obs_shape=task.info.obs_shape, n_actions=task.info.n_actions, episodes=cfg.eval_episodes,
                seed=cfg.seed, tau=cfg.distill.tau, teacher_params=f"{name}-teacher-params", ci_width=cfg.eval_ci,
                max_episodes=cfg.eval_max_episodes)
        self.inserted_at_start = int(self.buffer.stats()["buffer/inserted"])

    def _make_actor(self, i: int) -> ray.actor.ActorHandle:
        cfg, task = self.config, self.tasks[self.actor_task(i)]
        return RolloutActor.options(**rollout_options(cfg)).remote(
            task.env, net=task.teacher.net, obs_shape=task.info.obs_shape, n_actions=task.info.n_actions,
            num_envs=cfg.envs_per_actor, seed=cfg.seed * 1000 + i, actor_id=i, task=task.index,
            params=f"{self.run_id}-task{task.index}-teacher-params", sink=self.buffer.sink_for(i, task.index),
            run=self.run.name, next_obs=False)

    def behaviour(self) -> tuple[float, float, None, None, None]:
        return self.epsilon(self.collector.env_steps), 1.0, None, None, None

    def collected(self, results: list[dict[str, object]]) -> None:
        pass

    def learn(self, sample: TaskSample) -> None:
        """The chunk's minibatches, each a list of one task's rows per task it holds: stale labels
        relabelled per task, then every student's step; new labels written back once per task."""
        cfg = self.config
        relabelled: dict[int, list] = {t.index: [] for t in self.tasks}
        lag_used = 0
        for task, _, rows in sample:
            self.rows_taken[task] += len(rows)
            self.metrics.update({f"{k}/{self.tasks[task].env}": v for k, v in self.tasks[task].labels.sampled(rows).items()})
        for step in task_minibatches(sample, cfg.distill.batch_size, mixed=cfg.task_batches == "mixed"):
            parts = []
            for task, ids, mb in step:
                writes, most = self.tasks[task].labels.within_bound(ids, mb)
                relabelled[task] += writes
                lag_used = max(lag_used, most)
                parts.append(mb)
            self.metrics.update(self.learner.step(parts).metrics)
            if self.learner.steps % cfg.publish_every == 0:
                self.student_version += 1
        for task in self.tasks:
            task.labels.write_back(_TaskBuffer(self.buffer, task.index), relabelled[task.index])
            if self.refresh_in_buffer:
                task.labels.refresh(self.buffer.buffers[task.index], self.learner.steps, every=cfg.refresh_every,
                                    chunk=cfg.refresh_chunk)
        self.metrics["buffer/label_staleness_used_max"] = lag_used

    def _snapshot(self) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
        """The students' version and each student's whole network's weights."""
        return self.student_version, {name: to_numpy(net.state_dict()) for name, net in self.learner.students.items()}

    def _task_weights(self, weights: dict[str, np.ndarray], name: str, task: int) -> dict[str, np.ndarray]:
        """Task `task`'s part of a student's whole-network weights."""
        holder = self.holders[name]
        holder.load_state_dict(from_numpy(weights))
        return to_numpy(holder.task_network(task).state_dict())

    def _task_snapshot(self, snapshot, task: int) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
        version, whole = snapshot
        return version, {name: self._task_weights(w, name, task) for name, w in whole.items()}

    def evaluate(self, stop: str | None) -> str | None:
        """Every task's evaluation of one snapshot starts together; judged once all are back."""
        for task in self.tasks:
            if task.evaluation.pending is not None:
                done = task.evaluation.finished()
                if done is not None:
                    task.result = done[0]
        if self.pending is not None:
            if any(t.evaluation.pending is None and t.result is None for t in self.tasks):  # lost: all start again
                self.pending = None
            elif all(t.result is not None for t in self.tasks):
                self._judge(self.pending, [t.result for t in self.tasks])
                self.pending = None
        if stop or self.pending is not None or self.learner.steps == 0:
            return None
        now = time.monotonic()
        if all(t.evaluation.due(now) for t in self.tasks):
            self.pending = self._snapshot()
            for task in self.tasks:
                task.result = None
                task.evaluation.start(self._task_snapshot(self.pending, task.index),
                                      (task.labels.version, task.labels.weights), task=None, dynamics=None)
        return None

    def _judge(self, snapshot, results: list[dict[str, float]]) -> dict[str, float]:
        """Log the evaluation (every task's figures under eval/ENV/…, and each student's geometric
        mean), keep each student's best version, and apply a search's rungs now due."""
        merged: dict[str, float] = {}
        for task, result in zip(self.tasks, results):
            merged.update({key.replace("eval/", f"eval/{task.env}/", 1): v for key, v in result.items()})
        merged = self._without_dropped(merged)  # an evaluation started before a rung dropped some
        version, whole = snapshot
        for name in self.learner.students:
            pcts = [r[f"eval/pct_of_teacher/{name}"] for r in results]
            score = (geometric_mean(pcts), float(np.mean([r[f"eval/agreement/{name}"] for r in results])))
            merged[f"eval/geomean_pct_of_teacher/{name}"] = score[0]
            if name not in self.best or score > self.best[name][0]:
                self.best[name] = (score, version, whole[name])
                self._save_student(name, "best", version, whole[name])
        self.last = merged
        self.run.log({**self.counts(), "distill_s": round(time.monotonic() - self.distill_started, 3), **merged})
        self._halve_due(merged)
        return merged

    def _search_scores(self, result: dict[str, float]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """A search's scores: each active candidate's geometric mean over the tasks of its % of each
        teacher in `result` (merged: eval/ENV/…), counted from 1% up to the threshold, and its figures."""
        keys = {name: [f"eval/{t.env}/pct_of_teacher/{name}" for t in self.tasks] for name in self.search.active}
        scores = {name: geometric_mean(np.clip([result[k] for k in ks], 1.0, self.search.threshold))
                  for name, ks in keys.items() if all(k in result for k in ks)}
        return scores, candidate_figures(result, list(self.search.active))

    def _drop(self, name: str) -> None:
        self.learner.drop(name)
        for task in self.tasks:
            task.evaluation.drop(name)

    def _save_student(self, name: str, which: str, version: int, weights: dict[str, np.ndarray]) -> dict[str, str]:
        """The whole network, and each task's part as an ordinary checkpoint (what `export` takes)."""
        net = self.learner.students[name]
        whole = checkpoint.save_multitask(self.run.student_checkpoint(name, which), checkpoint.MultiTaskCheckpoint(
            name, tuple(t.env for t in self.tasks), tuple(net.obs_shapes), tuple(net.n_actions), net.inputs, version,
            weights))
        paths = {"network": str(whole)}
        for task in self.tasks:
            folder = task_dir(self.run, task.env)
            folder.mkdir(parents=True, exist_ok=True)
            paths[task.env] = self.run.save_checkpoint(
                folder / f"student-{name}-{which}.pt",
                checkpoint.Checkpoint(name, task.info.obs_shape, task.info.n_actions, task.env, version,
                                      self._task_weights(weights, name, task.index)))
        return paths

    def record(self, stop: str | None) -> None:
        if not self.telemetry.due(stop):
            return
        sps = self.telemetry.rate(self.collector.env_steps)
        view, buffer = self.fleet_view(), self.buffer.stats()
        self.run.log(Telemetry.distilling(self, sps=sps, view=view, buffer=buffer))
        fields = {"steps/s": f"{sps:,.0f}"}
        for name in self.learner.students:
            g = self.last.get(f"eval/geomean_pct_of_teacher/{name}")
            fields[name] = f"{g:.0f}% of teachers (geomean)" if g is not None else "-"
        self.telemetry.publish(self.config, phase="distill", env_steps=self.collector.env_steps,
                               learner_steps=self.learner.steps, sps=sps, view=view, buffer=buffer, fields=fields,
                               returns={f"{t.env} {who}": self.last.get(f"eval/{t.env}/return/{who}") for t in self.tasks
                                        for who in ("teacher", *self.learner.students)})

    # -- the end ----------------------------------------------------------------------------------

    def _finish(self, reason: str, distill_wall_s: float) -> dict[str, object]:
        """The state and last checkpoints, the last weights judged beside the periodic ones, then
        every task's final evaluation of each student's best, the summary and report."""
        self.save_state()
        version, whole = self._snapshot()
        students = {name: {"last": self._save_student(name, "last", version, whole[name])} for name in whole}
        self._judge((version, whole), [t.evaluation.now(self._task_snapshot((version, whole), t.index),
                                                        (t.labels.version, t.labels.weights)) for t in self.tasks])
        students = {name: students[name] for name in self.learner.students}  # a search's rungs may have dropped some
        best = {name: self.best[name][2] for name in students}
        finals = [t.evaluation.now(self._task_snapshot((version, best), t.index), (t.labels.version, t.labels.weights),
                                   final=True) for t in self.tasks]
        for name in students:
            students[name]["best"] = {"network": str(self.run.student_checkpoint(name, "best")),
                                      **{t.env: str(task_dir(self.run, t.env) / f"student-{name}-best.pt")
                                         for t in self.tasks}}
        facts = self._facts(reason, distill_wall_s)
        if self.search is not None:
            facts["search"] = search_result(self.search, dict(zip((t.env for t in self.tasks), finals)), self.run)
        summary = summarize_tasks(self.run, self.config, [t.teacher for t in self.tasks], finals, students,
                                  self.learner.params(), facts)
        self.save_state()
        self.run.close()
        return summary

    def _facts(self, reason: str, distill_wall_s: float) -> dict[str, object]:
        stats = self.buffer.stats()
        inserted = int(stats["buffer/inserted"]) - self.inserted_at_start
        return {
            "mode": "online", "wall_s": round(time.monotonic() - self.started, 2),
            "loop_s": self.loop_clock.facts(),
            "distill_wall_s": round(distill_wall_s, 2), "env_steps": self.collector.env_steps,
            "learner_steps": self.learner.steps, "dropped_nonfinite": self.collector.dropped_nonfinite,
            "buffer": {"inserted": inserted, "lost": self.collector.env_steps - self.resumed_env_steps - inserted,
                       "rejected": int(stats["buffer/rejected"]),
                       "bytes_per_row": {t.env: Schema.of(t.info, next_obs=False).record_size for t in self.tasks},
                       "taken_per_task": {t.env: int(self.rows_taken[t.index]) for t in self.tasks}},
            "task_balance": dict(zip((t.env for t in self.tasks), self.weights)),
            "evaluator": {"restarts": sum(int(s.get("NumRestarts", 0)) for s in
                                          actor_states([t.evaluation.evaluator for t in self.tasks])),
                          "evaluations_lost": sum(t.evaluation.lost for t in self.tasks)},
            "stop_reason": reason,
            "actors": {**self.placement, "per_task_at_end": self.actors_per_task()},
            "labels": {t.env: t.labels.summary() for t in self.tasks},
        }


class _TaskBuffer:
    """One task's buffer seen through TaskBuffers: what Labels.write_back relabels through."""

    def __init__(self, buffers: TaskBuffers, task: int) -> None:
        self.buffers, self.task = buffers, task

    def relabel(self, ids: np.ndarray, teacher_q: np.ndarray, version: int) -> object:
        return self.buffers.relabel(self.task, ids, teacher_q, version)


def task_minibatches(sample: TaskSample, size: int, *, mixed: bool):
    """The learner steps of a balanced sample, each a list of (task, ids, rows): `mixed`, every
    step takes its slice of every task's rows (a task's rows split evenly over the steps); else
    each step is one whole minibatch of one task, tasks taking turns."""
    if mixed:
        steps = sum(len(rows) for _, _, rows in sample) // size
        for k in range(steps):
            step = []
            for task, ids, rows in sample:
                a, b = len(rows) * k // steps, len(rows) * (k + 1) // steps
                if b > a:
                    step.append((task, ids[a:b], rows.take(slice(a, b))))
            yield step
        return
    queues = [[(task, ids[a:a + size], rows.take(slice(a, a + size))) for a in range(0, len(rows) - size + 1, size)]
              for task, ids, rows in sample]
    for k in range(max((len(q) for q in queues), default=0)):
        for q in queues:
            if k < len(q):
                yield [q[k]]
