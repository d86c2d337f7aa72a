"""Pixel environments: MinAtar and Atari frames as qdistill stores them, uint8 0..255 channels first.

MinAtar's bool HWC grids become uint8 CHW (0 or 255); Atari (`ALE/...` ids) gets the DQN
preprocessing of Mnih et al. 2015 — 84×84 greyscale, 4 frames skipped with max pooling over the
last two, 4 frames stacked, up to 30 no-op starts. Rewards stay the raw game score and an episode
ends at game over; the teacher's TD target clips rewards and ends at each life lost (`TDRules`),
so returns are reported on the score people quote."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

MINATAR, ATARI = "MinAtar/", "ALE/"
EXTRAS = {MINATAR: ("minatar", "minatar"), ATARI: ("atari", "ale_py")}  # id prefix: (qdistill extra, module)
MINATAR_MAX_STEPS = 10_000  # MinAtar sets no time limit; a greedy policy could play forever
ATARI_STACK, ATARI_SIZE, ATARI_SKIP, ATARI_NOOPS = 4, 84, 4, 30
ATARI_STICKY = 0.25  # ALE v5's repeat-action probability (Machado et al. 2018)


class MissingExtra(ImportError):
    """A pixel env whose package is not installed."""


def family(env_id: str) -> str | None:
    """MINATAR, ATARI, or None for any other env id."""
    return next((prefix for prefix in EXTRAS if env_id.startswith(prefix)), None)


def register(env_id: str) -> None:
    """Make the ids of `env_id`'s family known to Gymnasium; a missing package is one line naming the extra."""
    prefix = family(env_id)
    if prefix is None:
        return
    extra, module = EXTRAS[prefix]
    try:
        if prefix == MINATAR:
            logging.getLogger().disabled, was = True, logging.getLogger().disabled  # "cannot import seaborn": renders only
            try:
                import minatar.gym
            finally:
                logging.getLogger().disabled = was
            if "MinAtar/Breakout-v1" not in gym.registry:
                minatar.gym.register_envs()
        else:
            import ale_py

            gym.register_envs(ale_py)
    except ImportError:
        raise MissingExtra(f"env {env_id!r} needs the {module} package: pip install 'qdistill[{extra}]'") from None


@dataclass(frozen=True)
class TDRules:
    """How the teacher's TD target reads a transition: rewards clipped to their sign, and an end at
    each life lost (Atari's DQN convention). The rows keep the raw reward otherwise."""

    clip_rewards: bool = False
    life_loss: bool = False


def td_rules(env_id: str) -> TDRules:
    return TDRules(clip_rewards=True, life_loss=True) if family(env_id) == ATARI else TDRules()


class ChannelsFirst(gym.ObservationWrapper):
    """Image observations (bool, or uint8 HWC / HW) as uint8 CHW 0..255."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        self.channels_last = len(space.shape) == 3
        self.scale = 255 if space.dtype == np.bool_ else 1
        h, w = space.shape[:2]
        c = space.shape[2] if self.channels_last else 1
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        frame = np.asarray(obs).astype(np.uint8) * np.uint8(self.scale)
        return np.ascontiguousarray(frame.transpose(2, 0, 1)) if self.channels_last else frame[None]


def is_image(space: gym.Space) -> bool:
    """A Box of bool or uint8 with 2 or 3 dimensions: frames, for a conv net."""
    return isinstance(space, gym.spaces.Box) and space.dtype in (np.bool_, np.uint8) and len(space.shape) in (2, 3)


def atari_wrappers(env: gym.Env) -> gym.Env:
    """The DQN preprocessing for one ALE env made with frameskip=1."""
    env = gym.wrappers.AtariPreprocessing(env, noop_max=ATARI_NOOPS, frame_skip=ATARI_SKIP, screen_size=ATARI_SIZE,
                                          terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    return gym.wrappers.FrameStackObservation(env, ATARI_STACK)


def make_atari_vector(env_id: str, num_envs: int, *, native: bool = True) -> gym.vector.VectorEnv:
    """`num_envs` preprocessed ALE envs: ale-py's own vector env (C++ preprocessing and stepping, one
    thread here: a rollout actor holds one CPU) or Gymnasium's wrappers in a SyncVectorEnv."""
    if native:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", num_threads=1,
                            repeat_action_probability=ATARI_STICKY, img_height=ATARI_SIZE, img_width=ATARI_SIZE,
                            stack_num=ATARI_STACK, frameskip=ATARI_SKIP, noop_max=ATARI_NOOPS, maxpool=True,
                            grayscale=True, episodic_life=False, life_loss_info=False, reward_clipping=False,
                            use_fire_reset=False)
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", wrappers=[atari_wrappers],
                        vector_kwargs={}, frameskip=1, repeat_action_probability=ATARI_STICKY)
