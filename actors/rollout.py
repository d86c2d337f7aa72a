"""Rollout: steps a vector env with an ε-greedy policy and cuts the steps into TransitionBatches."""

from __future__ import annotations

import numpy as np

from ..learners.batch import BEHAVIOUR_TEACHER, TransitionBatch
from ..learners.networks import GreedyPolicy
from .envs import as_float32, make_vector_env


class Rollout:
    """Plain class: the same code runs in-process (tests) and inside a RolloutActor."""

    def __init__(
        self,
        env_id: str,
        *,
        net: str,
        obs_shape: tuple[int, ...],
        n_actions: int,
        num_envs: int = 8,
        seed: int = 0,
        actor_id: int = 0,
    ) -> None:
        self.env = make_vector_env(env_id, num_envs)
        self.policy = GreedyPolicy(net, obs_shape, n_actions)
        self.n_actions = n_actions
        self.num_envs = num_envs
        self.actor_id = actor_id
        self.rng = np.random.default_rng(seed)
        self.obs = as_float32(self.env.reset(seed=seed)[0])
        # True where the previous step ended an episode: this step is the autoreset step.
        self.resetting = np.zeros(num_envs, dtype=bool)
        self.episode_return = np.zeros(num_envs, dtype=np.float64)
        self.episode_length = np.zeros(num_envs, dtype=np.int64)
        self.env_steps = 0

    def load_weights(self, version: int, weights: dict[str, np.ndarray]) -> None:
        self.policy.load(version, weights)

    def _act(self, epsilon: float) -> np.ndarray:
        greedy = self.policy.act(self.obs)
        explore = self.rng.random(self.num_envs) < epsilon
        random_actions = self.rng.integers(0, self.n_actions, self.num_envs)
        return np.where(explore, random_actions, greedy).astype(np.int64)

    def collect(self, num_steps: int, epsilon: float) -> tuple[TransitionBatch, list[tuple[float, int]]]:
        """Step every sub-env `num_steps` times; returns the real transitions and finished episodes."""
        parts: list[TransitionBatch] = []
        episodes: list[tuple[float, int]] = []
        for _ in range(num_steps):
            actions = self._act(epsilon)
            next_obs, rewards, terms, truncs, _ = self.env.step(actions)
            next_obs = as_float32(next_obs)
            keep = ~self.resetting
            self.episode_return += np.where(keep, rewards, 0.0)
            self.episode_length += keep
            parts.append(
                TransitionBatch(
                    observations=self.obs[keep],
                    actions=actions[keep],
                    rewards=np.asarray(rewards, dtype=np.float32)[keep],
                    next_observations=next_obs[keep],
                    terminations=np.asarray(terms, dtype=bool)[keep],
                    truncations=np.asarray(truncs, dtype=bool)[keep],
                    behaviour=np.full(int(keep.sum()), BEHAVIOUR_TEACHER, dtype=np.int8),
                    actor_id=np.full(int(keep.sum()), self.actor_id, dtype=np.int32),
                )
            )
            done = keep & (np.asarray(terms) | np.asarray(truncs))
            for i in np.flatnonzero(done):
                episodes.append((float(self.episode_return[i]), int(self.episode_length[i])))
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            self.resetting = done
            self.obs = next_obs
            self.env_steps += int(keep.sum())
        return TransitionBatch.concat(parts), episodes

    def close(self) -> None:
        self.env.close()
