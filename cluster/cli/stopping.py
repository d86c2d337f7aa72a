"""Stopping a run as schedulers and terminals do: SIGTERM (Kubernetes, `docker stop`, systemd,
`ray job stop`) and SIGINT (Ctrl-C), whatever disposition the process inherited (a script started
in the background inherits SIGINT ignored), both ask the run to stop as Ctrl-C always did: final
checkpoints, state, summary and report written, exit 0. A second signal stops waiting.

The handler only takes note (printing from a signal handler could land inside another write to the
same stream); whoever waits on the run looks at `requested` and asks the run's actor to stop."""

from __future__ import annotations

import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopWaiting(Exception):
    """A second stop signal: stop waiting for the run to write its final files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_status = 128 + signum  # as a shell reports a process ended by that signal


class StopSignals:
    """Installed for the life of `qdistill run` / `train-teacher` (a context manager): the first
    SIGTERM or SIGINT is noted, the second raises StopWaiting in the main thread."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.announced = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        self.received.append(signal.Signals(signum).name)
        if len(self.received) > 1:
            raise StopWaiting(signum)

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def announce(self) -> None:
        """The one line saying what the first signal does, once."""
        if self.requested and not self.announced:
            self.announced = True
            again = "Ctrl-C" if self.received[0] == "SIGINT" else self.received[0]
            print(f"\nstopping ({self.received[0]}): writing final checkpoints ({again} again to stop waiting)",
                  file=sys.stderr, flush=True)
