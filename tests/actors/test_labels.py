"""Labelled records: relabel in place, refresh next to the data, staleness accounting."""

import numpy as np
import pytest
import ray
import torch

from qdistill.actors.buffer import ReplayRing
from qdistill.actors.refresh import LabelRefresher, staleness
from qdistill.actors.remote import ParameterServerActor
from qdistill.actors.buffer_client import ShardedBuffer
from qdistill.learners.networks import QNetwork, to_numpy
from tests.support.batches import sequence_batch


def test_relabel_after_wrap_around_stays_aligned(make_buffer):
    ring = make_buffer(10)
    for start in range(0, 15, 5):
        ring.add(sequence_batch(start, 5))  # ids 5..14 stored, 0..4 evicted
    ids = np.array([14, 2, 7, 5])  # 2 was evicted
    new_q = np.array([[140, -14], [20, -2], [70, -7], [50, -5]], np.float32)
    assert ring.relabel(ids, new_q, version=3) == 3
    stored = ring.get(ring.ids())
    np.testing.assert_array_equal(stored.rewards, np.arange(5, 15))  # states untouched
    expected_q = np.stack([np.arange(5, 15), 2 * np.arange(5, 15)], axis=1).astype(np.float32)
    expected_q[[0, 2, 9]] = [[50, -5], [70, -7], [140, -14]]
    np.testing.assert_array_equal(stored.teacher_q, expected_q)
    np.testing.assert_array_equal(stored.label_version, [3, 0, 3, 0, 0, 0, 0, 0, 0, 3])
    # five more inserts overwrite ids 5..9: the relabelled 14 keeps its label, 5 and 7 are gone
    ring.add(sequence_batch(15, 5))
    after = ring.get(ring.ids())
    np.testing.assert_array_equal(after.rewards, np.arange(10, 20))
    np.testing.assert_array_equal(after.label_version, [0, 0, 0, 0, 3, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(after.teacher_q[4], [140, -14])
    assert ring.stats()["buffer/relabelled"] == 3


def test_stale_ids_oldest_first(make_buffer):
    ring = make_buffer(8)
    ring.add(sequence_batch(0, 4, version=1))
    ring.add(sequence_batch(4, 4, version=2))
    ring.add(sequence_batch(8, 2, version=1))  # ids 2..9 stored
    np.testing.assert_array_equal(ring.stale_ids(2, limit=10), [2, 3, 8, 9])
    np.testing.assert_array_equal(ring.stale_ids(2, limit=3), [2, 3, 8])
    np.testing.assert_array_equal(ring.stale_ids(3, limit=3), [2, 3, 4])
    assert ring.stale_ids(1, limit=10).size == 0


def test_refresher_relabels_chunk_by_chunk_with_its_teacher():
    ring = ReplayRing(100)  # the refresher works on the ring in-process (inside a shard, or a client)
    ring.add(sequence_batch(0, 10, version=0))
    net = QNetwork("4", (2,), 2)
    refresher = LabelRefresher("4", (2,), 2)
    assert refresher.refresh(ring, chunk=4) == 0  # no teacher yet
    refresher.load_teacher(1, to_numpy(net.state_dict()))
    assert [refresher.refresh(ring, chunk=4) for _ in range(4)] == [4, 4, 2, 0]
    stored = ring.get(ring.ids())
    with torch.no_grad():
        expected = net(torch.from_numpy(stored.observations)).numpy()
    # the refresher's numpy forward and torch's agree to float32 rounding (different summation orders)
    np.testing.assert_allclose(stored.teacher_q, expected, rtol=1e-5, atol=1e-7)
    assert (stored.label_version == 1).all()


def test_staleness_in_versions_and_seconds():
    published_at = {3: 100.0, 4: 110.0, 5: 130.0}
    lag, seconds = staleness(np.array([5, 4, 3, 5]), 5, published_at, now=140.0)
    np.testing.assert_array_equal(lag, [0, 1, 2, 0])
    # a version-4 label went out of date when 5 appeared (130 s); a version-3 one when 4 did (110 s)
    np.testing.assert_array_equal(seconds, [0.0, 10.0, 30.0, 0.0])


@pytest.mark.slow
def test_shards_refresh_next_to_their_data_and_route_relabels(ray_session):
    params = ParameterServerActor.remote()
    buffer = ShardedBuffer(2, 40)
    try:
        ray.get([buffer.shards[0].add.remote(sequence_batch(0, 6)), buffer.shards[1].add.remote(sequence_batch(100, 6))])
        net = QNetwork("4", (2,), 2)
        ray.get(params.publish.remote(7, to_numpy(net.state_dict())))
        buffer.attach_teacher(params, "4", (2,), 2)
        assert ray.get(buffer.refresh_async(4)) == [4, 4]
        assert ray.get(buffer.refresh_async(4)) == [2, 2]
        _, batch = buffer.sample(200)
        assert (batch.label_version == 7).all()
        with torch.no_grad():
            np.testing.assert_allclose(batch.teacher_q, net(torch.from_numpy(batch.observations)).numpy(),
                                       rtol=1e-5, atol=1e-7)  # numpy and torch: float32 rounding apart
        # relabel by global id: even ids live in shard 0, odd in shard 1
        ids = np.array([0, 1, 10])  # shard 0 id 0, shard 1 id 0, shard 0 id 5
        assert sum(ray.get(buffer.relabel(ids, np.full((3, 2), -1, np.float32), 9))) == 3
        ids, batch = buffer.sample(400)
        relabelled = np.isin(ids, [0, 1, 10])
        assert (batch.label_version[relabelled] == 9).all() and (batch.label_version[~relabelled] == 7).all()
        assert (batch.teacher_q[relabelled] == -1).all()
        np.testing.assert_array_equal(np.unique(batch.rewards[relabelled]), [0, 5, 100])
    finally:
        for handle in [params, *buffer.shards]:
            ray.kill(handle)
