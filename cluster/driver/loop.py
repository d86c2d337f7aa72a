"""The one run loop, for the teacher run and the distillation run alike:

    collect → learn → publish → evaluate → record → checkpoint

until a budget is spent, a stop is asked for or the target is reached. What differs between runs
is in the `Run` each driver is (driver/teacher.py, driver/distill.py) and its parts (labels,
evaluation, telemetry, task change)."""

from __future__ import annotations

import time
from typing import Protocol


from ...actors.buffer_client import BufferClient
from ...learners.batch import TransitionBatch
from ..config import RunConfig
from .collect import Collector


class Run(Protocol):
    collector: Collector
    prefetch: Prefetcher

    def should_stop(self) -> str | None:
        """A budget spent or a stop asked for ("steps", "time", "stopped"); what came from outside applied."""
    def behaviour(self) -> tuple[float, float, dict[str, float] | None, tuple[int, int] | None, str | None]:
        """The collect's (ε, β, dynamics, newest versions, the student that acts)."""
    def collected(self, results: list[dict[str, object]]) -> None:
        """Take in what the finished collects report (episodes, versions)."""
    def learn(self, sample) -> None:
        """Learner steps on a sampled chunk (what the run's buffer's `gather` gives: (ids, rows),
        or a multi-task run's TaskSample), publishing new weights as they come."""
    def evaluate(self, stop: str | None) -> str | None:
        """Start, take in and judge evaluations; "target" once it is reached."""
    def record(self, stop: str | None) -> None:
        """A metrics record and the run's status, every few seconds and once at the end."""
    def checkpoint(self, stop: str | None) -> None:
        """The resumable state, every checkpoint_every_s while running."""


def run_loop(run: Run, clock: LoopClock | None = None) -> str:
    """Drive `run` to its end, timing each phase on `clock`; returns why it ended."""
    clock = clock or LoopClock()
    stop = None
    while stop is None:
        with clock("launch"):
            stop = run.should_stop()
            if not stop:
                run.collector.launch(*run.behaviour())
        with clock("wait"):
            ready, results = wait_for_work(run.prefetch, run.collector, stop)
            run.collected(results)
        if ready:
            with clock("take"):
                sample = run.prefetch.take()
            with clock("learn"):
                run.learn(sample)
        with clock("evaluate"):
            stop = run.evaluate(stop) or stop
        with clock("record"):
            run.record(stop)
            run.checkpoint(stop)
    return stop


class LoopClock:
    """Wall seconds the run loop spent in each phase (summary.json's `loop_s`): starting collects
    (`launch`), waiting for a sample or a finished collect (`wait`), taking the sample (`take`),
    learning (`learn`; a run may time parts of it itself, e.g. `learn/teacher`), evaluating, and
    recording and checkpointing (`record`). Phases may nest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[tuple[str, float]] = []

    def __call__(self, phase: str) -> LoopClock:
        self._open.append((phase, 0.0))
        return self

    def __enter__(self) -> None:
        self._open[-1] = (self._open[-1][0], time.perf_counter())

    def __exit__(self, *exc: object) -> None:
        phase, started = self._open.pop()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

    def facts(self) -> dict[str, float]:
        """Seconds per phase, rounded to the millisecond."""
        return {phase: round(s, 3) for phase, s in self.seconds.items()}


def budget_fraction(cfg: RunConfig, env_steps: int, elapsed_s: float) -> float:
    """How far through its budget the run is: the larger of its step and time shares."""
    return max(env_steps / cfg.steps if cfg.steps else 0.0, elapsed_s / cfg.time if cfg.time else 0.0)


def budget_spent(cfg: RunConfig, env_steps: int, elapsed_s: float) -> str | None:
    """"steps" or "time" once that budget is spent, else None."""
    if cfg.steps is not None and env_steps >= cfg.steps:
        return "steps"
    if cfg.time is not None and elapsed_s >= cfg.time:
        return "time"
    return None


class Prefetcher:
    """Keeps a sample of `chunk` transitions in flight: the learner takes it once it is back (the
    buffer's rate limiter holds it while data is too thin), and the next is asked for at once."""

    def __init__(self, buffer: BufferClient, chunk: int) -> None:
        self.buffer = buffer
        self.chunk = chunk
        self.pending = buffer.sample_async(chunk)

    def ready(self, timeout: float = 0.0) -> bool:
        return self.buffer.ready(self.pending, timeout)

    def take(self) -> tuple:
        got = self.buffer.gather(self.pending)
        self.pending = self.buffer.sample_async(self.chunk)
        return got


def wait_for_work(prefetch: Prefetcher, collector: Collector, stop: str | None) -> tuple[bool, list[dict]]:
    """Whether a sample is there to learn from, and the collects that finished: waiting a moment
    for either when neither is there yet (no waiting once the run stops)."""
    ready = stop is None and prefetch.ready()
    results = collector.harvest(timeout=0.0 if ready or stop else 0.005)
    if not (ready or results or stop):
        ready = prefetch.ready(timeout=0.005)
    return ready, results


def minibatches(ids, batch: TransitionBatch, size: int):
    """(ids, batch) of each whole minibatch of a sampled chunk, as views of its arrays."""
    for start in range(0, len(batch) - size + 1, size):
        part = slice(start, start + size)
        yield ids[part], batch.take(part)
