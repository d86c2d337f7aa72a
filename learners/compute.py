"""How a learner's thread sets torch up: its intra-op threads, and subnormal floats flushed to zero."""

from __future__ import annotations

import torch


def learner_torch(threads: int) -> None:
    """`threads` torch threads for this process; subnormal floats flushed to zero on the calling
    thread, the one a learner steps on (with one torch thread, all its work).

    Adam's first moment decays geometrically wherever a weight's gradient is zero (a dead ReLU
    unit's weights) and passes through the subnormal range, where each x86 float operation costs
    about a hundred cycles. On a 256x256 DQN step (batch 64, one thread) fused Adam took 0.85 ms
    with 70% of the middle layer's first moments subnormal, and 0.08 ms with them flushed. Only
    values below 1.2e-38 in magnitude are flushed."""
    torch.set_num_threads(threads)
    flush_subnormals()


def flush_subnormals() -> None:
    """Subnormal floats flushed to zero on the calling thread (a learner's worker thread calls it too)."""
    torch.set_flush_denormal(True)
