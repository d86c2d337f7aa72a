"""Shared fixtures: one real local Ray runtime for the whole session."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import ray

from qdistill.cluster.cli import main
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray runtime, started once (ray.init takes seconds) and shut down at the end."""
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port, shared by the session; tests use own prefixes."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    return f"qdistill-test:{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def small_teacher(ray_session, tmp_path_factory):
    """A small CartPole teacher, trained once (train-teacher itself is under test in tests/e2e)."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    code = main(["train-teacher", "--env", "CartPole-v1", "--steps", "10000", "--no-target",
                 "--out", str(out), "--quiet", "--seed", "0"])
    assert code == 0
    return out, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="session")
def steady_teacher(tmp_path_factory) -> str:
    """A CartPole teacher that plays 500 on every held-out episode, made by hand, not trained: it
    pushes right when 0.1 x + 0.5 x' + theta + theta' > 0 (hidden units relu(+-w.x), one per
    action). Students of it reach 500 too, so runs compared within 5% are compared without the
    noise of a half-trained teacher's students."""
    import torch

    from qdistill.learners import checkpoint
    from qdistill.learners.networks import QNetwork, to_numpy

    w = torch.tensor([0.1, 0.5, 1.0, 1.0])
    net = QNetwork("2", (4,), 2)
    hidden, head = [m for m in net.layers if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        hidden.weight.copy_(torch.stack([w, -w]))
        hidden.bias.zero_()
        head.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # Q(left) = relu(-w.x), Q(right) = relu(w.x)
        head.bias.zero_()
    path = tmp_path_factory.mktemp("steady") / "teacher.pt"
    checkpoint.save(path, checkpoint.Checkpoint("2", (4,), 2, "CartPole-v1", 1, to_numpy(net.state_dict())))
    return str(path)
