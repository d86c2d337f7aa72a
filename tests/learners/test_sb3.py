"""`--teacher sb3:PATH.zip`: Stable-Baselines3 DQN and QR-DQN models, trained here by SB3 itself
(a few hundred steps: loading is under test, not quality), read as qdistill teachers: MlpPolicy on
CartPole, CnnPolicy (NatureCNN) on Atari frames as qdistill's env preprocesses them."""

import json
import shutil
import subprocess
import sys
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import QRDQN
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecTransposeImage

from qdistill.actors import pixels
from qdistill.actors.envs import describe
from qdistill.cluster.cli import main
from qdistill.learners import checkpoint
from qdistill.learners.networks import QNetwork
from qdistill.learners.policy import BACKENDS, GreedyPolicy

CARTPOLE = {"env_id": "CartPole-v1", "obs_shape": (4,), "n_actions": 2}
PONG = {"env_id": "ALE/Pong-v5", "obs_shape": (4, 84, 84), "n_actions": 6}
PONG_FRAMES = "84x84 greyscale, 4 stacked frames, channels first"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A DQN and a QR-DQN trained briefly on CartPole-v1 by SB3, saved as SB3 saves them."""
    folder = tmp_path_factory.mktemp("sb3")
    common = dict(learning_starts=50, train_freq=4, seed=0, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # networks this small train several times faster on one thread of a busy machine
    patch = pytest.MonkeyPatch()
    patch.setenv("SB3_LOGDIR", str(folder / "logs"))  # SB3's logger makes a folder, by default in /tmp
    try:
        dqn = DQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [32, 32]}, **common).learn(300)
        qrdqn = QRDQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [32, 16], "n_quantiles": 7},
                      **common).learn(300)
    finally:
        torch.set_num_threads(threads)
        patch.undo()
    dqn.save(folder / "cartpole.zip")
    qrdqn.save(folder / "qrdqn.zip")
    return {"dqn": (dqn, folder / "cartpole.zip"), "qrdqn": (qrdqn, folder / "qrdqn.zip")}


def _observations(n=2_000):
    """CartPole states from random play, and as many wider draws (the network off its usual inputs)."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    states = []
    while len(states) < n // 2:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        if terminated or truncated:
            obs, _ = env.reset()
    wide = rng.normal(0.0, 2.0, size=(n - len(states), 4))
    return np.concatenate([np.array(states), wide]).astype(np.float32)


