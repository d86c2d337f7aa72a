"""What every run shares around the one loop: the names of its actors, the rollout fleet and
the buffer it writes to, the prefetched sample, when to save the resumable state, and the
hand-over at the end. The teacher and distillation drivers add what differs."""

from __future__ import annotations

import time
import uuid

import ray

from ...actors.buffer_client import BufferClient
from ..config import RunConfig
from ..control import RunControl
from ..placement import actors_per_node
from .collect import Collector, hand_over, steer
from .loop import LoopClock, Prefetcher, budget_spent, run_loop
from .telemetry import Telemetry


class Driver:
    def __init__(self, config: RunConfig, control: RunControl, *, started: float) -> None:
        """`started`: when the clock of the run's time budget started (monotonic)."""
        self.config, self.control = config, control
        self.run_id = f"qdistill-{uuid.uuid4().hex[:8]}"  # names of this run's actors
        self.collector = Collector(self._make_actor, 0, steps_per_call=config.steps_per_call,
                                   envs_per_actor=config.envs_per_actor)
        self.buffer: BufferClient | None = None  # the run's actors, once wired
        self.prefetch: Prefetcher | None = None
        self.telemetry = Telemetry(control, started=started)
        self.saved_at = time.monotonic()
        self.resumed_env_steps = 0  # env steps this run (re)started from
        self.placement: dict[str, object] = {}
        self.loop_clock = LoopClock()  # where the run loop's time went (summary.json's loop_s)

    def _make_actor(self, i: int) -> ray.actor.ActorHandle:
        raise NotImplementedError

    def save_state(self) -> None:
        raise NotImplementedError

    def _resumed_at(self, env_steps: int) -> None:
        self.resumed_env_steps = self.collector.env_steps = self.telemetry.steps_at = env_steps

    def _loop(self) -> str:
        """The rollout actors started (the buffer is wired), the first sample asked for, then the
        loop to its end and the hand-over of what the actors still hold; returns why it ended."""
        if not self.control.stop_requested:  # a stop asked for before the loop (while Ray started): no fleet
            self.start_fleet()
        self.placement["actors_per_node_at_start"] = actors_per_node(self.collector.handles(), timeout=60)
        self.prefetch = Prefetcher(self.buffer, self.config.chunk_rows)
        self.saved_at = self.telemetry.last_at = time.monotonic()  # the first state and record: one interval in
        reason = run_loop(self, self.loop_clock)
        hand_over(self.buffer, self.collector)
        view = self.collector.view()
        self.placement.update(actors_per_node_at_end=view["per_node"], actor_failures=self.collector.failures,
                              actor_restarts=view["restarts"])
        return reason

    def start_fleet(self) -> None:
        self.collector.resize(self.config.actors)

    def fleet_view(self) -> dict[str, object]:
        """Where the rollout actors are, for status and metrics."""
        return self.collector.view()

    def resize(self, actors: int, task: str | None) -> None:
        """`actors` rollout actors (one task: `task` is None, or its env)."""
        self.collector.resize(actors)

    def should_stop(self) -> str | None:
        return budget_spent(self.config, self.collector.env_steps, time.monotonic() - self.telemetry.started) or \
            steer(self.control, self.resize)

    def checkpoint(self, stop: str | None) -> None:
        if not stop and time.monotonic() - self.saved_at >= self.config.checkpoint_every_s:
            self.save_state()
            self.saved_at = time.monotonic()
