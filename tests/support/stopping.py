"""A `qdistill` command in a process of its own, stopped by a signal at a chosen moment, as a
scheduler or a terminal stops it: shared by tests/e2e/test_signals.py and benchmarks/stop_latency.py.

    cli = Cli(["train-teacher", ...], sigint="ignored")
    cli.wait_for(lambda: ray_starting(cli.proc.pid))
    cli.signal("SIGTERM")
    ended = cli.finish()           # exit status, output, seconds from the signal to the exit

Moments are told by what the run leaves behind (a Ray head process under the command, metrics,
checkpoint and summary files newer than the command's start), never by sleeping.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HANG_S = 120.0  # a command that has not ended this long after its signal is hung


@dataclass(frozen=True)
class Ended:
    returncode: int
    stdout: str
    stderr: str
    after_signal_s: float  # from the signal to the process's exit
    leftovers: list[str]  # processes it had started that were still there 15 s after it ended (killed then)


class Cli:
    """`python -m qdistill.cluster.cli ARGS`; `sigint`: "default" (as a terminal gives it) or
    "ignored" (as a script's background job inherits it)."""

    def __init__(self, args: list[str], *, sigint: str = "default") -> None:
        disposition = {"default": signal.SIG_DFL, "ignored": signal.SIG_IGN}[sigint]
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "qdistill.cluster.cli", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True,  # signals reach this process alone
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))
        self.signalled_at: float | None = None
        self.signalled_wall = 0.0
        self.family: list[psutil.Process] = []

    def wait_for(self, moment, timeout: float = 240.0) -> None:
        """Until `moment()` is true; fails with the command's output if it ends or times out first."""
        deadline = time.monotonic() + timeout
        while not moment():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                out, err = self.proc.communicate()
                raise AssertionError(f"the moment never came (exit {self.proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}")
            time.sleep(0.02)

    def signal(self, name: str) -> None:
        self.family = _family(self.proc.pid)
        self.signalled_at, self.signalled_wall = time.monotonic(), time.time()
        self.proc.send_signal(getattr(signal, name))

    def finish(self) -> Ended:
        try:
            out, err = self.proc.communicate(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"still running {HANG_S:.0f} s after the signal:\n{err[-4000:]}") from None
        ended = time.monotonic()
        _, alive = psutil.wait_procs(self.family, timeout=15)
        left = [name for name in map(_kill, alive) if name]
        return Ended(self.proc.returncode, out, err, ended - (self.signalled_at or ended), left)

    def kill(self) -> None:
        """The command and whatever it started (its embedded Ray runtime), by PID."""
        for p in _family(self.proc.pid):
            _kill(p)


def _family(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill(p: psutil.Process) -> str | None:
    """Kill -9; its command line if it was still there."""
    try:
        name = " ".join(p.cmdline()[:3])
        p.kill()
        return name
    except psutil.NoSuchProcess:
        return None


def ray_starting(pid: int) -> bool:
    """The command's embedded Ray runtime is starting: its GCS server is there, its driver is not
    connected yet (no raylet has registered a worker for it: the run's actor does not exist)."""
    try:
        names = [" ".join(c.cmdline()) for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    return any("gcs_server" in n for n in names) and not any("RunActor" in n or "default_worker" in n for n in names)


def learning(out: Path) -> bool:
    """The run in `out` has logged learner steps."""
    metrics = out / "metrics.jsonl"
    return metrics.is_file() and any(json.loads(line).get("learner/steps", 0) > 0
                                     for line in metrics.read_text().splitlines() if line.strip())


def newer(path: Path, than: float) -> bool:
    """`path` was (re)written after `than` (epoch seconds)."""
    try:
        return path.stat().st_mtime > than
    except FileNotFoundError:
        return False


def final_evaluation(out: Path, since: float) -> bool:
    """The distillation run in `out` wrote its students' last checkpoints after `since`: its state and
    last checkpoints are written, the final evaluation has begun."""
    return any(newer(p, since) for p in (out / "checkpoints").glob("student-*-last.pt"))