def _assert_same_greedy_policy(ckpt, sb3_q, model, obs):
    with torch.no_grad():
        ours = ckpt.network()(torch.as_tensor(obs))
    torch.testing.assert_close(ours, sb3_q, rtol=1e-5, atol=1e-6)
    sb3_actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(ours.argmax(dim=1).numpy(), sb3_actions)
    for backend in (None, *BACKENDS):  # how rollout actors act with a teacher: its choice, and each
        actor = GreedyPolicy(ckpt.net, ckpt.obs_shape, ckpt.n_actions, backend=backend)
        actor.load(ckpt.version, ckpt.weights)
        np.testing.assert_allclose(actor.q_values(obs), sb3_q.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(actor.act(obs), sb3_actions)


def test_dqn_is_read_as_its_q_network(models):
    model, path = models["dqn"]
    ckpt = checkpoint.load(f"sb3:{path}", **CARTPOLE)
    assert (ckpt.net, ckpt.obs_shape, ckpt.n_actions, ckpt.env_id, ckpt.version) == ("32x32", (4,), 2, "CartPole-v1", 0)
    assert sorted(ckpt.weights) == [f"layers.{i}.{p}" for i in (1, 3, 5) for p in ("bias", "weight")]
    obs = _observations()
    with torch.no_grad():
        sb3_q = model.q_net(torch.as_tensor(obs))
    _assert_same_greedy_policy(ckpt, sb3_q, model, obs)
    # the online network, not the target network SB3 keeps beside it (they differ after training)
    assert not torch.equal(model.q_net.q_net[0].weight, model.q_net_target.q_net[0].weight)
    # without an env to check against, the model names none; an env id alone cannot be checked
    assert checkpoint.load(f"sb3:{path}").env_id == ""
    with pytest.raises(ValueError) as err:
        checkpoint.load(f"sb3:{path}", env_id="CartPole-v1")
    assert str(err.value) == ("a Stable-Baselines3 model names no env: to take it as made for 'CartPole-v1', give "
                              "that env's obs_shape and n_actions to check it against")


def test_qrdqn_q_values_are_the_mean_over_quantiles(models):
    model, path = models["qrdqn"]
    ckpt = checkpoint.load(f"sb3:{path}", **CARTPOLE)
    assert (ckpt.net, ckpt.obs_shape, ckpt.n_actions, ckpt.env_id, ckpt.version) == ("32x16", (4,), 2, "CartPole-v1", 0)
    assert ckpt.weights["layers.5.weight"].shape == (2, 16)
    obs = _observations()
    with torch.no_grad():
        quantiles = model.quantile_net(torch.as_tensor(obs))
    assert quantiles.shape == (len(obs), 7, 2)
    _assert_same_greedy_policy(ckpt, quantiles.mean(dim=1), model, obs)


def test_read_without_stable_baselines3(models):
    """A run needs neither SB3 nor sb3-contrib: with both unimportable, the model still loads."""
    _, path = models["qrdqn"]
    code = ("import sys; sys.modules['stable_baselines3'] = sys.modules['sb3_contrib'] = None\n"
            "from qdistill.learners import checkpoint\n"
            f"c = checkpoint.load('sb3:{path}', obs_shape=(4,), n_actions=2); print(c.net, c.n_actions)\n"
            "assert not {'stable_baselines3', 'sb3_contrib', 'cloudpickle'} & {m for m in sys.modules if sys.modules[m]}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "32x16 2\n", "")


def _refusal(path, **expect) -> str:
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(f"sb3:{path}", **expect)
    return str(err.value)


def test_models_qdistill_cannot_use_are_refused(tmp_path):
    ppo = tmp_path / "ppo.zip"
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, device="cpu").save(ppo)
    assert _refusal(ppo, **CARTPOLE) == (
        f"Stable-Baselines3 model '{ppo}' has policy class stable_baselines3.common.policies.ActorCriticPolicy: "
        "expected the MlpPolicy or CnnPolicy of a DQN or QR-DQN model (stable_baselines3.dqn.policies.DQNPolicy, "
        "stable_baselines3.dqn.policies.CnnPolicy, sb3_contrib.qrdqn.policies.QRDQNPolicy or "
        "sb3_contrib.qrdqn.policies.CnnPolicy)")
    tanh = tmp_path / "tanh.zip"
    DQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8], "activation_fn": torch.nn.Tanh},
        device="cpu").save(tanh)
    assert _refusal(tanh) == (
        f"Stable-Baselines3 model '{tanh}' uses activation torch.nn.modules.activation.Tanh: qdistill's "
        "Q-networks use ReLU (expected activation_fn torch.nn.ReLU, the default)")
    linear = tmp_path / "linear.zip"
    DQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": []}, device="cpu").save(linear)
    assert _refusal(linear) == (f"Stable-Baselines3 model '{linear}' has no hidden layer (net_arch []): qdistill's "
                                "Q-networks have at least one")
    text = tmp_path / "notes.zip"
    text.write_text("not a model")
    assert _refusal(text) == (f"Stable-Baselines3 model '{text}' is not a readable zip file: expected a model "
                              "saved by Stable-Baselines3's `model.save()`")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hello")
    assert _refusal(other) == f"Stable-Baselines3 model '{other}' is not a Stable-Baselines3 model: the zip has no " \
                              "data or policy.pth"
    assert _refusal(tmp_path / "missing.zip") == f"Stable-Baselines3 model '{tmp_path / 'missing.zip'}' does not exist"


@pytest.mark.slow
def test_cli_refuses_a_model_made_for_another_env(models, tmp_path):
    _, path = models["dqn"]
    result = subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", "Acrobot-v1",
                             "--teacher", f"sb3:{path.name}", "--out", "run"],
                            cwd=path.parent, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("qdistill: error: Stable-Baselines3 model 'cartpole.zip' was made for observation "
                             "shape (4,), not (6,); 2 actions, not 3\n")
    assert not (path.parent / "run").exists()


