"""Versioned weights: the learner publishes (version, weights); readers pull when the version moves."""

from __future__ import annotations

import numpy as np

Weights = dict[str, np.ndarray]


class ParameterServer:
    """Holds the newest published weights. `pull(have)` returns them only if newer than `have`."""

    def __init__(self) -> None:
        self.version = -1
        self.weights: Weights | None = None
        self.pulls = 0  # pulls answered

    def publish(self, version: int, weights: Weights) -> None:
        if version <= self.version:
            raise ValueError(f"weights version {version} is not newer than the published {self.version}")
        self.version, self.weights = version, weights

    def pull(self, have_version: int) -> tuple[int, Weights | None]:
        self.pulls += 1
        if self.version > have_version:
            return self.version, self.weights
        return self.version, None

    def pulls_answered(self) -> int:
        return self.pulls
