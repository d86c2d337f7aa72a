"""A learner's torch settings: its thread count, and subnormal floats flushed to zero."""

from __future__ import annotations

import torch

from qdistill.learners.compute import learner_torch

TINY, SCALE = torch.tensor([1e-30]), torch.tensor([1e-9])  # their product, 1e-39, is a subnormal float32


def _flushes() -> bool:
    return (TINY * SCALE).item() == 0.0


def test_learner_torch_sets_threads_and_flushes_subnormals():
    threads, flushed = torch.get_num_threads(), _flushes()
    try:
        torch.set_flush_denormal(False)
        assert 0.0 < (TINY * SCALE).item() < torch.finfo(torch.float32).smallest_normal  # kept by default
        learner_torch(1)
        assert torch.get_num_threads() == 1
        assert _flushes()
        assert (TINY * torch.tensor([1e-8])).item() == 0.0
        assert (TINY * torch.tensor([1e-7])).item() > 0.0  # 1e-37 is a normal float32: kept
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(flushed)
