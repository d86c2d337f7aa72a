"""The run directory: resolved config, metrics (JSON lines, TensorBoard events), checkpoints, summary.

Every logged record goes out three ways from here: a line of metrics.jsonl, scalars in
tensorboard/, and the core figures as Ray metrics (actors/metrics.py) for a cluster's Prometheus."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..actors.metrics import LearnerMetrics
from ..learners import checkpoint
from .tensorboard import TensorBoardLog


class RunDirError(ValueError):
    """An output directory that cannot hold a run."""


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


class RunDir:
    def __init__(self, out: str | Path, name: str | None = None) -> None:
        """`name`: what the run's Ray metrics are tagged with (default: the directory's name, the
        run's name); a resumed run appends to metrics.jsonl and starts a new event file."""
        self.path = Path(out)
        self.name = name or self.path.absolute().name
        self.checkpoints = self.path / "checkpoints"
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.path / "metrics.jsonl", "a", buffering=1)
        self._tensorboard = TensorBoardLog(self.path / "tensorboard")
        self._ray_metrics = LearnerMetrics(self.name)
        self._t0 = time.time()

    def save_student(self, name: str, which: str, *, env: str, obs_shape: tuple[int, ...], n_actions: int,
                     version: int, weights: dict[str, np.ndarray]) -> str:
        """checkpoints/student-NAME-{best,last}.pt; NAME is the student's network spec."""
        ckpt = checkpoint.Checkpoint(name, obs_shape, n_actions, env, version, weights)
        return str(checkpoint.save(self.checkpoints / f"student-{name}-{which}.pt", ckpt))

    def write_json(self, name: str, payload: dict[str, object]) -> Path:
        target = self.path / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        os.replace(tmp, target)
        return target

    def write_config(self, config: dict[str, object]) -> Path:
        """config.json, and the same text in TensorBoard."""
        target = self.write_json("config.json", config)
        self._tensorboard.config(target.read_text())
        return target

    def log(self, metrics: dict[str, float | int]) -> None:
        record = {"time": round(time.time() - self._t0, 3), **metrics}
        self._metrics.write(json.dumps(record) + "\n")
        self._tensorboard.scalars(record)
        self._ray_metrics.record(record)

    def close(self) -> None:
        self._metrics.close()
        self._tensorboard.close()
