"""What a run shows while it runs: a metrics record every few seconds (and at the end), the
status the CLI's progress line and `qdistill status` read, and the rollout fleet's figures."""

from __future__ import annotations

import time

from ..control import RunControl
from ..config import RunConfig
from .collect import Collector

RECORD_EVERY_S = 2.0
BUFFER_FIELDS = ("size", "capacity", "inserted", "sampled", "rejected")  # a record's buffer figures (each task's)


class Telemetry:
    def __init__(self, control: RunControl, *, started: float, env_steps: int = 0) -> None:
        self.control = control
        self.started = started
        self.last_at = time.monotonic()
        self.steps_at = env_steps

    def due(self, stop: str | None) -> bool:
        return stop is not None or time.monotonic() - self.last_at >= RECORD_EVERY_S

    def rate(self, env_steps: int) -> float:
        """Env steps per second since the last record; starts the next interval."""
        now = time.monotonic()
        sps = (env_steps - self.steps_at) / max(now - self.last_at, 1e-9)
        self.last_at, self.steps_at = now, env_steps
        return sps

    @staticmethod
    def fleet(collector: Collector, view: dict[str, object]) -> dict[str, object]:
        """The rollout actors' figures every record carries."""
        return {"rollout/actors": view["alive"], "rollout/actors_pending": view["pending"],
                "rollout/actor_restarts": view["restarts"], "rollout/actor_failures": collector.failures,
                "rollout/dropped_nonfinite": collector.dropped_nonfinite}

    @classmethod
    def distilling(cls, driver, *, sps: float, view: dict[str, object], buffer: dict[str, float]) -> dict[str, object]:
        """What every record of a distillation carries, of one task or several: counts, the fleet,
        the buffer's figures (`BUFFER_FIELDS`, each task's too), the students' version, the learner's metrics."""
        return {**driver.counts(), "distill_s": round(time.monotonic() - driver.distill_started, 3),
                **cls.fleet(driver.collector, view), "rollout/steps_per_s": round(sps, 1),
                **{k: v for k, v in buffer.items() if k.rsplit("/", 1)[-1] in BUFFER_FIELDS},
                "students/version": driver.student_version, **driver.metrics}

    def publish(self, cfg: RunConfig, *, phase: str, env_steps: int, learner_steps: int, sps: float,
                view: dict[str, object], buffer: dict[str, float], fields: dict[str, str], **more: object) -> None:
        """The run's status, for the progress line and `qdistill status`."""
        self.control.publish(
            state="running", phase=phase, env_steps=env_steps, learner_steps=learner_steps,
            progress={"done": env_steps if cfg.steps else time.monotonic() - self.started,
                      "total": cfg.steps or cfg.time, "unit": "steps" if cfg.steps else "s"},
            fields=fields, steps_per_s=round(sps, 1), actors=view,
            buffer={"size": int(buffer["buffer/size"]), "capacity": int(buffer["buffer/capacity"])}, **more)
