"""The buffers' rate limiter, in a Ray shard and in Redis: inserts wait while the learner is behind,
samples wait while data is too thin or below the minimum size, and lifting the limit lets all through."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import ray

from qdistill.actors.ratelimit import SampleToInsertRatio
from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
from qdistill.actors.buffer_client import ShardedBuffer
from qdistill.actors.wire import Schema
from tests.support.batches import sequence_batch

# 2 samples per insert from 100 rows on, 40 rows of slack: after 120 inserts and no samples the
# next insert waits; at 2 × inserted − sampled = 160 the next sample waits
LIMIT = SampleToInsertRatio(samples_per_insert=2.0, min_size_to_sample=100, tolerance=40)
HELD_S = 1.0  # how long a held call is watched to stay held (Redis; a Ray shard is checked by call order)


def test_a_ray_shard_holds_inserts_and_samples_by_the_ratio(ray_session):
    shard = ShardedBuffer(1, 1_000, limit=LIMIT).shards[0]
    try:
        def counts():  # asked after a held call, answered while it is held
            stats = ray.get(shard.stats.remote())
            return int(stats["buffer/inserted"]), int(stats["buffer/sampled"])

        early = shard.sample.remote(10)  # below the minimum size: held
        ray.get(shard.add.remote(sequence_batch(0, 99)))
        assert counts() == (99, 0)
        ray.get(shard.add.remote(sequence_batch(99, 1)))
        assert len(ray.get(early)[0]) == 10 and counts() == (100, 10)
        # the learner behind: 2 × 125 − 10 = 240 is the most allowed, one more row is held
        ray.get(shard.add.remote(sequence_batch(100, 25)))
        late = shard.add.remote(sequence_batch(125, 1))
        assert counts() == (125, 10)
        ray.get(shard.sample.remote(2))  # two sampled rows make room for it
        ray.get(late)
        assert counts() == (126, 12)
        # data too thin: 2 × 126 − 12 − 80 = 160 is the least allowed, one more sampled row is held
        ray.get(shard.sample.remote(80))
        thin = shard.sample.remote(1)
        assert counts() == (126, 92)
        ray.get(shard.add.remote(sequence_batch(126, 1)))
        assert len(ray.get(thin)[0]) == 1 and counts() == (127, 93)
        # lifting the limit lets a held insert through
        ray.get(shard.add.remote(sequence_batch(127, 39)))  # 2 × 166 − 93 = 239
        held = shard.add.remote(sequence_batch(166, 1))
        assert counts() == (166, 93)
        ray.get(shard.release.remote())
        ray.get(held)
        assert counts() == (167, 93)
    finally:
        ray.kill(shard)


def test_a_redis_buffer_holds_inserts_and_samples_by_the_ratio(redis_server, redis_prefix):
    spec = RedisSpec(redis_server.url, redis_prefix, 10_000, 1, Schema(obs_shape=(2,), n_actions=2), LIMIT)
    writer, learner = RedisBuffer(spec), RedisBuffer(spec, seed=1)
    pool = ThreadPoolExecutor(max_workers=1)

    def held(future) -> None:
        with pytest.raises(TimeoutError):
            future.result(timeout=HELD_S)

    try:
        def counts():
            stats = learner.stats()
            return int(stats["buffer/inserted"]), int(stats["buffer/sampled"])

        early = pool.submit(learner.sample, 10)
        writer.add(sequence_batch(0, 99))
        held(early)
        writer.add(sequence_batch(99, 1))
        assert len(early.result(timeout=30)[0]) == 10 and counts() == (100, 10)
        writer.add(sequence_batch(100, 25))
        late = pool.submit(writer.add, sequence_batch(125, 1))
        held(late)
        assert counts() == (125, 10)
        learner.sample(2)
        late.result(timeout=30)
        assert counts() == (126, 12)
        learner.sample(80)
        thin = pool.submit(learner.sample, 1)
        held(thin)
        writer.add(sequence_batch(126, 1))
        assert len(thin.result(timeout=30)[0]) == 1 and counts() == (127, 93)
        writer.add(sequence_batch(127, 39))
        last = pool.submit(writer.add, sequence_batch(166, 1))
        held(last)
        writer.release()
        last.result(timeout=30)
        assert counts() == (167, 93)
        np.testing.assert_array_equal(np.sort(learner.ids()), np.arange(167))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        writer.close()
        learner.close()
