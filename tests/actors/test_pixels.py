"""Pixel envs and rows: MinAtar and Atari frames as stored (uint8, channels first), through both
buffers unchanged; Atari's TD conventions; other observation spaces; the missing-extra message."""

import sys

import gymnasium as gym
import numpy as np
import pytest

from qdistill.actors.envs import EnvError, describe, make_vector_env
from qdistill.actors.pixels import register
from qdistill.actors.rollout import Rollout
from qdistill.actors.wire import Schema
from qdistill.cluster.cli import main
from qdistill.learners.networks import QNetwork, to_numpy

BREAKOUT = "MinAtar/Breakout-v1"


def _rollout(env_id: str, net: str, *, num_envs: int = 4, next_obs: bool = True) -> Rollout:
    info = describe(env_id)
    r = Rollout(env_id, net=net, obs_shape=info.obs_shape, n_actions=info.n_actions, num_envs=num_envs, seed=1,
                next_obs=next_obs)
    r.load_weights(0, to_numpy(QNetwork(net, info.obs_shape, info.n_actions).state_dict()))
    return r


@pytest.mark.parametrize("env_id, shape, actions", [(BREAKOUT, (4, 10, 10), 3), ("MinAtar/SpaceInvaders-v1", (6, 10, 10), 4),
                                                    ("ALE/Pong-v5", (4, 84, 84), 6)])
def test_pixel_envs_are_described_as_uint8_frames_channels_first(env_id, shape, actions):
    info = describe(env_id)
    assert (info.obs_shape, info.n_actions, info.pixels, info.obs_dtype) == (shape, actions, True, np.uint8)


def test_minatar_frames_are_its_grids_channels_first_as_0_or_255():
    register(BREAKOUT)
    raw = gym.make(BREAKOUT)
    env = make_vector_env(BREAKOUT, 1)
    grid, frames = raw.reset(seed=7)[0], env.reset(seed=7)[0]
    for action in (0, 1, 2, 2, 1):
        assert frames.dtype == np.uint8 and frames.shape == (1, 4, 10, 10)
        np.testing.assert_array_equal(frames[0], grid.transpose(2, 0, 1).astype(np.uint8) * 255)
        grid, frames = raw.step(action)[0], env.step(np.array([action]))[0]


@pytest.mark.parametrize("next_obs", [True, False])
def test_minatar_rows_are_uint8_and_carry_next_frames_only_when_asked(next_obs):
    batch, _ = _rollout(BREAKOUT, "c4k3s1-8", next_obs=next_obs).collect(40, epsilon=0.5)
    assert batch.observations.dtype == np.uint8 and batch.observations.shape == (len(batch), 4, 10, 10)
    assert set(np.unique(batch.observations)) == {0, 255}
    if next_obs:
        assert batch.next_observations.dtype == np.uint8
        assert batch.next_observations.shape == batch.observations.shape
    else:
        assert batch.next_observations is None


@pytest.mark.parametrize("obs_shape, next_obs, size", [
    # obs, [next obs], action 8, reward 4, term 1, trunc 1, behaviour 1, actor 4, task 2, [horizon 1], body crc 4,
    # q 4·A, version 8, crc 4
    ((4, 10, 10), False, 400 + 25 + 4 * 3 + 12), ((4, 10, 10), True, 800 + 26 + 4 * 3 + 12),
    ((4, 84, 84), False, 28_224 + 25 + 4 * 6 + 12), ((4, 84, 84), True, 56_448 + 26 + 4 * 6 + 12),
])
def test_bytes_per_pixel_row(obs_shape, next_obs, size):
    actions = 3 if obs_shape[1] == 10 else 6
    assert Schema(obs_shape, actions, "uint8", next_obs).record_size == size


@pytest.mark.parametrize("next_obs", [True, False])
def test_frames_round_trip_through_both_buffers_unchanged(make_buffer, next_obs):
    batch, _ = _rollout(BREAKOUT, "c4k3s1-8", next_obs=next_obs).collect(30, epsilon=0.5)
    buffer = make_buffer(1_000, schema=Schema(describe(BREAKOUT).obs_shape, 3, "uint8", next_obs))
    buffer.add(batch)
    back = buffer.get(np.arange(len(batch)))
    for name, array in batch.arrays().items():
        assert getattr(back, name).dtype == array.dtype, name
        np.testing.assert_array_equal(getattr(back, name), array, err_msg=name)
    assert (back.next_observations is None) == (not next_obs)


def test_atari_rows_clip_rewards_and_end_at_each_life_lost_while_episodes_keep_the_score():
    """Breakout has 5 lives: each finished game is 5 TD ends (4 lives lost, then game over)."""
    r = _rollout("ALE/Breakout-v5", "c4k8s4-c4k4s2-16", num_envs=1)
    batch, episodes = r.collect(1_500, epsilon=1.0)
    assert len(episodes), "a random player loses 5 lives in 1,500 steps"
    assert set(np.unique(batch.rewards)) <= {0.0, 1.0}  # clipped
    assert int(batch.terminations.sum()) == 5 * len(episodes) + (5 - int(r.lives[0]))
    assert (episodes.returns > 0).any()
    assert r.episode_length[0] > 0


def test_discrete_observations_are_one_hot():
    info = describe("FrozenLake-v1")
    assert (info.obs_shape, info.pixels, info.obs_dtype) == ((16,), False, np.float32)
    batch, _ = _rollout("FrozenLake-v1", "8", num_envs=2).collect(30, epsilon=1.0)
    assert batch.observations.dtype == np.float32
    np.testing.assert_array_equal(batch.observations.sum(axis=1), np.ones(len(batch)))


@pytest.mark.parametrize("env_id, module, extra", [(BREAKOUT, "minatar", "minatar"), ("ALE/Pong-v5", "ale_py", "atari")])
def test_a_missing_pixel_package_names_the_extra(monkeypatch, capsys, tmp_path, env_id, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` meets where the package is not installed
    monkeypatch.setitem(sys.modules, f"{module}.gym", None)
    with pytest.raises(EnvError) as err:
        describe(env_id)
    message = f"env {env_id!r} needs the {module} package: pip install 'qdistill[{extra}]'"
    assert str(err.value) == message
    assert main(["train-teacher", "--env", env_id, "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"qdistill: error: {message}\n"
    assert not (tmp_path / "run").exists()
