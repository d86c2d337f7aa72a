"""Connect to Ray: an embedded local runtime by default, or an existing cluster by address."""

from __future__ import annotations

import logging
import os

import ray


def connect(address: str | None, *, min_cpus: float = 0) -> None:
    """No address → start an embedded local Ray runtime (no dashboard, quiet logs)."""
    if ray.is_initialized():
        return
    if address is None:
        ray.init(
            num_cpus=max(os.cpu_count() or 1, int(-(-min_cpus // 1))),
            include_dashboard=False,
            logging_level=logging.ERROR,  # the embedded runtime's start-up notices are not the user's concern
        )
    else:
        ray.init(address=address, logging_level=logging.WARNING)
