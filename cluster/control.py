"""What a running driver takes from outside (stop, scale) and shows to it (status).

The driver's loop owns the run; this object is the only thing another thread touches: the Ray
actor hosting the run answers `status`, `scale` and `stop` from it while the loop goes on.
"""

from __future__ import annotations

import copy
import threading
import time


class RunControl:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._actors_wanted: tuple[int, str | None] | None = None  # (actors, a task's env or None: in all)
        self._teacher = None  # a checkpoint handed over by swap-teacher
        self._status: dict[str, object] = {"state": "starting", "phase": None, "updated": time.time()}

    # -- from outside ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def request_scale(self, actors: int, task: str | None = None) -> None:
        """`actors` rollout actors in all or, with `task` (an env), for that task of a multi-task run."""
        with self._lock:
            self._actors_wanted = (actors, task)

    def request_teacher(self, teacher) -> None:
        with self._lock:
            self._teacher = teacher

    def status(self) -> dict[str, object]:
        with self._lock:
            return copy.deepcopy(self._status)

    # -- from the driver's loop -----------------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def take_scale(self) -> tuple[int, str | None] | None:
        """The rollout actor count asked for since the last call, if any, and its task (None: in all)."""
        with self._lock:
            wanted, self._actors_wanted = self._actors_wanted, None
            return wanted

    def take_teacher(self):
        """A new teacher checkpoint handed over since the last call, if any."""
        with self._lock:
            teacher, self._teacher = self._teacher, None
            return teacher

    def publish(self, **fields: object) -> None:
        with self._lock:
            self._status.update(copy.deepcopy(fields), updated=time.time())