@pytest.mark.slow
def test_run_distills_an_sb3_teacher(models, ray_session, tmp_path, monkeypatch):
    _, path = models["dqn"]
    monkeypatch.chdir(path.parent)  # a relative path: the run keeps it absolute, prefix and all
    out = tmp_path / "run"
    code = main(["run", "--env", "CartPole-v1", "--teacher", f"sb3:{path.name}", "--students", "8",
                 "--steps", "3000", "--no-target", "--quiet", "--out", str(out)])
    assert code == 0
    assert json.loads((out / "config.json").read_text())["teacher"] == f"sb3:{path}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "steps" and summary["env_steps"] >= 3_000
    assert summary["teacher"]["net"] == "32x32"
    kept = checkpoint.load(out / "checkpoints" / "teacher.pt", env_id="CartPole-v1", net="32x32")
    original = checkpoint.load(f"sb3:{path}", **CARTPOLE)
    for key, value in original.weights.items():
        np.testing.assert_array_equal(kept.weights[key], value)
    student = checkpoint.load(summary["students"]["8"]["checkpoint"], env_id="CartPole-v1", net="8")
    assert student.version >= 1


def _pong(frames=pixels.ATARI_STACK):
    """ALE/Pong-v5 preprocessed as qdistill's Atari env (`pixels.atari_wrappers`: 84x84 greyscale,
    4 stacked frames, channels first), or with another number of frames stacked."""
    pixels.register(PONG["env_id"])
    env = pixels.atari_wrappers(gym.make(PONG["env_id"], frameskip=1, repeat_action_probability=pixels.ATARI_STICKY))
    return env if frames == pixels.ATARI_STACK else gym.wrappers.FrameStackObservation(env.env, frames)


def _channels_last(env):
    """The env's (C, H, W) frames as (H, W, C)."""
    c, h, w = env.observation_space.shape
    return gym.wrappers.TransformObservation(env, lambda obs: np.ascontiguousarray(obs.transpose(1, 2, 0)),
                                             gym.spaces.Box(0, 255, (h, w, c), np.uint8))


