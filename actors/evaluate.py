"""Greedy evaluation: N episodes of a policy, run side by side in one vector env."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .envs import as_stored, make_vector_env

MAX_FINAL_EPISODES = 1_000  # the most a final evaluation plays per policy to narrow its intervals (`ci_width`)


@dataclass(frozen=True)
class EvalResult:
    returns: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    @property
    def episodes(self) -> int:
        return len(self.returns)

    def __add__(self, more: "EvalResult") -> "EvalResult":
        """These episodes and `more`'s, in that order (seeds continuing)."""
        return EvalResult(self.returns + more.returns)


def evaluate(env_id: str, act: Callable[[np.ndarray], np.ndarray], *, episodes: int, seed: int,
             dynamics: dict[str, float] | None = None) -> EvalResult:
    """Run `episodes` greedy episodes (one per sub-env, seeds seed, seed+1, …) to their first end."""
    env = make_vector_env(env_id, episodes, dynamics)
    try:
        obs = as_stored(env.reset(seed=seed)[0])
        returns = np.zeros(episodes, dtype=np.float64)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            obs, rewards, terms, truncs, _ = env.step(act(obs))
            obs = as_stored(obs)
            returns += np.where(running, rewards, 0.0)
            running &= ~(np.asarray(terms) | np.asarray(truncs))
        return EvalResult(tuple(float(r) for r in returns))
    finally:
        env.close()


def visited_states(env_id: str, act: Callable[[np.ndarray], np.ndarray], *, num_states: int, seed: int,
                   num_envs: int = 8, dynamics: dict[str, float] | None = None) -> np.ndarray:
    """States a policy visits, `num_states` of them, from envs seeded away from training."""
    env = make_vector_env(env_id, num_envs, dynamics)
    try:
        obs = as_stored(env.reset(seed=seed)[0])
        states = []
        while sum(len(s) for s in states) < num_states:
            states.append(obs)
            obs = as_stored(env.step(act(obs))[0])
        return np.concatenate(states)[:num_states]
    finally:
        env.close()
