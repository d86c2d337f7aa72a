"""Shared fixtures: one real local Ray runtime for the whole session."""

from __future__ import annotations

import logging

import pytest
import ray


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray runtime, started once (ray.init takes seconds) and shut down at the end."""
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
