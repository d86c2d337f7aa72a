"""A learner stepped on a worker thread, beside the learner's own: a learning teacher's run steps
its students there while its thread takes the teacher's next step (torch releases the GIL in its
kernels, so the two steps share two cores; one thread each, as `compute.learner_torch` sets)."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from .batch import Update
from .compute import flush_subnormals


class BackgroundSteps:
    """`learner`'s steps, on one worker thread (`background`) or at once on the caller's.

    `submit(batch)` waits for the step in flight, hands its Update to `done` on the caller's
    thread, then starts the next step and returns. Any other use of the learner (its weights,
    steps, state, `drop`) waits for the step in flight first, so it always sees finished steps.
    Off, `submit` steps and calls `done` at once: the same calls, no thread."""

    def __init__(self, learner: Any, done: Callable[[Update], None], *, background: bool) -> None:
        self._learner, self._done = learner, done
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="students", initializer=flush_subnormals) \
            if background else None
        self._pending: Future | None = None
        self.worker_s = 0.0  # seconds of steps on the worker thread

    def submit(self, batch: Any) -> None:
        self.wait()
        if self._pool is None:
            self._done(self._learner.step(batch))
        else:
            self._pending = self._pool.submit(self._timed_step, batch)

    def wait(self) -> None:
        """Finish the step in flight, if any (its error raised here), and hand over its Update."""
        pending, self._pending = self._pending, None
        if pending is not None:
            update, seconds = pending.result()
            self.worker_s += seconds
            self._done(update)

    def close(self) -> None:
        """The worker thread ended once its step in flight is done (the run is over: its Update is
        not handed over, nor its error raised)."""
        if self._pool is not None:
            self._pool.shutdown()

    def _timed_step(self, batch: Any) -> tuple[Update, float]:
        started = time.perf_counter()
        return self._learner.step(batch), time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:  # what the wrapper lacks: the learner's, once its step is done
        self.wait()
        return getattr(self._learner, name)
