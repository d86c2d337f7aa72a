"""Gymnasium environments: validation of env ids and vector envs for rollouts and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np


class EnvError(ValueError):
    """An env id that qdistill cannot train on."""


@dataclass(frozen=True)
class EnvInfo:
    env_id: str
    obs_shape: tuple[int, ...]
    n_actions: int
    reward_threshold: float | None
    max_episode_steps: int | None


def _register_optional_envs() -> None:
    try:  # Atari ships its ROMs with ale-py; optional.
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:
        pass


def describe(env_id: str) -> EnvInfo:
    """Check that `env_id` exists and has a discrete action space and a Box observation space."""
    _register_optional_envs()
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        raise EnvError(
            f"unknown env id {env_id!r}: expected a registered Gymnasium id such as "
            "'CartPole-v1', 'Acrobot-v1' or 'LunarLander-v3'"
        ) from None
    try:
        env = gym.make(env_id)
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        raise EnvError(f"env {env_id!r} cannot be created: {str(exc).splitlines()[0]}") from None
    try:
        action_space, obs_space = env.action_space, env.observation_space
    finally:
        env.close()
    if not isinstance(action_space, gym.spaces.Discrete):
        raise EnvError(
            f"env {env_id!r} has a {type(action_space).__name__} action space: "
            "DQN needs a Discrete action space (e.g. 'CartPole-v1', 'LunarLander-v3')"
        )
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvError(
            f"env {env_id!r} has a {type(obs_space).__name__} observation space: expected a Box"
        )
    if len(obs_space.shape) > 1:
        raise EnvError(
            f"env {env_id!r} has image observations of shape {tuple(obs_space.shape)}: qdistill's Q-networks are "
            "MLPs over vector observations; expected a 1-D observation space such as 'CartPole-v1' "
            "(for Atari, an '-ram' id)"
        )
    return EnvInfo(
        env_id=env_id,
        obs_shape=tuple(obs_space.shape),
        n_actions=int(action_space.n),
        reward_threshold=spec.reward_threshold,
        max_episode_steps=spec.max_episode_steps,
    )


def make_vector_env(env_id: str, num_envs: int, dynamics: dict[str, float] | None = None) -> gym.vector.VectorEnv:
    """Native vectorised implementation where Gymnasium has one, SyncVectorEnv otherwise;
    `dynamics` changes its physical parameters (a changing task, see `dynamics.py`).

    Autoreset is NEXT_STEP (the only mode every Gymnasium vector env supports): the step after
    an episode ends resets that sub-env, and its transition is not a real one.
    """
    from .dynamics import set_dynamics

    _register_optional_envs()
    mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode)
    if dynamics:
        set_dynamics(env, dynamics)
    return env


def as_float32(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs, dtype=np.float32)