def _frames(env, n, seed=0):
    """`n` observations of random play."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames = []
    while len(frames) < n:
        frames.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            obs, _ = env.reset()
    return np.array(frames)


@pytest.fixture(scope="module")
def atari_models(tmp_path_factory):
    """A DQN (NatureCNN, features_dim 512, net_arch []: the `nature` preset) and a QR-DQN (features_dim
    256, net_arch [64]) with SB3's CnnPolicy, trained briefly by SB3 on Pong frames as qdistill's env
    gives them, saved as SB3 saves them; with the frames each stored in its replay buffer."""
    assert _pong().observation_space == gym.spaces.Box(0, 255, describe(PONG["env_id"]).obs_shape, np.uint8)
    folder = tmp_path_factory.mktemp("sb3_atari")
    common = dict(buffer_size=1_000, learning_starts=100, batch_size=8, train_freq=4, optimize_memory_usage=False,
                  seed=0, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    patch = pytest.MonkeyPatch()
    patch.setenv("SB3_LOGDIR", str(folder / "logs"))
    try:
        dqn = DQN("CnnPolicy", _pong(), **common).learn(200)
        qrdqn = QRDQN("CnnPolicy", _pong(), policy_kwargs={"features_extractor_kwargs": {"features_dim": 256},
                                                          "net_arch": [64], "n_quantiles": 5}, **common).learn(200)
    finally:
        torch.set_num_threads(threads)
        patch.undo()
    models = {}
    for name, model in (("dqn", dqn), ("qrdqn", qrdqn)):
        model.save(folder / f"{name}.zip")
        buffer = model.replay_buffer
        models[name] = (model, folder / f"{name}.zip", buffer.observations[:buffer.pos, 0].copy())
    return models


@pytest.mark.slow
def test_cnn_dqn_is_read_as_the_nature_network(atari_models):
    model, path, obs = atari_models["dqn"]
    ckpt = checkpoint.load(f"sb3:{path}", **PONG)
    assert (ckpt.net, ckpt.obs_shape, ckpt.n_actions, ckpt.env_id, ckpt.version) == \
        ("nature", (4, 84, 84), 6, "ALE/Pong-v5", 0)
    assert {k: v.shape for k, v in ckpt.weights.items()} == \
        {k: tuple(v.shape) for k, v in QNetwork("nature", (4, 84, 84), 6).state_dict().items()}
    assert obs.shape == (200, 4, 84, 84) and obs.dtype == np.uint8 and len(np.unique(obs[:, -1], axis=0)) > 10
    with torch.no_grad():
        sb3_q = model.q_net(torch.as_tensor(obs))  # SB3's own preprocessing: uint8 frames, divided by 255 inside
    _assert_same_greedy_policy(ckpt, sb3_q, model, obs)
    # the online network, not the target network SB3 keeps beside it (they differ after training)
    assert not torch.equal(model.q_net.q_net[0].weight, model.q_net_target.q_net[0].weight)


@pytest.mark.slow
def test_cnn_qrdqn_q_values_are_the_mean_over_quantiles(atari_models):
    model, path, obs = atari_models["qrdqn"]
    ckpt = checkpoint.load(f"sb3:{path}", **PONG)
    assert (ckpt.net, ckpt.obs_shape, ckpt.n_actions) == ("c32k8s4-c64k4s2-c64k3s1-256x64", (4, 84, 84), 6)
    with torch.no_grad():
        quantiles = model.quantile_net(torch.as_tensor(obs))
    assert quantiles.shape == (len(obs), 5, 6)
    _assert_same_greedy_policy(ckpt, quantiles.mean(dim=1), model, obs)


def test_a_model_sb3_transposed_from_channels_last_frames_reads_channels_first_ones(tmp_path):
    """SB3 wraps an env of (H, W, C) frames in VecTransposeImage: its network takes (C, H, W), as
    qdistill's env gives them."""
    path = tmp_path / "transposed.zip"
    model = DQN("CnnPolicy", _channels_last(_pong()), buffer_size=100, seed=0, device="cpu")
    model.save(path)
    assert model.observation_space.shape == (4, 84, 84)  # what it saves
    ckpt = checkpoint.load(f"sb3:{path}", **PONG)
    assert ckpt.net == "nature"
    obs = _frames(_pong(), 40)
    with torch.no_grad():
        ours = ckpt.network()(torch.as_tensor(obs))
        torch.testing.assert_close(ours, model.q_net(torch.as_tensor(obs)), rtol=1e-5, atol=1e-6)
    sb3_actions, _ = model.predict(obs.transpose(0, 2, 3, 1), deterministic=True)  # the frames it was made for
    np.testing.assert_array_equal(ours.argmax(dim=1).numpy(), sb3_actions)


class _Linear(BaseFeaturesExtractor):
    """A features extractor other than NatureCNN."""

    def __init__(self, observation_space, features_dim=8):
        super().__init__(observation_space, features_dim)
        self.linear = torch.nn.Sequential(torch.nn.Flatten(),
                                          torch.nn.Linear(int(np.prod(observation_space.shape)), features_dim))

    def forward(self, observations):
        return self.linear(observations)


