"""The train-teacher driver: rollout actors → buffer → DQN learner, weights published back.

Reads like the flow in DESIGN.md: collect → buffer.add (inside the actors) → buffer.sample →
learner.step → params.publish, with greedy evaluation keeping the best teacher.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..actors.envs import EnvInfo
from ..actors.evaluate import EvalResult, evaluate
from ..actors.remote import ParameterServerActor, RolloutActor
from ..learners import checkpoint
from ..learners.dqn import DQNLearner
from ..learners.networks import GreedyPolicy, from_numpy, greedy_actions, to_numpy
from ..learners.schedule import LinearSchedule
from .config import TeacherRunConfig
from .control import RunControl
from .placement import actors_per_node, on_head, rollout_options
from .loop import (Collector, Prefetcher, budget_spent, hand_over, minibatches, run_buffer, steer, stop_actors,
                   wait_for_work)
from .rundir import RunDir

FINAL_SEED = 1_000_000  # evaluation seeds never used while training


@dataclass
class _Best:
    version: int = -1
    eval_mean: float = -np.inf
    weights: dict[str, np.ndarray] | None = None
    final: EvalResult | None = None  # on the held-out seeds


class TeacherDriver:
    def __init__(self, config: TeacherRunConfig, info: EnvInfo, *, control: RunControl,
                 init: checkpoint.Checkpoint | None = None, started: float | None = None, device: str = "cpu",
                 name: str | None = None) -> None:
        self.config = config
        self.info = info
        self.started = started if started is not None else time.monotonic()
        self.run = RunDir(config.out, name=name)
        self.run.write_config(config.to_dict())
        torch.set_num_threads(config.learner_threads)
        self.learner = DQNLearner(config.dqn, info.obs_shape, info.n_actions, seed=config.seed, device=device)
        self.version = 0
        if init is not None:
            self.learner.load_weights(init.weights)
            self.version = init.version
        self.epsilon = LinearSchedule(config.exploration.start, config.exploration.end, config.exploration.steps)
        self.env_steps = 0
        self.best = _Best()
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.control = control
        self.resumed_env_steps = 0  # env steps this run (re)started from

    # -- resumable state ------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        best = self.best
        return {
            "learner": self.learner.state_dict(),
            "env_steps": self.env_steps,
            "elapsed_s": time.monotonic() - self.started,
            "version": self.version,
            "best": {"version": best.version, "eval_mean": best.eval_mean,
                     "weights": from_numpy(best.weights) if best.weights is not None else {}},
        }

    def restore(self, state: dict[str, object]) -> None:
        """Carry on from a saved state: networks, optimiser, counters, the best teacher so far."""
        self.learner.load_state_dict(state["learner"])
        self.env_steps = int(state["env_steps"])
        self.resumed_env_steps = self.env_steps
        self.started = time.monotonic() - float(state["elapsed_s"])
        self.version = int(state["version"])
        best = state["best"]
        self.best = _Best(int(best["version"]), float(best["eval_mean"]), to_numpy(best["weights"]) or None)

    def save_state(self) -> None:
        checkpoint.save_state(self.run.checkpoints / "state.pt", self.state())

    # -- the loop -------------------------------------------------------------------------------

    def train(self) -> dict[str, object]:
        cfg = self.config
        local = on_head()
        run_id = self.run_id = f"qdistill-{uuid.uuid4().hex[:8]}"  # names of this run's actors
        self.params = ParameterServerActor.options(name=f"{run_id}-params", **local).remote()
        self.params.publish.remote(self.version, self.learner.weights())
        self.buffer = run_buffer(cfg, self.info, options=local, name=run_id)
        self.collector = Collector(self._make_actor, cfg.actors, steps_per_call=cfg.steps_per_call,
                                   envs_per_actor=cfg.envs_per_actor)
        self.collector.env_steps = self.resumed_env_steps
        self.placement = {"actors_per_node_at_start": actors_per_node(self.collector.handles(), timeout=60)}
        try:
            reason = self._loop()
            hand_over(self.buffer, self.collector)
            self.env_steps = self.collector.env_steps  # with the collects taken in at the end
            view = self.collector.view()
            self.placement.update(actors_per_node_at_end=view["per_node"], actor_failures=self.collector.failures,
                                  actor_restarts=view["restarts"])
        finally:
            stop_actors([*self.collector.handles(), *self.buffer.actors(), self.params])
        return self._finish(reason)

    def _make_actor(self, i: int):
        cfg = self.config
        return RolloutActor.options(**rollout_options(cfg)).remote(
            cfg.env, net=cfg.dqn.net, obs_shape=self.info.obs_shape, n_actions=self.info.n_actions,
            num_envs=cfg.envs_per_actor, seed=cfg.seed * 1000 + i, actor_id=i,
            params=f"{self.run_id}-params", shard=self.buffer.shard_for(i), run=self.run.name,
        )

    def _loop(self) -> str:
        cfg = self.config
        collector = self.collector
        prefetch = Prefetcher(self.buffer, cfg.chunk_rows)
        next_eval = max(cfg.eval_every, cfg.learning_starts, collector.env_steps + 1)
        last_log, steps_at_log = time.monotonic(), collector.env_steps
        last_save = time.monotonic()
        metrics: dict[str, float] = {}
        staleness, actor_version = 0, -1
        stop = None
        while stop is None:
            self.env_steps = collector.env_steps
            stop = budget_spent(cfg, self.env_steps, time.monotonic() - self.started) or steer(self.control, collector)

            # collect: keep actors busy; the buffer's rate limiter keeps the replay ratio, holding
            # inserts while the learner is behind and samples while data is too thin
            if not stop:
                collector.launch(self.epsilon(self.env_steps))
            ready, results = wait_for_work(prefetch, collector, stop)
            for result in results:
                self.recent_returns.extend(ret for ret, _ in result["episodes"])
                staleness = result["latest_version"] - result["weights_version"]
                actor_version = result["weights_version"]

            # learn: a chunk of updates_per_sample minibatches, with the next one already asked for
            if ready:
                for _, mb in minibatches(*prefetch.take(), cfg.dqn.batch_size):
                    metrics = self.learner.step(mb)
                    if self.learner.steps % cfg.publish_every == 0:
                        self.version += 1
                        self.params.publish.remote(self.version, self.learner.weights())

            if not stop and collector.env_steps >= next_eval and self.learner.steps > 0:
                self.env_steps = collector.env_steps
                next_eval += cfg.eval_every
                if self._evaluate():
                    stop = "target"

            now = time.monotonic()
            if stop or now - last_log >= 2.0:  # and once more at the end
                sps = (collector.env_steps - steps_at_log) / max(now - last_log, 1e-9)
                last_log, steps_at_log = now, collector.env_steps
                view = collector.view()
                self.run.log({
                    "env_steps": collector.env_steps,
                    "rollout/actors": view["alive"],
                    "rollout/actors_pending": view["pending"],
                    "rollout/actor_restarts": view["restarts"],
                    "rollout/actor_failures": collector.failures,
                    "rollout/dropped_nonfinite": collector.dropped_nonfinite,
                    "learner/steps": self.learner.steps,
                    "weights/version": self.version,
                    "rollout/steps_per_s": round(sps, 1),
                    "rollout/epsilon": round(self.epsilon(collector.env_steps), 4),
                    "rollout/weights_version": actor_version,
                    "rollout/weights_staleness": staleness,
                    "charts/episodic_return": self._recent(),
                    **metrics,
                })
                self._publish(now, sps, view)
            if not stop and now - last_save >= cfg.checkpoint_every_s:
                self.env_steps = collector.env_steps
                self.save_state()
                last_save = now
        return stop

    def _publish(self, now: float, sps: float, view: dict) -> None:
        cfg = self.config
        env_steps = self.collector.env_steps
        buffer = self.buffer.stats()
        self.control.publish(
            state="running", phase="teacher", env_steps=env_steps, learner_steps=self.learner.steps,
            progress={"done": env_steps if cfg.steps else now - self.started, "total": cfg.steps or cfg.time,
                      "unit": "steps" if cfg.steps else "s"},
            fields={"steps/s": f"{sps:,.0f}", "ε": f"{self.epsilon(env_steps):.3f}",
                    "return": f"{self._recent():.1f}" if self.recent_returns else "-",
                    "eval": f"{self.best.eval_mean:.1f}" if self.best.weights else "-"},
            steps_per_s=round(sps, 1), actors=view,
            buffer={"size": int(buffer["buffer/size"]), "capacity": int(buffer["buffer/capacity"])},
            returns={"teacher": self.best.eval_mean if self.best.weights else None},
        )

    def _recent(self) -> float | None:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None

    # -- evaluation and checkpoints ------------------------------------------------------------

    def _evaluate(self) -> bool:
        """Greedy evaluation; keeps the best teacher. True once the target is reached on held-out seeds."""
        cfg = self.config
        q = self.learner.q
        result = evaluate(cfg.env, lambda obs: greedy_actions(q, obs), episodes=cfg.eval_episodes,
                          seed=cfg.seed * 100_003 + self.env_steps)
        self.run.log({"env_steps": self.env_steps, "eval/return/teacher": result.mean,
                      "eval/return_std/teacher": result.std, "weights/version": self.version})
        if result.mean <= self.best.eval_mean:
            return False
        self.best = _Best(self.version, result.mean, self.learner.weights())
        self._save("teacher_best.pt", self.best.version, self.best.weights)
        if cfg.target_return is None or result.mean < cfg.target_return:
            return False
        self.best.final = self._final_eval(self.best.weights)
        return self.best.final.mean >= cfg.target_return

    def _final_eval(self, weights: dict[str, np.ndarray]) -> EvalResult:
        policy = GreedyPolicy(self.config.dqn.net, self.info.obs_shape, self.info.n_actions)
        policy.load(self.version, weights)
        return evaluate(self.config.env, policy.act,
                        episodes=self.config.eval_episodes, seed=FINAL_SEED + self.config.seed * 1000)

    def _save(self, name: str, version: int, weights: dict[str, np.ndarray]) -> str:
        ckpt = checkpoint.Checkpoint(self.config.dqn.net, self.info.obs_shape, self.info.n_actions,
                                     self.config.env, version, weights)
        return str(checkpoint.save(self.run.checkpoints / name, ckpt))

    def _finish(self, reason: str) -> dict[str, object]:
        cfg = self.config
        last = self._save("teacher_last.pt", self.version, self.learner.weights())
        if self.best.weights is None:
            self.best = _Best(self.version, -np.inf, self.learner.weights())
            self._save("teacher_best.pt", self.best.version, self.best.weights)
        final = self.best.final or self._final_eval(self.best.weights)
        summary = {
            "env": cfg.env,
            "wall_s": round(time.monotonic() - self.started, 2),
            "env_steps": self.env_steps,
            "learner_steps": self.learner.steps,
            "weights_version": self.version,
            "dropped_nonfinite": self.collector.dropped_nonfinite,
            "stop_reason": reason,
            "actors": self.placement,
            "target_return": cfg.target_return,
            "reached_target": cfg.target_return is not None and final.mean >= cfg.target_return,
            "teacher": {
                "net": cfg.dqn.net,
                "params": self.learner.params,
                "eval_return_mean": final.mean,
                "eval_return_std": final.std,
                "eval_episodes": final.episodes,
                "version": self.best.version,
                "checkpoint": str(self.run.checkpoints / "teacher_best.pt"),
                "last_checkpoint": last,
            },
        }
        self.run.write_json("summary.json", summary)
        self.save_state()
        self.run.close()
        return summary
