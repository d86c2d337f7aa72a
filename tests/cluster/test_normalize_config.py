"""--normalize-obs as `train-teacher`, `run` and `config show` resolve it: a `norm-` teacher net,
`norm-` students that take their teacher's statistics; each refusal one line, nothing written."""

import pytest
import yaml

from qdistill.cluster.cli import main
from tests.support.teachers import untrained_teachers

CARTPOLE = {"CartPole-v1": ((4,), 2)}


def _shown(capsys, args) -> dict:
    assert main(["config", *args]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_flag_puts_norm_in_front_of_the_networks(tmp_path, capsys):
    assert _shown(capsys, ["show-teacher", "--env", "LunarLander-v3", "--normalize-obs"])["dqn"]["net"] == "norm-128x128"
    assert _shown(capsys, ["show-teacher", "--env", "LunarLander-v3"])["dqn"]["net"] == "128x128"
    shown = _shown(capsys, ["show", "--env", "LunarLander-v3", "--normalize-obs", "--students", "16x16,norm-32"])
    assert shown["distill"]["students"] == ["norm-16x16", "norm-32"]
    # a normalising teacher's students normalise, with or without the flag
    teacher = untrained_teachers(tmp_path, CARTPOLE, net="norm-32")["CartPole-v1"]
    shown = _shown(capsys, ["show", "--env", "CartPole-v1", "--teacher", teacher, "--students", "8,16"])
    assert shown["distill"]["students"] == ["norm-8", "norm-16"]
    (tmp_path / "plain").mkdir()
    plain = untrained_teachers(tmp_path / "plain", CARTPOLE)["CartPole-v1"]
    assert _shown(capsys, ["show", "--env", "CartPole-v1", "--teacher", plain])["distill"]["students"] == ["16x16"]


@pytest.mark.parametrize("args, message", [
    (["train-teacher", "--env", "MinAtar/Breakout-v1", "--normalize-obs"],
     "--normalize-obs: MinAtar/Breakout-v1's observations are frames, which a conv net scales to [0, 1] itself; drop it"),
    (["train-teacher", "--env", "CartPole-v1", "--env", "Acrobot-v1", "--normalize-obs"],
     "--normalize-obs: a run of several tasks does not normalise observations; drop it (or run each task alone)"),
    (["train-teacher", "--env", "CartPole-v1", "--env", "Acrobot-v1", "--net", "norm-64x64"],
     "network spec 'norm-64x64': a run of several tasks does not normalise observations; drop it (or run each task "
     "alone)"),
    (["train-teacher", "--env", "MinAtar/Breakout-v1", "--net", "norm-minatar"],
     "network spec 'norm-minatar' normalises frames: 'norm-' is for vector observations (a conv net scales its frames "
     "to [0, 1] itself); drop it, or give widths such as 'norm-256x256'"),
    (["run", "--env", "CartPole-v1", "--teacher-learns", "--normalize-obs"],
     "--normalize-obs: a learning teacher's observation statistics move while its students train on theirs; drop "
     "--teacher-learns, or normalisation"),
    (["run", "--env", "CartPole-v1", "--env", "Acrobot-v1", "--normalize-obs"],
     "--normalize-obs: a run of several tasks does not normalise observations; drop it (or run each task alone)"),
])
def test_refusals(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"qdistill: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("flags, what", [(["--normalize-obs"], "--normalize-obs"),
                                         (["--students", "norm-8"], "students norm-8")])
def test_a_teacher_without_statistics_is_refused(tmp_path, capsys, flags, what):
    plain = untrained_teachers(tmp_path, CARTPOLE)["CartPole-v1"]
    out = tmp_path / "run"
    assert main(["run", "--env", "CartPole-v1", "--teacher", plain, *flags, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"qdistill: error: {what}: students normalise their observations with their teacher's statistics, and teacher "
        f"'{plain}' (net '32') has none: train one with `qdistill train-teacher --normalize-obs`, or drop "
        "normalisation\n")
    assert not out.exists()
