"""The buffer contract: every test taking `make_buffer` runs unchanged against the Ray shard
(a ReplayRing inside a BufferShard actor) and the Redis backend."""

import numpy as np
import pytest
import ray

from qdistill.actors.buffer_client import ShardedBuffer
from qdistill.learners.batch import TransitionBatch
from tests.support.batches import sequence_batch

def _check_aligned(batch: TransitionBatch) -> None:
    seq = batch.actions
    np.testing.assert_array_equal(batch.rewards, seq)
    np.testing.assert_array_equal(batch.observations[:, 0], seq)
    np.testing.assert_array_equal(batch.observations[:, 1], -seq)
    np.testing.assert_array_equal(batch.next_observations[:, 0], seq + 1)
    np.testing.assert_array_equal(batch.terminations, seq % 3 == 0)
    np.testing.assert_array_equal(batch.truncations, seq % 5 == 0)
    np.testing.assert_array_equal(batch.teacher_q[:, 0], seq)
    np.testing.assert_array_equal(batch.task, seq % 7)
    assert batch.task.dtype == np.int16


def test_fifo_wrap_around_keeps_the_newest(make_buffer):
    ring = make_buffer(10)
    for start in range(15):  # 15 single adds into capacity 10
        ring.add(sequence_batch(start, 1))
    np.testing.assert_array_equal(ring.ids(), np.arange(5, 15))
    stored = ring.get(ring.ids())
    np.testing.assert_array_equal(stored.actions, np.arange(5, 15))
    _check_aligned(stored)
    assert ring.stats()["buffer/size"] == 10 and ring.stats()["buffer/inserted"] == 15


def test_wrap_around_in_uneven_chunks(make_buffer):
    ring = make_buffer(10)
    for start, n in [(0, 4), (4, 4), (8, 4), (12, 3)]:
        ring.add(sequence_batch(start, n))
    np.testing.assert_array_equal(ring.get(ring.ids()).actions, np.arange(5, 15))


def test_a_batch_larger_than_capacity_keeps_its_newest_rows(make_buffer):
    ring = make_buffer(4)
    ring.add(sequence_batch(0, 11))
    np.testing.assert_array_equal(ring.ids(), [7, 8, 9, 10])
    np.testing.assert_array_equal(ring.get(ring.ids()).actions, [7, 8, 9, 10])


def test_evicted_ids_cannot_be_read(make_buffer):
    ring = make_buffer(4)
    ring.add(sequence_batch(0, 6))
    with pytest.raises(KeyError):
        ring.get(np.array([1]))
    np.testing.assert_array_equal(ring.get(np.array([2, 5])).actions, [2, 5])


def test_sampling_is_uniform_over_stored_rows_and_aligned(make_buffer):
    ring = make_buffer(10, seed=1)
    ring.add(sequence_batch(0, 15))
    ids, batch = ring.sample(20_000)
    np.testing.assert_array_equal(batch.actions, ids)  # row i is the transition with id ids[i]
    _check_aligned(batch)
    counts = np.bincount(ids - 5, minlength=10)
    assert ids.min() == 5 and ids.max() == 14
    assert counts.min() > 1_800 and counts.max() < 2_200  # 2,000 expected each; ±10% is > 7σ
    assert ring.stats()["buffer/sampled"] == 20_000


def test_sample_refuses_bad_requests(make_buffer):
    ring = make_buffer(4)
    with pytest.raises(ValueError, match="cannot sample from an empty buffer"):
        ring.sample(1)
    ring.add(sequence_batch(0, 2))
    with pytest.raises(ValueError, match="batch size 0 is not valid: expected at least 1"):
        ring.sample(0)
    with pytest.raises(ValueError, match="buffer capacity 0 is not valid: expected at least 1 transition"):
        make_buffer(0)


def test_sharded_buffer_on_ray(ray_session):
    buffer = ShardedBuffer(2, 20, seed=0)
    try:
        ray.get([buffer.shards[0].add.remote(sequence_batch(0, 6, actor=0)),
                 buffer.shards[1].add.remote(sequence_batch(100, 4, actor=1))])
        stats = buffer.stats()
        assert stats["buffer/size"] == 10 and stats["buffer/capacity"] == 20
        ids, batch = buffer.sample(400)
        assert len(batch) == 400
        _check_aligned(batch)
        # global id = shard id × 2 + shard index: even ids came from shard 0, odd from shard 1
        np.testing.assert_array_equal(ids % 2, batch.actor_id)
        np.testing.assert_array_equal(np.where(ids % 2 == 0, ids // 2, ids // 2 + 100), batch.actions)
        assert (batch.actor_id == 0).sum() == 200
    finally:
        for shard in buffer.shards:
            ray.kill(shard)
