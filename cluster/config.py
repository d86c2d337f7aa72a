"""Run configuration: frozen dataclasses, validated in one place, with per-env presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..learners.dqn import DQNConfig


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class ExplorationConfig:
    """ε-greedy exploration: ε falls linearly from `start` to `end` over `steps` env steps."""

    start: float = 1.0
    end: float = 0.02
    steps: int = 10_000

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"epsilon {name} {value} is not valid: expected a number in [0, 1]")
        _check(self.steps >= 0, f"epsilon steps {self.steps} is not valid: expected an integer >= 0")


@dataclass(frozen=True)
class TeacherRunConfig:
    """Everything `qdistill train-teacher` needs; the CLI maps its flags one-to-one onto it."""

    env: str
    out: str
    steps: int | None = None  # env-step budget
    time: float | None = None  # wall-clock budget in seconds
    target_return: float | None = None  # stop once greedy evaluation reaches it
    seed: int = 0
    init: str | None = None  # start from this teacher checkpoint
    address: str | None = None  # None: an embedded local Ray runtime
    actors: int = 2
    envs_per_actor: int = 8
    steps_per_call: int = 32  # vector steps per collect call
    actor_cpus: float = 1.0
    learner_threads: int = 1  # torch threads for the learner; small MLPs lose to thread hand-offs
    shards: int = 1
    buffer_capacity: int = 100_000
    learning_starts: int = 1_000
    replay_ratio: float = 0.25  # learner steps per env step
    updates_per_sample: int = 16  # minibatches fetched per buffer call
    publish_every: int = 32  # learner steps between weight versions
    eval_every: int = 2_000  # env steps between greedy evaluations
    eval_episodes: int = 20
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)

    def __post_init__(self) -> None:
        _check(self.steps is None or self.steps > 0,
               f"steps budget {self.steps} is not valid: expected an integer > 0")
        _check(self.time is None or (self.time > 0 and math.isfinite(self.time)),
               f"time budget {self.time} is not valid: expected a number of seconds > 0")
        _check(self.steps is not None or self.time is not None,
               "no budget: give steps (env steps) or time (seconds)")
        _check(self.target_return is None or math.isfinite(self.target_return),
               f"target return {self.target_return} is not valid: expected a finite number")
        for name in ("actors", "envs_per_actor", "steps_per_call", "shards", "buffer_capacity",
                     "updates_per_sample", "publish_every", "learner_threads", "eval_every", "eval_episodes"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} {value} is not valid: expected an integer >= 1")
        _check(self.seed >= 0, f"seed {self.seed} is not valid: expected an integer >= 0")
        _check(self.learning_starts >= 0, f"learning_starts {self.learning_starts} is not valid: expected an integer >= 0")
        _check(self.replay_ratio > 0, f"replay_ratio {self.replay_ratio} is not valid: expected a number > 0")
        _check(self.actor_cpus >= 0, f"actor_cpus {self.actor_cpus} is not valid: expected a number >= 0")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# Per-env presets, in the spirit of RL Baselines3 Zoo: measured on a 2-core machine
# (see benchmarks/teacher_time.py). Flags override them.
PRESETS: dict[str, dict[str, object]] = {
    "CartPole-v1": {
        "steps": 300_000,
        "dqn": {"net": "256x256", "lr": 5e-4, "batch_size": 64, "target_update": 250},
        "exploration": {"end": 0.02, "steps": 10_000},
        "replay_ratio": 0.25,
        "eval_every": 2_000,
    },
    "Acrobot-v1": {
        "steps": 300_000,
        "dqn": {"net": "256x256", "lr": 6.3e-4, "batch_size": 128, "target_update": 250},
        "exploration": {"end": 0.05, "steps": 20_000},
        "replay_ratio": 0.25,
        "eval_every": 5_000,
    },
    "LunarLander-v3": {
        "steps": 1_500_000,
        "buffer_capacity": 200_000,
        "learning_starts": 5_000,
        "dqn": {"net": "256x256", "lr": 6.3e-4, "batch_size": 128, "target_update": 250},
        "exploration": {"end": 0.05, "steps": 50_000},
        "replay_ratio": 0.25,
        "eval_every": 20_000,
    },
}
DEFAULT_PRESET: dict[str, object] = {"steps": 500_000}


def teacher_config(env: str, out: str, **overrides: object) -> TeacherRunConfig:
    """Preset for `env`, then `overrides` (None means "not given"); validated on construction.

    Overrides for DQN and exploration fields go in `dqn` / `exploration` dicts.
    """
    preset = PRESETS.get(env, DEFAULT_PRESET)
    flat = {k: v for k, v in preset.items() if k not in ("dqn", "exploration")}
    given = {k: v for k, v in overrides.items() if v is not None and k not in ("dqn", "exploration")}
    if given.get("time") is not None and "steps" not in given:
        flat.pop("steps", None)  # a time budget alone replaces the preset's step budget
    flat.update(given)
    dqn = DQNConfig(**{**preset.get("dqn", {}), **_given(overrides.get("dqn"))})
    exploration = ExplorationConfig(**{**preset.get("exploration", {}), **_given(overrides.get("exploration"))})
    return TeacherRunConfig(env=env, out=out, dqn=dqn, exploration=exploration, **flat)


def _given(d: object) -> dict[str, object]:
    return {k: v for k, v in (d or {}).items() if v is not None}  # type: ignore[union-attr]


