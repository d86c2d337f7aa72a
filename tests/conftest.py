"""Shared fixtures: one real local Ray runtime for the whole session."""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

import pytest
import ray

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers: redis_server
from redis_server import RedisServer  # noqa: E402


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
