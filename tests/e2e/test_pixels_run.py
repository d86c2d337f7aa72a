"""MinAtar end to end on a real local Ray runtime, on a tiny budget: a conv teacher trained by
`train-teacher`, then distilled into conv students by `run`, frames stored as uint8 throughout."""

import json

import numpy as np
import pytest
import torch

from qdistill.actors.envs import describe, make_vector_env
from qdistill.cluster.cli import main
from qdistill.learners import checkpoint
from qdistill.learners.networks import count_params

pytestmark = pytest.mark.slow  # end-to-end runs on a real Ray runtime

ENV = "MinAtar/Breakout-v1"


@pytest.fixture(scope="module")
def minatar_teacher(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("minatar") / "teacher"
    assert main(["train-teacher", "--env", ENV, "--steps", "7000", "--out", str(out), "--quiet", "--seed", "0"]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_train_teacher_on_minatar(minatar_teacher):
    out, summary = minatar_teacher
    assert summary["env"] == ENV and summary["stop_reason"] == "steps" and summary["env_steps"] >= 7_000
    # the MinAtar preset: its DQN network, learning from 5,000 rows at one update per 4 env steps
    assert summary["teacher"]["net"] == "minatar" and summary["teacher"]["params"] == 132_179
    assert summary["learner_steps"] > 0
    assert summary["bytes_per_row"] == 850  # two uint8 4x10x10 frames and a horizon: a learning teacher needs them
    ckpt = checkpoint.load(summary["teacher"]["checkpoint"], env_id=ENV)
    assert ckpt.obs_shape == (4, 10, 10) and ckpt.net == "minatar"


def test_run_distills_minatar_into_conv_students(minatar_teacher, tmp_path):
    _, teacher = minatar_teacher
    out = tmp_path / "run"
    assert main(["run", "--env", ENV, "--teacher", teacher["teacher"]["checkpoint"], "--students", "c8k3s1-16,c4k3s1-8",
                 "--steps", "6000", "--no-target", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "steps" and summary["env_steps"] >= 6_000 and summary["learner_steps"] > 50
    assert summary["buffer"]["bytes_per_row"] == 449 and summary["buffer"]["lost"] == 0  # one frame: fixed teacher
    assert "rows of 449 bytes in the buffer" in (out / "report.md").read_text()
    assert {name: s["params"] for name, s in summary["students"].items()} == {"c8k3s1-16": 8_555, "c4k3s1-8": 2_231}
    # a student checkpoint rebuilds a conv net that acts on the env's uint8 frames as stored
    name = "c8k3s1-16"
    ckpt = checkpoint.load(summary["students"][name]["checkpoint"], env_id=ENV, obs_shape=(4, 10, 10), n_actions=3)
    net = ckpt.network()
    assert count_params(net) == 8_555
    env = make_vector_env(ENV, 4)
    frames = env.reset(seed=3)[0]
    env.close()
    assert frames.dtype == np.uint8
    with torch.no_grad():
        q = net(torch.from_numpy(frames))
    assert q.shape == (4, describe(ENV).n_actions) and torch.isfinite(q).all()