def test_cnn_models_qdistill_cannot_use_are_refused(tmp_path):
    def saved(name, env, **policy_kwargs):
        DQN("CnnPolicy", env, buffer_size=100, policy_kwargs=policy_kwargs, device="cpu").save(tmp_path / name)
        return tmp_path / name

    one = saved("one_frame.zip", _pong(frames=1))
    assert _refusal(one, **PONG) == (
        f"Stable-Baselines3 model '{one}' has image observations of shape (1, 84, 84) (1 channel of 84x84): expected "
        f"the env's frames as they are; qdistill's env 'ALE/Pong-v5' gives (4, 84, 84): {PONG_FRAMES}")
    assert checkpoint.load(f"sb3:{one}").obs_shape == (1, 84, 84)  # no env to compare with: the model's own
    unscaled = saved("unscaled.zip", _pong(), normalize_images=False)
    assert _refusal(unscaled, **PONG) == (
        f"Stable-Baselines3 model '{unscaled}' has normalize_images=False: qdistill's conv networks take uint8 frames "
        "and divide them by 255 (expected normalize_images=True, the default)")
    other = saved("other.zip", _pong(), features_extractor_class=_Linear)
    assert _refusal(other, **PONG) == (
        f"Stable-Baselines3 model '{other}' uses features extractor {_Linear.__module__}.{_Linear.__qualname__}: "
        "expected stable_baselines3.common.torch_layers.FlattenExtractor (the MlpPolicy's, on vectors) or "
        "stable_baselines3.common.torch_layers.NatureCNN (the CnnPolicy's, on images)")
    # frames SB3 left channels-last (its VecTransposeImage told to skip them): NatureCNN convolves
    # (84, 84, 36) as 84 channels of 84x36
    last = tmp_path / "channels_last.zip"
    env = VecTransposeImage(DummyVecEnv([lambda: _channels_last(_pong(frames=36))]), skip=True)
    DQN("CnnPolicy", env, buffer_size=10, device="cpu").save(last)
    channels_last = (f"Stable-Baselines3 model '{last}' has channels-last image observations of shape (84, 84, 36) "
                     "(height, width, channels), which its network convolves as they are: expected channels first, as "
                     "Stable-Baselines3 makes them when it wraps the env in VecTransposeImage")
    assert _refusal(last, **PONG) == f"{channels_last}; qdistill's env 'ALE/Pong-v5' gives (4, 84, 84): {PONG_FRAMES}"
    assert _refusal(last) == channels_last
    pong = saved("pong.zip", _pong())
    assert _refusal(pong, **CARTPOLE) == (
        f"Stable-Baselines3 model '{pong}' has image observations of shape (4, 84, 84) (4 channels of 84x84): expected "
        "the env's frames as they are; qdistill's env 'CartPole-v1' gives (4,): vectors of 4 values, for an MlpPolicy")


def test_vecnormalize_statistics_are_read_from_npz_and_a_pickle_is_refused(models, tmp_path):
    """A model trained behind VecNormalize: from vecnormalize.npz beside it, a `norm-` teacher
    whose Q-values are SB3's on VecNormalize's normalised observations; a vecnormalize.pkl alone is
    refused (never unpickled); other clip or epsilon values are refused."""
    model, path = models["dqn"]
    folder = tmp_path / "zoo"
    (folder / "cartpole").mkdir(parents=True)
    shutil.copy(path, folder / "cartpole.zip")
    pickled = folder / "cartpole" / "vecnormalize.pkl"  # RL-Zoo's place for it
    pickled.write_bytes(b"not read")
    with pytest.raises(checkpoint.CheckpointError) as refused:
        checkpoint.load(f"sb3:{folder / 'cartpole.zip'}", **CARTPOLE)
    assert str(refused.value) == (
        f"Stable-Baselines3 model '{folder / 'cartpole.zip'}' was trained behind VecNormalize, whose statistics "
        f"'{pickled}' are a pickle, which qdistill does not load (unpickling runs the file's code): save them beside it "
        "as vecnormalize.npz (mean, var, count, clip_obs, epsilon of its obs_rms; see docs/teacher.md)")

    mean, var = np.array([0.1, -0.2, 0.03, 0.5]), np.array([0.04, 0.5, 0.01, 1.5])
    np.savez(folder / "vecnormalize.npz", mean=mean, var=var, count=1234.0, clip_obs=10.0, epsilon=1e-8)
    ckpt = checkpoint.load(f"sb3:{folder / 'cartpole.zip'}", **CARTPOLE)
    assert ckpt.net == "norm-32x32" and ckpt.weights["layers.1.count"] == 1234.0
    obs = _observations()
    with torch.no_grad():
        sb3_q = model.q_net(torch.as_tensor(np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10), dtype=torch.float32))
    ours = ckpt.network()
    with torch.no_grad():
        torch.testing.assert_close(ours(torch.as_tensor(obs)), sb3_q, rtol=1e-5, atol=1e-5)

    np.savez(folder / "vecnormalize.npz", mean=mean, var=var, count=1234.0, clip_obs=5.0, epsilon=1e-8)
    with pytest.raises(checkpoint.CheckpointError, match=r"was normalised with clip_obs 5 and epsilon 1e-08 \(.*\): "
                                                         r"qdistill normalises with VecNormalize's defaults, clip_obs "
                                                         r"10 and epsilon 1e-08$"):
        checkpoint.load(f"sb3:{folder / 'cartpole.zip'}", **CARTPOLE)
