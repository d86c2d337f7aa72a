"""A learner restored from its saved state takes exactly the step the original would have taken."""

import numpy as np
import pytest
import torch

from qdistill.learners import checkpoint
from qdistill.learners.configs import DistillConfig
from qdistill.learners.distill import DistillLearner
from qdistill.learners.configs import DQNConfig
from qdistill.learners.dqn import DQNLearner
from tests.support.batches import labelled_batch, sequence_batch


def _distill_step(learner: DistillLearner, rng: np.random.Generator) -> dict[str, float]:
    return learner.step(labelled_batch(rng.normal(size=(32, 4)).astype(np.float32),
                                       rng.normal(size=(32, 2)).astype(np.float32))).metrics


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_distill_learner_resumes_where_it_stopped(tmp_path):
    cfg = DistillConfig(students=("16x16", "8"))
    original = DistillLearner(cfg, [((4,), 2)], seed=0)
    for _ in range(5):
        _distill_step(original, np.random.default_rng(1))
    checkpoint.save_state(tmp_path / "state.pt", {"learner": original.state_dict()})
    resumed = DistillLearner(cfg, [((4,), 2)], seed=123)  # other initial weights, fresh optimisers
    resumed.load_state_dict(checkpoint.load_state(tmp_path / "state.pt")["learner"])
    assert resumed.steps == 5
    # the next step, Adam moments included, is the same to the bit
    assert _distill_step(resumed, np.random.default_rng(2)) == _distill_step(original, np.random.default_rng(2))
    for name in cfg.students:
        assert _same(resumed.students[name].state_dict(), original.students[name].state_dict())


def test_dqn_learner_resumes_where_it_stopped(tmp_path):
    cfg = DQNConfig(net="32", batch_size=8, target_update=3)
    original = DQNLearner(cfg, [((2,), 2)], seed=0)
    batch = sequence_batch(0, 8, task=0)
    batch.actions %= 2
    for _ in range(4):
        original.step(batch)
    checkpoint.save_state(tmp_path / "state.pt", {"learner": original.state_dict()})
    resumed = DQNLearner(cfg, [((2,), 2)], seed=7)
    resumed.load_state_dict(checkpoint.load_state(tmp_path / "state.pt")["learner"])
    assert resumed.steps == 4
    mine, theirs = resumed.step(batch), original.step(batch)
    assert mine.metrics == theirs.metrics and np.array_equal(mine.q_values, theirs.q_values)
    assert _same(resumed.q.state_dict(), original.q.state_dict())
    assert _same(resumed.q_target.state_dict(), original.q_target.state_dict())


def test_torn_run_state_is_refused(tmp_path):
    path = checkpoint.save_state(tmp_path / "state.pt", {"steps": 1})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(checkpoint.CheckpointError, match=r"^run state '.*state.pt' cannot be read: "):
        checkpoint.load_state(path)
