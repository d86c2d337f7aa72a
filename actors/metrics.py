"""The run's core figures as Ray metrics (`ray.util.metrics`): every node's metrics agent serves
them on Ray's Prometheus endpoint, so a cluster's Prometheus/Grafana set-up shows them with no
extra work of ours.

Names start with `qdistill_` (Prometheus sees them as `ray_qdistill_…`, counters with `_total`).
Tags: `run` (the run's name: its directory's, as `qdistill status` knows it), `actor` (a rollout
actor's id), `student` (a student's network spec), `policy` (`teacher` or a student's spec).

Ray's metric objects record for the process that made them, so each process makes its own, once
(`_defined`), when it first records: a RolloutActor through RolloutMetrics, the run's learner
through LearnerMetrics (fed the records that go to metrics.jsonl). Recording is a local call with
no Ray round trip: once per collect call, once per logged record.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ray.util.metrics import Counter, Gauge, Histogram

# mean teacher versions a sampled chunk's labels lagged: 0 (current) falls in the first bucket
STALENESS_BOUNDARIES = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]


@dataclass(frozen=True)
class _Metrics:
    rollout_env_steps: Counter
    rollout_steps_per_s: Gauge
    buffer_size: Gauge
    label_staleness: Histogram
    learner_steps: Counter
    distill_loss: Gauge
    eval_return: Gauge
    eval_agreement: Gauge


@functools.cache
def _defined() -> _Metrics:
    """Every qdistill metric, made once per process (on first use: inside the recording process)."""
    return _Metrics(
        rollout_env_steps=Counter("qdistill_rollout_env_steps", tag_keys=("run", "actor"),
                                  description="Env steps (transitions) a rollout actor collected."),
        rollout_steps_per_s=Gauge("qdistill_rollout_steps_per_s", tag_keys=("run",),
                                  description="Env steps per second, all rollout actors together."),
        buffer_size=Gauge("qdistill_buffer_size", tag_keys=("run",),
                          description="Transitions held by the replay buffer."),
        label_staleness=Histogram("qdistill_buffer_label_staleness", boundaries=STALENESS_BOUNDARIES,
                                  tag_keys=("run",),
                                  description="Teacher versions a sampled chunk's labels lagged (mean)."),
        learner_steps=Counter("qdistill_learner_steps", tag_keys=("run",),
                              description="Learner steps (minibatch updates) taken."),
        distill_loss=Gauge("qdistill_learner_distill_loss", tag_keys=("run", "student"),
                           description="A student's distillation loss on its last minibatch."),
        eval_return=Gauge("qdistill_eval_return", tag_keys=("run", "policy"),
                          description="Mean greedy return of the last evaluation."),
        eval_agreement=Gauge("qdistill_eval_agreement", tag_keys=("run", "student"),
                             description="Fraction of evaluated states where a student's greedy action is the teacher's."),
    )


class RolloutMetrics:
    """A rollout actor's figures: the env steps it collected."""

    def __init__(self, run: str, actor_id: int) -> None:
        self.tags = {"run": run, "actor": str(actor_id)}
        self.metrics = _defined()

    def collected(self, env_steps: int) -> None:
        if env_steps > 0:
            self.metrics.rollout_env_steps.inc(env_steps, tags=self.tags)


# metrics.jsonl keys ending in a name: prefix -> (the gauge's field in _Metrics, the name's tag key)
_NAMED_GAUGES = {
    "learner/distill_loss/": ("distill_loss", "student"),
    "eval/return/": ("eval_return", "policy"),
    "eval/agreement/": ("eval_agreement", "student"),
}


class LearnerMetrics:
    """The run's learner's figures, taken from the records it logs (metrics.jsonl's keys)."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.tags = {"run": run}
        self.metrics = _defined()
        self.learner_steps = 0  # the learner steps counted so far (records carry the running total)

    def record(self, record: dict[str, object]) -> None:
        m = self.metrics
        for key, value in record.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key == "rollout/steps_per_s":
                m.rollout_steps_per_s.set(value, tags=self.tags)
            elif key == "buffer/size":
                m.buffer_size.set(value, tags=self.tags)
            elif key == "buffer/label_staleness":
                m.label_staleness.observe(value, tags=self.tags)
            elif key == "learner/steps":
                if value > self.learner_steps:
                    m.learner_steps.inc(value - self.learner_steps, tags=self.tags)
                    self.learner_steps = value
            else:
                self._named(key, value)

    def _named(self, key: str, value: float) -> None:
        for prefix, (field, tag) in _NAMED_GAUGES.items():
            if key.startswith(prefix):
                getattr(self.metrics, field).set(value, tags={"run": self.run, tag: key[len(prefix):]})
                return
