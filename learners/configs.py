"""What the learners are configured with, checked as they are made; no torch, so the command line
resolves and refuses configurations without importing it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .specs import parse_spec

LOSSES = ("mse", "kl", "nll")
DEFAULT_TAU = 0.01


@dataclass(frozen=True)
class DQNConfig:
    net: str = "256x256"
    lr: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 128
    target_update: int = 200  # learner steps between hard target-network copies
    max_grad_norm: float = 10.0
    n_step: int = 1  # rewards summed per TD target (n-step returns; rollout actors sum them, up to an episode's end)

    def __post_init__(self) -> None:
        from .specs import parse_spec

        parse_spec(self.net)
        _positive("lr", self.lr)
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma {self.gamma} is not valid: expected a number in [0, 1]")
        _positive("batch_size", self.batch_size)
        _positive("target_update", self.target_update)
        _positive("max_grad_norm", self.max_grad_norm)
        if not (isinstance(self.n_step, int) and 1 <= self.n_step <= MAX_N_STEP):
            raise ValueError(f"n_step {self.n_step!r} is not valid: expected an integer in [1, {MAX_N_STEP}]")


MAX_N_STEP = 100  # a row's horizon is stored in an int8


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} {value} is not valid: expected a number > 0")


@dataclass(frozen=True)
class DistillConfig:
    students: tuple[str, ...] = ("16x16",)
    loss: str = "kl"
    tau: float = DEFAULT_TAU
    lr: float = 1e-3
    batch_size: int = 256

    def __post_init__(self) -> None:
        if not self.students:
            raise ValueError("student spec list is empty: give at least one network spec, e.g. '16x16'")
        seen: set[str] = set()
        for spec in self.students:
            parse_spec(spec)
            if spec in seen:
                raise ValueError(f"students name {spec!r} twice: give each student spec once")
            seen.add(spec)
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} is not known: expected one of {', '.join(LOSSES)}")
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"tau {self.tau} is not valid: expected a temperature > 0")
        if not self.lr > 0:
            raise ValueError(f"distill lr {self.lr} is not valid: expected a number > 0")
        if self.batch_size < 1:
            raise ValueError(f"distill batch_size {self.batch_size} is not valid: expected an integer >= 1")


def parse_students(text: str) -> tuple[str, ...]:
    """``"64x64,16x16"`` → ``("64x64", "16x16")``."""
    specs = tuple(s.strip() for s in text.split(",")) if text.strip() else ()
    if not specs:
        raise ValueError(f"student spec list {text!r} is empty: give network specs joined by ',', e.g. '64x64,16x16'")
    return specs
