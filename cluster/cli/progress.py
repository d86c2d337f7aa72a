"""Following a run: a live progress line on a terminal (periodic plain lines when output is not a
terminal), and a stop signal (Ctrl-C, SIGTERM) asking the run to stop."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import ray

from .stopping import StopSignals


class Progress:
    def __init__(self, total: float, unit: str, *, stream: TextIO = sys.stderr, every_s: float = 0.25) -> None:
        self.total = total
        self.unit = unit
        self.stream = stream
        self.tty = stream.isatty()
        self.every_s = every_s if self.tty else 10.0
        self.last = 0.0

    def update(self, done: float, fields: dict[str, str], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        frac = min(1.0, done / self.total) if self.total else 0.0
        bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
        text = f"[{bar}] {done:,.0f}/{self.total:,.0f} {self.unit}  " + "  ".join(f"{k} {v}" for k, v in fields.items())
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def follow(actor: ray.actor.ActorHandle, ref: ray.ObjectRef, signals: StopSignals, *,
           show_progress: bool) -> dict[str, object]:
    """Wait for the run's summary, drawing its progress; the first stop signal (Ctrl-C, SIGTERM)
    asks the run to stop (final checkpoints and report are still written), a second one stops
    waiting (StopWaiting)."""
    progress: Progress | None = None
    phase = None
    asked = False
    while True:
        if signals.requested and not asked:
            signals.announce()
            actor.stop.remote()
            asked = True
        ready, _ = ray.wait([ref], timeout=0.5)
        if ready:
            break
        if not show_progress:
            continue
        status = ray.get(actor.status.remote())
        if status.get("phase") != phase and status.get("progress"):
            if progress:
                progress.close()
            phase = status["phase"]
            if phase == "teacher" and status["command"] == "run":
                print(f"training a teacher first, into {status['out']}/teacher", file=sys.stderr)
            progress = Progress(status["progress"]["total"] or 0, status["progress"]["unit"])
        if progress and status.get("phase") == phase:
            progress.update(status["progress"]["done"], status["fields"])
    if progress:
        progress.close()
    return ray.get(ref)
