"""Bad input: one line naming the value and what is accepted, exit code 2, nothing written."""

import subprocess
import sys

import pytest

from qdistill.learners import checkpoint
from qdistill.learners.networks import QNetwork, to_numpy


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", *args],
                          capture_output=True, text=True, timeout=120)


def _assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"qdistill: error: {message}\n"


CASES = [
    (["--env", "NoSuchEnv-v0"],
     "unknown env id 'NoSuchEnv-v0': expected a registered Gymnasium id such as 'CartPole-v1', 'Acrobot-v1' or 'LunarLander-v3'"),
    (["--env", "Pendulum-v1"],
     "env 'Pendulum-v1' has a Box action space: DQN needs a Discrete action space (e.g. 'CartPole-v1', 'LunarLander-v3')"),
    (["--env", "CartPole-v1", "--net", "256y256"],
     "network spec '256y256' is not valid: expected hidden layer widths joined by 'x', each a positive integer, e.g. '256x256' or '64'"),
    (["--env", "CartPole-v1", "--steps", "0"], "steps budget 0 is not valid: expected an integer > 0"),
    (["--env", "CartPole-v1", "--steps", "-10"], "steps budget -10 is not valid: expected an integer > 0"),
    (["--env", "CartPole-v1", "--time", "0"], "time budget 0.0 is not valid: expected a number of seconds > 0"),
    (["--env", "CartPole-v1", "--time", "-3"], "time budget -3.0 is not valid: expected a number of seconds > 0"),
    (["--env", "CartPole-v1", "--seed", "-1"], "seed -1 is not valid: expected an integer >= 0"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[c[1].split(":")[0][:40] for c in CASES])
def test_bad_input_is_refused(tmp_path, args, message):
    out = tmp_path / "run"
    _assert_refused(_run("train-teacher", *args, "--out", str(out)), message)
    assert not out.exists()


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _assert_refused(_run("train-teacher", "--env", "CartPole-v1", "--out", str(blocker / "run")),
                    f"output directory '{blocker / 'run'}' is not writable: '{blocker}' is not a directory")
    result = _run("train-teacher", "--env", "CartPole-v1", "--out", "/proc/qdistill-run")
    assert result.returncode == 2
    assert result.stderr.startswith("qdistill: error: output directory '/proc/qdistill-run' is not writable: ")
    assert result.stderr.count("\n") == 1


def test_non_empty_output_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    _assert_refused(_run("train-teacher", "--env", "CartPole-v1", "--out", str(tmp_path)),
                    f"output directory '{tmp_path}' is not empty: give a new or empty directory")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_checkpoint_for_another_env(tmp_path):
    path = tmp_path / "acrobot.pt"
    checkpoint.save(path, checkpoint.Checkpoint("64", (6,), 3, "Acrobot-v1", 1,
                                                to_numpy(QNetwork("64", (6,), 3).state_dict())))
    out = tmp_path / "run"
    _assert_refused(_run("train-teacher", "--env", "CartPole-v1", "--init", str(path), "--out", str(out)),
                    f"checkpoint '{path}' was made for env 'Acrobot-v1', not 'CartPole-v1'; "
                    "observation shape (6,), not (4,); 3 actions, not 2")
    assert not out.exists()
