"""The train-teacher run: rollout actors → buffer → DQN learner, weights published back, on the
one run loop (driver/loop.py): collect → buffer.add (inside the actors) → buffer.sample →
learner.step → params.publish, with greedy evaluation keeping the best teacher.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import ray

from ...actors.envs import EnvInfo
from ...actors.remote import ParameterServerActor, RolloutActor
from ...actors.wire import Schema
from ...learners import checkpoint
from ...learners.batch import TransitionBatch
from ...learners.compute import learner_torch
from ...learners.dqn import DQNLearner
from ...learners.networks import from_numpy, to_numpy
from ...learners.schedule import LinearSchedule
from ..config import TeacherRunConfig
from ..control import RunControl
from ..placement import on_head, rollout_options
from ..rundir import RunDir
from .base import Driver
from .collect import run_buffer, stop_actors
from .evaluation import FINAL_SEED, BestTeacher, TeacherEvaluation
from .loop import minibatches
from .telemetry import Telemetry

__all__ = ["FINAL_SEED", "TeacherDriver"]


class TeacherDriver(Driver):
    def __init__(self, config: TeacherRunConfig, info: EnvInfo, *, control: RunControl,
                 init: checkpoint.Checkpoint | None = None, started: float | None = None, device: str = "cpu",
                 name: str | None = None) -> None:
        self.started = started if started is not None else time.monotonic()
        super().__init__(config, control, started=self.started)
        self.info = info
        self.run = RunDir(config.out, name=name)
        self.run.write_config(config.to_dict())
        learner_torch(config.learner_threads)
        self.learner = DQNLearner(config.dqn, [(info.obs_shape, info.n_actions)], seed=config.seed, device=device)
        self.version = 0
        if init is not None:
            self.learner.load_weights(init.weights)
            self.version = init.version
        self.epsilon = LinearSchedule(config.exploration.start, config.exploration.end, config.exploration.steps)
        self.evaluation = TeacherEvaluation(config, info.obs_shape, info.n_actions, env_steps=0)
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.params: ray.actor.ActorHandle | None = None
        self.metrics: dict[str, float] = {}
        self.weights_staleness, self.actor_version = 0, -1  # of the newest collect's actor

    # -- resumable state ------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        best = self.evaluation.best
        return {
            "learner": self.learner.state_dict(),
            "env_steps": self.collector.env_steps,
            "elapsed_s": time.monotonic() - self.started,
            "version": self.version,
            "best": {"version": best.version, "eval_mean": best.eval_mean,
                     "weights": from_numpy(best.weights) if best.weights is not None else {}},
        }

    def restore(self, state: dict[str, object]) -> None:
        """Carry on from a saved state: networks, optimiser, counters, the best teacher so far."""
        self.learner.load_state_dict(state["learner"])
        self._resumed_at(int(state["env_steps"]))
        self.evaluation.next_at = max(self.evaluation.next_at, self.resumed_env_steps + 1)
        self.started = self.telemetry.started = time.monotonic() - float(state["elapsed_s"])
        self.version = int(state["version"])
        best = state["best"]
        self.evaluation.best = BestTeacher(int(best["version"]), float(best["eval_mean"]),
                                           to_numpy(best["weights"]) or None)

    def counts(self) -> dict[str, int]:
        return {"env_steps": self.collector.env_steps, "learner/steps": self.learner.steps}

    def save_state(self) -> None:
        self.run.save_state(self.state())

    # -- wiring and the loop ----------------------------------------------------------------------

    def train(self) -> dict[str, object]:
        if self.control.stop_requested:  # asked before it began: nothing to start, and no call to Ray
            return self._finish("stopped")  # (Ray may still be starting: the CLI finishes it beside ray.init)
        cfg, local = self.config, on_head()
        try:
            self.params = ParameterServerActor.options(name=f"{self.run_id}-params", **local).remote()
            self.params.publish.remote(self.version, self.learner.weights())
            self.buffer = run_buffer(cfg, self.info, options=local, name=self.run_id)
            reason = self._loop()
        finally:
            stop_actors([*self.collector.handles(), *(self.buffer.actors() if self.buffer else []), self.params])
        return self._finish(reason)

    def _make_actor(self, i: int) -> ray.actor.ActorHandle:
        cfg = self.config
        return RolloutActor.options(**rollout_options(cfg)).remote(
            cfg.env, net=cfg.dqn.net, obs_shape=self.info.obs_shape, n_actions=self.info.n_actions,
            num_envs=cfg.envs_per_actor, seed=cfg.seed * 1000 + i, actor_id=i,
            params=f"{self.run_id}-params", sink=self.buffer.sink_for(i), run=self.run.name, **cfg.td_rows,
        )

    def behaviour(self) -> tuple[float, float, None, None, None]:
        # the buffer's rate limiter keeps the replay ratio, holding inserts while the learner is
        # behind and samples while data is too thin
        return self.epsilon(self.collector.env_steps), 1.0, None, None, None

    def collected(self, results: list[dict[str, object]]) -> None:
        for result in results:
            self.recent_returns.extend(result["episodes"].returns.tolist())
            self.weights_staleness = result["latest_version"] - result["weights_version"]
            self.actor_version = result["weights_version"]

    def learn(self, sample: tuple[np.ndarray, TransitionBatch]) -> None:
        """A chunk of updates_per_sample minibatches (the next chunk is already asked for)."""
        for _, mb in minibatches(*sample, self.config.dqn.batch_size):
            self.metrics = self.learner.step(mb).metrics
            if self.learner.steps % self.config.publish_every == 0:
                self.version += 1
                self.params.publish.remote(self.version, self.learner.weights())

    def evaluate(self, stop: str | None) -> str | None:
        env_steps = self.collector.env_steps
        if stop or not self.evaluation.due(env_steps) or self.learner.steps == 0:
            return None
        result, better = self.evaluation.evaluate(self.learner.q, self.version, env_steps)
        self.run.log({"env_steps": env_steps, "eval/return/teacher": result.mean,
                      "eval/return_std/teacher": result.std, "weights/version": self.version})
        if not better:
            return None
        self._save("best", self.evaluation.best.version, self.evaluation.best.weights)
        return "target" if self.evaluation.reached() else None

    def record(self, stop: str | None) -> None:
        if not self.telemetry.due(stop):
            return
        env_steps = self.collector.env_steps
        sps = self.telemetry.rate(env_steps)
        view, best, recent = self.fleet_view(), self.evaluation.best, self._recent()
        self.run.log({"env_steps": env_steps, **Telemetry.fleet(self.collector, view),
                      "learner/steps": self.learner.steps, "weights/version": self.version,
                      "rollout/steps_per_s": round(sps, 1), "rollout/epsilon": round(self.epsilon(env_steps), 4),
                      "rollout/weights_version": self.actor_version,
                      "rollout/weights_staleness": self.weights_staleness,
                      "charts/episodic_return": recent, **self.metrics})
        self.telemetry.publish(
            self.config, phase="teacher", env_steps=env_steps, learner_steps=self.learner.steps, sps=sps, view=view,
            buffer=self.buffer.stats(),
            fields={"steps/s": f"{sps:,.0f}", "ε": f"{self.epsilon(env_steps):.3f}",
                    "return": f"{recent:.1f}" if recent is not None else "-",
                    "eval": f"{best.eval_mean:.1f}" if best.weights else "-"},
            returns={"teacher": best.eval_mean if best.weights else None})

    def _recent(self) -> float | None:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None

    # -- checkpoints and the end ------------------------------------------------------------------

    def _save(self, which: str, version: int, weights: dict[str, np.ndarray]) -> str:
        ckpt = checkpoint.Checkpoint(self.config.dqn.net, self.info.obs_shape, self.info.n_actions,
                                     self.config.env, version, weights)
        return self.run.save_checkpoint(self.run.teacher_checkpoint(which), ckpt)

    def _finish(self, reason: str) -> dict[str, object]:
        cfg = self.config
        last = self._save("last", self.version, self.learner.weights())
        if self.evaluation.best.weights is None:
            self.evaluation.best = BestTeacher(self.version, -np.inf, self.learner.weights())
            self._save("best", self.version, self.evaluation.best.weights)
        self.save_state()  # what a resume needs is written before the final evaluation and summary
        best = self.evaluation.best
        final = best.final or self.evaluation.final(best.version, best.weights)
        summary = {
            "env": cfg.env, "wall_s": round(time.monotonic() - self.started, 2),
            "loop_s": self.loop_clock.facts(),
            "env_steps": self.collector.env_steps, "learner_steps": self.learner.steps,
            "weights_version": self.version, "dropped_nonfinite": self.collector.dropped_nonfinite,
            "bytes_per_row": Schema.of(self.info, next_obs=cfg.next_obs).record_size, "stop_reason": reason, "actors": self.placement, "target_return": cfg.target_return,
            "reached_target": cfg.target_return is not None and final.mean >= cfg.target_return,
            "teacher": {
                "net": cfg.dqn.net, "params": self.learner.params, "eval_return_mean": final.mean,
                "eval_return_std": final.std, "eval_episodes": final.episodes, "version": best.version,
                "checkpoint": str(self.run.teacher_checkpoint("best")), "last_checkpoint": last,
            },
        }
        self.run.write_json(self.run.summary, summary)
        self.run.close()
        return summary
