"""Config files: `qdistill run --config FILE` (TOML or YAML), flags over the file over the env's
preset, `qdistill config show`, the example configs in deploy/configs, and bad files refused with
the key named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from qdistill.actors.envs import describe
from qdistill.cluster.cli import main
from qdistill.learners import checkpoint
from qdistill.learners.networks import QNetwork, to_numpy

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "configs"


def _untrained_teacher(env_id: str, path: Path) -> str:
    """A teacher checkpoint for `env_id` that is a freshly initialised network: enough to run a
    config end to end, not to learn anything from."""
    info = describe(env_id)
    torch.manual_seed(0)
    net = QNetwork("32x32", info.obs_shape, info.n_actions)
    checkpoint.save(path, checkpoint.Checkpoint("32x32", info.obs_shape, info.n_actions, env_id, 1,
                                                to_numpy(net.state_dict())))
    return str(path)


def _show(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["config", "show", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_examples_are_the_three_envs():
    assert sorted(p.name for p in EXAMPLES.iterdir()) == ["acrobot.toml", "cartpole.toml", "lunarlander.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cartpole.toml", "acrobot.toml", "lunarlander.yaml"])
def test_each_example_config_runs(ray_session, tmp_path, name):
    path = EXAMPLES / name
    settings = (yaml.safe_load if path.suffix == ".yaml" else __import__("tomllib").loads)(path.read_text())
    teacher = _untrained_teacher(settings["env"], tmp_path / "teacher.pt")
    out = tmp_path / "run"
    code = main(["run", "--config", str(path), "--teacher", teacher, "--steps", "3000", "--no-target",
                 "--out", str(out), "--quiet"])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    # the file's settings, the flags over them
    assert (config["env"], config["actors"], config["steps"], config["target_return"]) == \
        (settings["env"], settings["actors"], 3000, None)
    assert config["distill"]["students"] == settings["distill"]["students"]
    assert config["distill"]["loss"] == settings["distill"]["loss"]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["students"]) == sorted(settings["distill"]["students"])
    assert summary["env_steps"] >= 3000


def test_flags_override_the_file_and_the_file_the_preset(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text('env = "CartPole-v1"\nactors = 3\nreplay_ratio = 0.2\nsteps = 20_000\n'
                    '[distill]\nlr = 5e-3\nloss = "nll"\n[exploration]\nend = 0.1\n')
    code, out, err = _show(capsys, "--config", str(path), "--actors", "4", "--loss", "mse", "--out", str(tmp_path / "r"))
    assert (code, err) == (0, "")
    shown = yaml.safe_load(out)
    assert shown["actors"] == 4  # flag over file
    assert (shown["replay_ratio"], shown["steps"]) == (0.2, 20_000)  # file over preset
    assert shown["distill"] == {"students": ["16x16"], "loss": "mse", "tau": 0.01, "lr": 5e-3, "batch_size": 256}
    assert shown["exploration"] == {"start": 0.05, "end": 0.1, "steps": 0}  # the preset's, one key from the file
    assert (shown["target_return"], shown["updates_per_sample"]) == (475.0, 128)  # the env's threshold, the default
    # what `config show` prints is a config file that resolves to itself
    saved = tmp_path / "shown.yaml"
    saved.write_text(out)
    code, again, _ = _show(capsys, "--config", str(saved))
    assert (code, again) == (0, out)


def test_a_yaml_file_can_turn_the_target_off(tmp_path, capsys):
    path = tmp_path / "no_target.yml"
    path.write_text("env: CartPole-v1\ntarget_return: null\n")
    code, out, _ = _show(capsys, "--config", str(path))
    assert code == 0 and yaml.safe_load(out)["target_return"] is None


BAD_FILES = [
    ("a.toml", 'env = "CartPole-v1"\nactorz = 2\n', "{f}: unknown key 'actorz'; did you mean 'actors'?"),
    ("b.toml", '[distill]\nstudnets = ["8x8"]\n', "{f}: unknown key 'distill.studnets'; did you mean 'distill.students'?"),
    ("c.toml", "bogus = 1\n", "{f}: unknown key 'bogus'"),
    ("c2.toml", "lr = 0.01\n", "{f}: unknown key 'lr'; did you mean 'distill.lr' or 'dqn.lr'?"),
    ("c3.toml", 'students = ["8x8"]\n', "{f}: unknown key 'students'; did you mean 'distill.students'?"),
    ("d.toml", 'actors = "two"\n', '{f}: actors should be an integer, not "two"'),
    ("e.toml", "actors = true\n", "{f}: actors should be an integer, not true"),
    ("f.toml", '[distill]\nlr = "fast"\n', '{f}: distill.lr should be a number, not "fast"'),
    ("g.toml", '[distill]\nstudents = "16x16"\n', '{f}: distill.students should be a list of strings, not "16x16"'),
    ("h.toml", "distill = 3\n", "{f}: distill should be a table of settings, not 3"),
    ("i.yaml", "actor_resources:\n  rollout: lots\n",
     '{f}: actor_resources should be a table of names with numbers, not {{"rollout": "lots"}}'),
    ("j.yaml", "- env: CartPole-v1\n", "config file '{f}' holds a list: expected a table of settings, e.g. env = \"CartPole-v1\""),
    ("k.ini", "env = CartPole-v1\n", "config file '{f}' is not a config file: expected a name ending in .toml, .yaml, .yml, .json"),
    ("l.toml", 'env = "CartPole-v1"\nactors = 0\n', "actors 0 is not valid: expected an integer >= 1"),
]


TEACHER_BAD_FILES = [
    ("a.toml", "lr = 0.01\n", "{f}: unknown key 'lr'; did you mean 'dqn.lr'?"),
    ("b.toml", '[distill]\nloss = "kl"\n', "{f}: unknown key 'distill'"),
    ("c.toml", '[dqn]\nnet = 64\n', "{f}: dqn.net should be a string, not 64"),
    ("d.toml", "eval_every = 0\n", "eval_every 0 is not valid: expected an integer >= 1"),
]
BAD = [("run", *bad) for bad in BAD_FILES] + [("train-teacher", *bad) for bad in TEACHER_BAD_FILES]


@pytest.mark.parametrize("command, name, text, message", BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_a_bad_config_file_is_refused_naming_the_key(tmp_path, capsys, command, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    out = tmp_path / "run"
    code = main([command, "--env", "CartPole-v1", "--config", str(path), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert (code, captured.out, captured.err) == (2, "", f"qdistill: error: {message.format(f=path)}\n")
    assert not out.exists()


def test_unreadable_and_malformed_files_are_refused(tmp_path, capsys):
    missing = tmp_path / "missing.toml"
    code, _, err = _show(capsys, "--config", str(missing))
    assert (code, err) == (2, f"qdistill: error: config file '{missing}' cannot be read: No such file or directory\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("actors = \n")
    code, _, err = _show(capsys, "--config", str(broken))
    assert code == 2 and err.startswith(f"qdistill: error: config file '{broken}' is not valid TOML: ")
    assert err.count("\n") == 1
    for command in (["config", "show"], ["train-teacher"]):
        code = main([*command, "--config", str(broken), "--resume", str(tmp_path)])
        assert (code, capsys.readouterr().err) == (2, "qdistill: error: --resume carries on with the run's own "
                                                      "config: --config cannot be given with it\n")


def test_train_teacher_takes_a_config_file_too(tmp_path, capsys):
    path = tmp_path / "teacher.toml"
    path.write_text('env = "CartPole-v1"\nactors = 1\nsteps = 50_000\n[dqn]\nnet = "64x64"\nlr = 5e-4\nn_step = 3\n'
                    '[exploration]\nend = 0.05\n')
    code = main(["config", "show-teacher", "--config", str(path), "--lr", "1e-3", "--out", str(tmp_path / "t")])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.startswith("# qdistill train-teacher: resolved config")
    shown = yaml.safe_load(out)
    assert (shown["actors"], shown["steps"], shown["target_return"]) == (1, 50_000, 475.0)
    assert (shown["dqn"]["net"], shown["dqn"]["lr"], shown["dqn"]["batch_size"]) == ("64x64", 1e-3, 64)  # flag over file
    assert shown["dqn"]["n_step"] == 3
    assert shown["exploration"] == {"start": 1.0, "end": 0.05, "steps": 8_000}  # the preset's, one key from the file
    saved = tmp_path / "shown.yaml"
    saved.write_text(out)
    assert main(["config", "show-teacher", "--config", str(saved)]) == 0
    assert capsys.readouterr().out == out


@pytest.mark.slow
def test_train_teacher_runs_from_a_config_file(ray_session, tmp_path):
    path = tmp_path / "teacher.yaml"
    path.write_text("env: CartPole-v1\nactors: 1\ntarget_return: null\ndqn:\n  net: 32x32\n  batch_size: 32\n")
    out = tmp_path / "teacher"
    assert main(["train-teacher", "--config", str(path), "--steps", "3000", "--n-step", "3", "--out", str(out),
                 "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["env"], config["actors"], config["steps"], config["target_return"]) == ("CartPole-v1", 1, 3000, None)
    assert (config["dqn"]["net"], config["dqn"]["batch_size"], config["dqn"]["n_step"]) == ("32x32", 32, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 3000 and summary["teacher"]["params"] == 4 * 32 + 32 + 32 * 32 + 32 + 32 * 2 + 2


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`qdistill config show-teacher | head -1`: the pipe's reader gone before the config is
    printed ends the command with status 1 and no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "qdistill.cluster.cli", "config", "show-teacher", "--env",
                             "CartPole-v1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the interpreter has started and resolved the config
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=60), err) == (1, "")
