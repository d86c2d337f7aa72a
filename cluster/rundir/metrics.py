"""Every logged record goes out three ways from here: a line of metrics.jsonl, scalars in
tensorboard/, and the core figures as Ray metrics (defined in actors/metrics.py, which the rollout
actors record too) for a cluster's Prometheus."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...actors.metrics import LearnerMetrics
from .tensorboard import TensorBoardLog


class MetricsLog:
    def __init__(self, jsonl: Path, tensorboard: Path, name: str) -> None:
        """`name`: the run's name, which its Ray metrics are tagged with."""
        self._jsonl = open(jsonl, "a", buffering=1)
        self._tensorboard = TensorBoardLog(tensorboard)
        self._ray = LearnerMetrics(name)
        self._t0 = time.time()

    def config(self, text: str) -> None:
        self._tensorboard.config(text)

    def log(self, metrics: dict[str, float | int]) -> None:
        record = {"time": round(time.time() - self._t0, 3), **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        self._tensorboard.scalars(record)
        self._ray.record(record)

    def close(self) -> None:
        self._jsonl.close()
        self._tensorboard.close()

