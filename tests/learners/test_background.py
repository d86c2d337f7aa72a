"""Students stepped on a worker thread: the same steps as on the caller's, their Updates handed over
on the caller's thread in order, the learner read only between steps, errors raised to the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from qdistill.learners.background import BackgroundSteps
from qdistill.learners.batch import Update
from qdistill.learners.configs import DistillConfig
from qdistill.learners.distill import METRICS_EVERY, DistillLearner
from tests.support.batches import labelled_batch


def _batches(n: int) -> list:
    rng = np.random.default_rng(0)
    return [labelled_batch(rng.normal(size=(32, 4)).astype(np.float32), rng.normal(size=(32, 2)).astype(np.float32))
            for _ in range(n)]


def _run(background: bool) -> tuple[DistillLearner, list[tuple[int, int, dict]]]:
    learner = DistillLearner(DistillConfig(students=("16x16", "8")), [((4,), 2)], seed=0)
    done: list[tuple[int, int, dict]] = []  # (thread, the learner's steps then, metrics) per Update
    steps = BackgroundSteps(learner, lambda u: done.append((threading.get_ident(), steps.steps, u.metrics)),
                            background=background)
    for batch in _batches(METRICS_EVERY + 2):
        steps.submit(batch)
    steps.wait()
    steps.close()
    return learner, done


def test_background_steps_are_the_caller_threads_steps_to_the_bit():
    inline, inline_done = _run(background=False)
    behind, behind_done = _run(background=True)
    me = threading.get_ident()
    assert [(t, n) for t, n, _ in behind_done] == [(me, n) for n in range(1, METRICS_EVERY + 3)]
    assert [m for _, _, m in behind_done] == [m for _, _, m in inline_done]
    assert [bool(m) for _, _, m in behind_done] == [n % METRICS_EVERY == 0 for n in range(METRICS_EVERY + 2)]
    for name in ("16x16", "8"):
        a, b = inline.students[name].state_dict(), behind.students[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


class _Gated:
    """A learner whose step waits for `go`, then counts itself and says whether its thread
    flushes subnormal floats (1e-30 × 1e-9 is one)."""

    def __init__(self) -> None:
        self.go, self.steps = threading.Event(), 0

    def step(self, batch: object) -> Update:
        self.go.wait(30)
        self.steps += 1
        return Update({"flushed": float((torch.tensor([1e-30]) * torch.tensor([1e-9])).item() == 0.0)})


def test_the_learner_is_read_only_once_the_step_in_flight_is_done_and_the_worker_flushes_subnormals():
    gated, done = _Gated(), []
    steps = BackgroundSteps(gated, lambda u: done.append(u.metrics), background=True)
    steps.submit(None)
    assert done == [] and gated.steps == 0  # submit returned with the step waiting
    threading.Timer(0.05, gated.go.set).start()
    assert steps.steps == 1  # the read waited for the step
    assert done == [{"flushed": 1.0}]
    steps.close()


def test_an_error_on_the_worker_is_raised_to_the_caller_at_its_next_use():
    learner = DistillLearner(DistillConfig(students=("16x16",)), [((4,), 2)], seed=0)
    steps = BackgroundSteps(learner, lambda u: None, background=True)
    wrong = labelled_batch(np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32))  # 3 features, not 4
    steps.submit(wrong)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        steps.weights()
    assert steps.steps == 0  # the failed step is gone: the learner reads as before it
    steps.close()
