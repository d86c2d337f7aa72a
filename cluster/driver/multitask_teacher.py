"""train-teacher over several tasks: one DQN with a shared trunk and a head per task, trained by
rollout actors of every task through a buffer per task sampled in the run's balance.

What differs from the one-task teacher run (driver/teacher.py, whose loop parts it keeps): a
parameter server, buffer and evaluation per task; learner steps over every task's minibatch (or
one task's, taking turns); the best version is the one with the highest geometric mean over tasks
of its return above a random policy's (a ranking no task's scale or offset changes)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import ray

from ...actors.balance import TaskBalance, parse_balance
from ...actors.envs import EnvInfo
from ...actors.evaluate import evaluate
from ...actors.intervals import geometric_mean
from ...actors.remote import ParameterServerActor, RolloutActor
from ...actors.task_buffers import TaskSample
from ...actors.wire import Schema
from ...learners import checkpoint
from ...learners.dqn import DQNLearner
from ..config import TeacherRunConfig
from ..control import RunControl
from ..placement import on_head, rollout_options
from ..rundir.multitask import task_dir
from .collect import stop_actors, task_buffers
from .evaluation import FINAL_SEED, BestTeacher, TeacherEvaluation
from .multitask import task_minibatches
from .task_fleet import TaskFleet
from .teacher import TeacherDriver


class MultiTaskTeacherDriver(TaskFleet, TeacherDriver):
    def __init__(self, config: TeacherRunConfig, infos: list[EnvInfo], *, control: RunControl,
                 init: checkpoint.MultiTaskCheckpoint | None = None, started: float | None = None,
                 device: str = "cpu", name: str | None = None) -> None:
        super().__init__(config, infos[0], control=control, started=started, device=device, name=name)
        self.infos = infos
        self.learner = DQNLearner(config.dqn, [(i.obs_shape, i.n_actions) for i in infos], seed=config.seed,
                                  device=device, inputs=config.task_inputs)
        if init is not None:
            self.learner.load_weights(init.weights)
            self.version = init.version
        self.evaluations = [TeacherEvaluation(replace(config, env=i.env_id, tasks=()), i.obs_shape, i.n_actions,
                                              env_steps=0) for i in infos]
        self.weights = parse_balance(config.task_balance, len(infos))
        self.balance = TaskBalance(self.weights)
        self.task_params: list[ray.actor.ActorHandle] = []
        self.random_returns = [self._random_return(i) for i in infos]
        self.best_score = -np.inf
        self.last_returns: dict[str, float] = {}

    def _random_return(self, info: EnvInfo) -> float:
        """A uniformly random policy's mean return: the zero of the task's score."""
        rng = np.random.default_rng(self.config.seed)
        return evaluate(info.env_id, lambda obs: rng.integers(0, info.n_actions, len(obs)),
                        episodes=self.config.eval_episodes, seed=FINAL_SEED + 500).mean

    def state(self) -> dict[str, object]:
        return {**super().state(), "balance": self.balance.state(), "best_score": self.best_score}

    def restore(self, state: dict[str, object]) -> None:
        super().restore(state)
        self.balance.load(state["balance"])
        self.best_score = float(state["best_score"])
        for evaluation in self.evaluations:
            evaluation.next_at = self.evaluation.next_at

    def train(self) -> dict[str, object]:
        if self.control.stop_requested:
            return self._finish("stopped")
        cfg, local = self.config, on_head()
        try:
            for t in range(len(self.infos)):
                params = ParameterServerActor.options(name=f"{self.run_id}-task{t}-params", **local).remote()
                params.publish.remote(self.version, self.learner.weights(t))
                self.task_params.append(params)
            self.buffer = task_buffers(cfg, self.infos, self.weights, self.balance, options=local, name=self.run_id)
            reason = self._loop()
        finally:
            stop_actors([*self.collector.handles(), *(self.buffer.actors() if self.buffer else []),
                         *self.task_params])
        return self._finish(reason)

    def _make_actor(self, i: int) -> ray.actor.ActorHandle:
        cfg, t = self.config, self.actor_task(i)
        info = self.infos[t]
        return RolloutActor.options(**rollout_options(cfg)).remote(
            info.env_id, net=cfg.dqn.net, obs_shape=info.obs_shape, n_actions=info.n_actions,
            num_envs=cfg.envs_per_actor, seed=cfg.seed * 1000 + i, actor_id=i, task=t,
            params=f"{self.run_id}-task{t}-params", sink=self.buffer.sink_for(i, t), run=self.run.name,
            **cfg.td_rows)

    def learn(self, sample: TaskSample) -> None:
        """The chunk's DQN steps, each over every task's minibatch (or one task's, taking turns)."""
        cfg = self.config
        for step in task_minibatches(sample, cfg.dqn.batch_size, mixed=cfg.task_batches == "mixed"):
            self.metrics = self.learner.step([mb for _, _, mb in step]).metrics
            if self.learner.steps % cfg.publish_every == 0:
                self.version += 1
                for t, params in enumerate(self.task_params):
                    params.publish.remote(self.version, self.learner.weights(t))

    def evaluate(self, stop: str | None) -> str | None:
        """Every task's greedy episodes every eval_every env steps; a new best kept by its score."""
        env_steps = self.collector.env_steps
        if stop or not self.evaluations[0].due(env_steps) or self.learner.steps == 0:
            return None
        returns = []
        record: dict[str, float] = {"env_steps": env_steps, "weights/version": self.version}
        for t, (info, evaluation) in enumerate(zip(self.infos, self.evaluations)):
            result, _ = evaluation.evaluate(self.learner.q.task_network(t), self.version, env_steps)
            returns.append(result.mean)
            record.update({f"eval/{info.env_id}/return/teacher": result.mean,
                           f"eval/{info.env_id}/return_std/teacher": result.std})
        score = self.score(returns)
        record["eval/score/teacher"] = score
        self.run.log(record)
        self.last_returns = dict(zip((i.env_id for i in self.infos), returns))
        if score > self.best_score:
            self.best_score = score
            self.evaluation.best = BestTeacher(self.version, score, self.learner.network_weights())
            self._save("best", self.version, self.evaluation.best.weights)
        return None

    def score(self, returns: list[float]) -> float:
        """The geometric mean over tasks of the return above a random policy's (0 once a task is at or below it)."""
        return geometric_mean([max(r - rand, 0.0) for r, rand in zip(returns, self.random_returns)])

    def _save(self, which: str, version: int, weights: dict[str, np.ndarray]) -> str:
        """The whole network, and each task's part as an ordinary teacher checkpoint (what `run --teacher` takes)."""
        net = self.learner.q
        whole = checkpoint.MultiTaskCheckpoint(self.config.dqn.net, tuple(i.env_id for i in self.infos),
                                               tuple(net.obs_shapes), tuple(net.n_actions), net.inputs, version, weights)
        path = checkpoint.save_multitask(self.run.teacher_checkpoint(which), whole)
        for info in self.infos:
            folder = task_dir(self.run, info.env_id)
            folder.mkdir(parents=True, exist_ok=True)
            checkpoint.save(folder / f"teacher-{which}.pt", whole.task(info.env_id))
        return str(path)

    def _finish(self, reason: str) -> dict[str, object]:
        cfg = self.config
        last = self._save("last", self.version, self.learner.network_weights())
        if self.evaluation.best.weights is None:
            self.evaluation.best = BestTeacher(self.version, -np.inf, self.learner.network_weights())
            self._save("best", self.version, self.evaluation.best.weights)
        self.save_state()
        best = self.evaluation.best
        whole = checkpoint.load_multitask(self.run.teacher_checkpoint("best"))
        tasks, returns = {}, []
        for t, (info, evaluation) in enumerate(zip(self.infos, self.evaluations)):
            part = whole.task(info.env_id)
            final = evaluation.final(part.version, part.weights)
            returns.append(final.mean)
            tasks[info.env_id] = {"eval_return_mean": final.mean, "eval_return_std": final.std,
                                  "eval_episodes": final.episodes, "random_return": self.random_returns[t],
                                  "checkpoint": str(task_dir(self.run, info.env_id) / "teacher-best.pt"),
                                  "bytes_per_row": Schema.of(info, next_obs=cfg.next_obs).record_size}
        summary = {
            "env": cfg.env, "tasks": list(cfg.tasks), "wall_s": round(time.monotonic() - self.started, 2),
            "loop_s": self.loop_clock.facts(),
            "env_steps": self.collector.env_steps, "learner_steps": self.learner.steps,
            "weights_version": self.version, "dropped_nonfinite": self.collector.dropped_nonfinite,
            "stop_reason": reason, "task_balance": dict(zip(cfg.tasks, self.weights)),
            "actors": {**self.placement, "per_task_at_end": self.actors_per_task()},
            "teacher": {"net": cfg.dqn.net, "params": self.learner.params, "version": best.version,
                        "score": self.score(returns), "checkpoint": str(self.run.teacher_checkpoint("best")),
                        "last_checkpoint": last, "inputs": cfg.task_inputs},
            "per_task": tasks,
        }
        self.run.write_json(self.run.summary, summary)
        self.run.close()
        return summary

