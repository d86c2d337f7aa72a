"""The labels a distillation learner trains on: stale ones relabelled with the newest teacher."""

import numpy as np

from qdistill.cluster.driver.labels import RELABEL_ROWS, Labels
from qdistill.learners import checkpoint
from qdistill.learners.networks import QNetwork, to_numpy
from tests.support.batches import labelled_batch


def test_a_chunks_stale_labels_are_relabelled_in_pieces_with_the_newest_teacher():
    net = QNetwork("8", (4,), 2)
    labels = Labels(checkpoint.Checkpoint("8", (4,), 2, "CartPole-v1", 3, to_numpy(net.state_dict())), bound=1)
    rng = np.random.default_rng(0)
    n = 2 * RELABEL_ROWS + 100  # three forward passes
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    batch = labelled_batch(obs, np.zeros((n, 2), np.float32))
    lag = rng.integers(0, 4, n)  # 2 and 3 are past the bound
    batch.label_version[:] = 3 - lag
    stale = lag > 1
    ids = np.arange(n) + 10_000

    writes, most = labels.within_bound(ids, batch)

    newest = labels.policy.q_values(obs)
    np.testing.assert_allclose(batch.teacher_q[stale], newest[stale], rtol=1e-6)
    assert (batch.teacher_q[~stale] == 0).all()  # within the bound: left as they were
    assert batch.label_version.tolist() == np.where(stale, 3, 3 - lag).tolist()
    [(written_ids, written_q, version)] = writes
    assert written_ids.tolist() == ids[stale].tolist() and version == 3
    np.testing.assert_array_equal(written_q, batch.teacher_q[stale])
    assert most == 1 and labels.counters["labels/relabelled_on_sample"] == int(stale.sum())
    assert labels.lag_sampled[:4].tolist() == np.bincount(lag, minlength=4).tolist()
    assert labels.lag_used[:2].tolist() == [int((lag == 0).sum() + stale.sum()), int((lag == 1).sum())]
