"""A small teacher, trained once for the end-to-end tests (train-teacher itself is under test)."""

import json

import pytest

from qdistill.cluster.cli import main


@pytest.fixture(scope="session")
def small_teacher(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    code = main(["train-teacher", "--env", "CartPole-v1", "--steps", "10000", "--no-target",
                 "--out", str(out), "--quiet", "--seed", "0"])
    assert code == 0
    return out, json.loads((out / "summary.json").read_text())
