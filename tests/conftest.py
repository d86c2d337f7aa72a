"""Shared fixtures: one real local Ray runtime for the whole session."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import ray

from qdistill.cluster.cli import main
from tests.support import teachers
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
    """A CartPole teacher that plays 500 on every held-out episode (tests/support/teachers.py)."""
    return teachers.steady_teacher(tmp_path_factory.mktemp("steady") / "teacher.pt")
