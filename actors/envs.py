"""Gymnasium environments: validation of env ids and vector envs for rollouts and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from . import pixels


class EnvError(ValueError):
    """An env id that qdistill cannot train on."""


@dataclass(frozen=True)
class EnvInfo:
    env_id: str
    obs_shape: tuple[int, ...]
    n_actions: int
    reward_threshold: float | None
    max_episode_steps: int | None
    pixels: bool = False  # uint8 frames, channels first, for a conv net; float32 vectors otherwise

    @property
    def obs_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.pixels else np.dtype(np.float32)


def _register_optional_envs() -> None:
    try:  # Atari ships its ROMs with ale-py; optional.
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:
        pass


UNSUPPORTED = ("qdistill takes Box observations (vectors, or uint8/bool images) and Discrete, MultiDiscrete, "
               "MultiBinary, Tuple and Dict ones (flattened)")


def _flattens(space: gym.Space) -> bool:
    """Discrete, MultiDiscrete, MultiBinary, Box, and Tuple/Dict of those: one-hot and concatenated."""
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary, gym.spaces.Box)):
        return True
    if isinstance(space, (gym.spaces.Tuple, gym.spaces.Dict)):
        return all(_flattens(s) for s in (space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces))
    return False


def describe(env_id: str) -> EnvInfo:
    """Check that `env_id` exists, has a discrete action space and observations qdistill can store."""
    try:
        pixels.register(env_id)
    except pixels.MissingExtra as exc:
        raise EnvError(str(exc)) from None
    _register_optional_envs()
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        raise EnvError(
            f"unknown env id {env_id!r}: expected a registered Gymnasium id such as "
            "'CartPole-v1', 'LunarLander-v3', 'MinAtar/Breakout-v1' or 'ALE/Pong-v5'"
        ) from None
    try:
        env = make_vector_env(env_id, 1)
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        raise EnvError(f"env {env_id!r} cannot be created: {str(exc).splitlines()[0]}") from None
    try:
        action_space, obs_space = env.single_action_space, env.single_observation_space
    finally:
        env.close()
    if not isinstance(action_space, gym.spaces.Discrete):
        raise EnvError(
            f"env {env_id!r} has a {type(action_space).__name__} action space: "
            "DQN needs a Discrete action space (e.g. 'CartPole-v1', 'LunarLander-v3')"
        )
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvError(f"env {env_id!r} has a {obs_space} observation space: {UNSUPPORTED}; wrap the env in a "
                       "Gymnasium observation wrapper that gives one of those")
    obs_shape, is_pixels = tuple(obs_space.shape), pixels.is_image(obs_space)
    return EnvInfo(
        env_id=env_id,
        obs_shape=obs_shape,
        n_actions=int(action_space.n),
        reward_threshold=spec.reward_threshold,
        max_episode_steps=spec.max_episode_steps or (pixels.MINATAR_MAX_STEPS if pixels.family(env_id) == pixels.MINATAR
                                                     else None),
        pixels=is_pixels,
    )


def _wrappers(env_id: str) -> list:
    """What each sub-env of a SyncVectorEnv needs so that its observations come as stored."""
    if pixels.family(env_id) == pixels.MINATAR:
        return [lambda env: gym.wrappers.TimeLimit(_stored(env), pixels.MINATAR_MAX_STEPS)]
    return [_stored]


def _stored(env: gym.Env) -> gym.Env:
    """Images channels first as uint8, vectors as they are, spaces that flatten flattened (one-hot
    for Discrete); any other space is left for `describe` to refuse."""
    space = env.observation_space
    if pixels.is_image(space):
        return pixels.ChannelsFirst(env)
    if isinstance(space, gym.spaces.Box) or not _flattens(space):
        return env
    return gym.wrappers.FlattenObservation(env)


def make_vector_env(env_id: str, num_envs: int, dynamics: dict[str, float] | None = None) -> gym.vector.VectorEnv:
    """Native vectorised implementation where Gymnasium has one, SyncVectorEnv otherwise, with
    observations as qdistill stores them (`as_stored`): pixel envs as uint8 frames channels first
    (pixels.py), other spaces flattened; `dynamics` changes its physical parameters (a changing
    task, see `dynamics.py`).

    Autoreset is NEXT_STEP (the only mode every Gymnasium vector env supports): the step after
    an episode ends resets that sub-env, and its transition is not a real one.
    """
    from .dynamics import set_dynamics

    pixels.register(env_id)
    _register_optional_envs()
    if pixels.family(env_id) == pixels.ATARI:
        env = pixels.make_atari_vector(env_id, num_envs)
    elif gym.spec(env_id).vector_entry_point:
        env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    else:
        env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", wrappers=_wrappers(env_id))
    if dynamics:
        set_dynamics(env, dynamics)
    return env


def as_stored(obs: np.ndarray) -> np.ndarray:
    """Observations in the dtype rows store them in: uint8 frames as they are, anything else as float32."""
    obs = np.asarray(obs)
    return obs if obs.dtype == np.uint8 else obs.astype(np.float32, copy=False)
