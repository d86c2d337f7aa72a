"""A changing task: an env's physical parameters (CartPole's pole length or gravity, Acrobot's link
masses, …) set while it runs, so a teacher must adapt and its students follow.

The run changes the dynamics of every rollout actor's and the evaluator's envs at one of the run's
env steps (`--change-at`, `--change`); `ChangingDynamics` is the same change as a Gymnasium wrapper
that counts its own steps, for use outside a run.
"""

from __future__ import annotations

import math
from typing import Callable

import gymnasium as gym
import numpy as np

Change = dict[str, float]

# attributes an env computes from others in its constructor: recomputed after a change
_DERIVED: dict[str, Callable[[object], float]] = {
    "total_mass": lambda env: env.masspole + env.masscart,
    "polemass_length": lambda env: env.masspole * env.length,
}


def _bases(env: gym.Env | gym.vector.VectorEnv) -> list[object]:
    """The objects holding the physics: each sub-env's unwrapped env, or a native vector env itself."""
    if isinstance(env, gym.vector.SyncVectorEnv):
        return [e.unwrapped for e in env.envs]
    return [env.unwrapped]


def parameters(env: gym.Env | gym.vector.VectorEnv) -> dict[str, float]:
    """The parameters a change may set: the env's plain float attributes, less derived ones."""
    base = _bases(env)[0]
    names = [n for n in dir(base) if not n.startswith("_") and n not in _DERIVED]
    return {n: getattr(base, n) for n in sorted(names) if type(getattr(base, n, None)) is float}


def check_change(env_id: str, change: Change, env: gym.Env | gym.vector.VectorEnv | None = None) -> None:
    """Refuse a change naming a parameter the env (made from `env_id` unless given) does not
    have, or a value that is not finite."""
    if env is None:
        made = gym.make(env_id)
        try:
            return check_change(env_id, change, made)
        finally:
            made.close()
    classic = type(_bases(env)[0]).__module__.startswith("gymnasium.envs.classic_control")
    known = parameters(env) if classic else {}  # others fix their physics when made (Box2D worlds)
    if not known:
        raise ValueError(f"env {env_id!r} has no dynamics parameters to change: "
                         "expected a classic-control env such as 'CartPole-v1' or 'Acrobot-v1'")
    for name, value in change.items():
        if name not in known:
            raise ValueError(f"dynamics parameter {name!r} is not known for {env_id}: expected one of "
                             f"{', '.join(known)}")
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"dynamics parameter {name}={value!r} is not valid: expected a finite number")


def set_dynamics(env: gym.Env | gym.vector.VectorEnv, change: Change) -> None:
    """Set the parameters on `env` (every sub-env of a vector env); episodes carry on under them."""
    for base in _bases(env):
        for name, value in change.items():
            setattr(base, name, float(value))
        for name, derive in _DERIVED.items():
            if hasattr(base, name):
                setattr(base, name, float(derive(base)))


class ChangingDynamics(gym.Wrapper):
    """An env whose dynamics change after `at_step` of its own steps (counted across episodes)."""

    def __init__(self, env: gym.Env, change: Change, at_step: int) -> None:
        super().__init__(env)
        if at_step < 0:
            raise ValueError(f"at_step {at_step} is not valid: expected an integer >= 0")
        check_change(env.spec.id if env.spec else type(env.unwrapped).__name__, change, env)
        self.change, self.at_step = dict(change), at_step
        self.steps = 0
        self.changed = at_step == 0
        if self.changed:
            set_dynamics(env, self.change)

    def step(self, action: np.ndarray | int):
        result = self.env.step(action)
        self.steps += 1
        if not self.changed and self.steps >= self.at_step:
            set_dynamics(self.env, self.change)
            self.changed = True
        return result
