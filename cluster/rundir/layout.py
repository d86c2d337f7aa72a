"""The run directory: every file name in one place, the checks on a new one, and the writer.

    RUN/config.json            the resolved config          RUN/summary.json   the run's figures
    RUN/metrics.jsonl          one record per log line      RUN/tensorboard/   the same, as events
    RUN/report.md, RUN/*.png   the report and its plots     RUN/export/        `qdistill export`'s files
    RUN/teacher/               a teacher trained first by `qdistill run` (itself a run directory)
    RUN/checkpoints/state.pt   the resumable state
    RUN/checkpoints/teacher.pt               the teacher a distillation run distils (kept)
    RUN/checkpoints/teacher-{best,last}.pt   a teacher run's teachers
    RUN/checkpoints/student-NAME-{best,last}.pt   each student (NAME: its network spec)

Run directories written before the names were made one scheme keep working: `teacher_best.pt`
and `teacher_last.pt` are read where the new names are missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ...learners import checkpoint
from .metrics import MetricsLog

STUDENT_PREFIX = "student-"
OLD_NAMES = {"teacher-best.pt": "teacher_best.pt", "teacher-last.pt": "teacher_last.pt"}


class RunDirError(ValueError):
    """An output directory that cannot hold a run."""


class RunPaths:
    """Where each file of a run directory is (nothing is opened or created)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.config = self.path / "config.json"
        self.summary = self.path / "summary.json"
        self.metrics = self.path / "metrics.jsonl"
        self.tensorboard = self.path / "tensorboard"
        self.report = self.path / "report.md"
        self.export = self.path / "export"
        self.teacher_dir = self.path / "teacher"
        self.state = self.checkpoints / "state.pt"
        self.teacher = self.checkpoints / "teacher.pt"

    def teacher_checkpoint(self, which: str) -> Path:
        """A teacher run's `best` or `last` teacher, under its old name if that is what exists."""
        path = self.checkpoints / f"teacher-{which}.pt"
        old = self.checkpoints / OLD_NAMES[path.name]
        return old if not path.exists() and old.exists() else path

    def student_checkpoint(self, name: str, which: str) -> Path:
        return self.checkpoints / f"{STUDENT_PREFIX}{name}-{which}.pt"

    def students(self) -> list[str]:
        """The names of the students with a best checkpoint, sorted."""
        return sorted(p.name[len(STUDENT_PREFIX):-len("-best.pt")]
                      for p in self.checkpoints.glob(f"{STUDENT_PREFIX}*-best.pt"))

    def load_student(self, name: str, teacher: checkpoint.Checkpoint) -> checkpoint.Checkpoint:
        """A student's best checkpoint, checked to be of the teacher's env."""
        return checkpoint.load(self.student_checkpoint(name, "best"), env_id=teacher.env_id)


def check_writable(out: str | Path) -> None:
    """Refuse an output directory that cannot be created or written, before anything starts.

    Leaves nothing behind: walks up to the nearest existing ancestor and tries a write there.
    """
    path = Path(out).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RunDirError(f"output directory {str(out)!r} is not writable: {str(probe)!r} is not a directory")
    if path.exists() and any(path.iterdir()):
        raise RunDirError(f"output directory {str(out)!r} is not empty: give a new or empty directory")
    try:  # a real write, not os.access: root passes permission checks but not read-only mounts
        os.rmdir(tempfile.mkdtemp(prefix=".qdistill-probe-", dir=probe))
    except OSError as exc:
        raise RunDirError(f"output directory {str(out)!r} is not writable: {exc.strerror} in {str(probe)!r}") from None


class RunDir(RunPaths):
    """A run directory being written: checkpoints, JSON files and the metrics log."""

    def __init__(self, out: str | Path, name: str | None = None) -> None:
        """`name`: what the run's Ray metrics are tagged with (default: the directory's name, the
        run's name); a resumed run appends to metrics.jsonl and starts a new event file."""
        super().__init__(out)
        self.name = name or self.path.absolute().name
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.metrics_log = MetricsLog(self.metrics, self.tensorboard, self.name)

    def save_checkpoint(self, path: Path, ckpt: checkpoint.Checkpoint) -> str:
        return str(checkpoint.save(path, ckpt))

    def save_student(self, name: str, which: str, *, env: str, obs_shape: tuple[int, ...], n_actions: int,
                     version: int, weights: dict[str, np.ndarray]) -> str:
        """checkpoints/student-NAME-{best,last}.pt; NAME is the student's network spec."""
        ckpt = checkpoint.Checkpoint(name, obs_shape, n_actions, env, version, weights)
        return self.save_checkpoint(self.student_checkpoint(name, which), ckpt)

    def save_state(self, state: dict) -> None:
        checkpoint.save_state(self.state, state)

    def write_json(self, path: Path, payload: dict[str, object]) -> Path:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        os.replace(tmp, path)
        return path

    def write_config(self, config: dict[str, object]) -> Path:
        """config.json, and the same text in TensorBoard."""
        target = self.write_json(self.config, config)
        self.metrics_log.config(target.read_text())
        return target

    def log(self, metrics: dict[str, float | int]) -> None:
        self.metrics_log.log(metrics)

    def close(self) -> None:
        self.metrics_log.close()
