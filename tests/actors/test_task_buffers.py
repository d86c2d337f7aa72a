"""A multi-task run's buffer: a buffer per task, through both backends, sampled in exact counts."""

import numpy as np
import pytest
import ray

from qdistill.actors.balance import TaskBalance, parse_balance
from qdistill.actors.buffer_client import RedisBufferClient, ShardedBuffer
from qdistill.actors.redis_buffer import RedisSpec
from qdistill.actors.sinks import open_sink
from qdistill.actors.task_buffers import TaskBuffers
from qdistill.actors.wire import Schema
from qdistill.learners.batch import TransitionBatch

SCHEMAS = [Schema((2,), 2, next_obs=False), Schema((3,), 3, next_obs=False), Schema((1, 2, 2), 4, "uint8", False)]


def _rows(task: int, start: int, n: int) -> TransitionBatch:
    """Task `task`'s rows; every field holds the row's sequence number (frames: modulo 256)."""
    schema, seq = SCHEMAS[task], np.arange(start, start + n)
    obs = np.broadcast_to(seq.reshape(-1, *[1] * len(schema.obs_shape)), (n, *schema.obs_shape))
    return TransitionBatch(
        observations=(obs % 256).astype(schema.obs_dtype), actions=seq.astype(np.int64), rewards=seq.astype(np.float32),
        next_observations=None, terminations=np.zeros(n, bool), truncations=np.zeros(n, bool),
        teacher_q=np.repeat(seq[:, None], schema.n_actions, axis=1).astype(np.float32),
        label_version=np.zeros(n, np.int64), behaviour=np.zeros(n, np.int8), actor_id=np.zeros(n, np.int32),
        task=np.full(n, task, np.int16))


@pytest.fixture(params=["ray", "redis"])
def task_buffers(request):
    made = []

    def make(balance="equal", unit=1):
        if request.param == "ray":
            request.getfixturevalue("ray_session")
            buffers = [ShardedBuffer(2, 1000, seed=t) for t in range(len(SCHEMAS))]
        else:
            url, prefix = request.getfixturevalue("redis_server").url, request.getfixturevalue("redis_prefix")
            buffers = [RedisBufferClient(RedisSpec(url, f"{prefix}:task{t}", 1000, 16, s), seed=t)
                       for t, s in enumerate(SCHEMAS)]
        made.extend(buffers)
        tb = TaskBuffers(buffers, TaskBalance(parse_balance(balance, len(SCHEMAS))), unit=unit)
        for task in range(len(SCHEMAS)):
            for actor in range(2):
                sink = open_sink(tb.sink_for(actor, task), seed=actor)
                sink.add(_rows(task, 100 * actor, 50))
                sink.flush()
        return tb

    yield make
    for buffer in made:
        for actor in buffer.actors():
            ray.kill(actor)
        if isinstance(buffer, RedisBufferClient):
            buffer.close()


def _check(sample, expected_counts):
    assert [(task, len(rows)) for task, _, rows in sample] == [(t, n) for t, n in enumerate(expected_counts) if n]
    for task, ids, rows in sample:
        assert (rows.task == task).all() and rows.task.dtype == np.int16
        assert rows.observations.shape[1:] == SCHEMAS[task].obs_shape
        assert rows.observations.dtype == np.dtype(SCHEMAS[task].obs_dtype)
        assert rows.teacher_q.shape[1] == SCHEMAS[task].n_actions
        assert len(ids) == len(rows)
        seq = rows.actions
        assert set(seq) <= set(range(50)) | set(range(100, 150))
        np.testing.assert_array_equal(rows.teacher_q[:, -1], seq)
        np.testing.assert_array_equal(rows.observations.reshape(len(rows), -1)[:, 0], seq % 256)


def test_equal_balance_gives_each_task_its_rows_exactly_and_in_its_own_shape(task_buffers):
    tb = task_buffers()
    for counts in ([86, 85, 85], [85, 86, 85], [85, 85, 86]):
        _check(tb.sample(256), counts)


def test_a_stated_balance_and_whole_minibatches_per_task(task_buffers):
    _check(task_buffers("2:1:1").sample(256), [128, 64, 64])
    tb = task_buffers(unit=64)  # one task per minibatch of 64
    assert [[(task, len(rows)) for task, _, rows in tb.sample(64)] for _ in range(3)] == [[(0, 64)], [(1, 64)], [(2, 64)]]
    _check(tb.sample(191), [64, 64, 0])  # rounded down to whole units: 2 of them, to the tasks owed most
    _check(tb.sample(192), [64, 64, 64])


def test_relabel_reaches_the_rows_of_its_own_task_only(task_buffers):
    tb = task_buffers()
    (_, ids, rows), = [part for part in tb.sample(30) if part[0] == 1]
    tb.relabel(1, ids, np.full((len(ids), 3), -1.0, np.float32), version=7)
    stats_before = tb.stats()
    for task, _, got in tb.sample(3000):
        relabelled = got.label_version == 7
        assert relabelled.any() == (task == 1)
        assert (got.teacher_q[relabelled] == -1).all() and set(got.actions[relabelled]) <= set(rows.actions)
    assert stats_before["buffer/inserted"] == 300
    assert [stats_before[f"buffer/task{t}/inserted"] for t in range(3)] == [100, 100, 100]


def test_bad_arguments_are_refused_in_one_line(task_buffers):
    tb = task_buffers(unit=64)
    with pytest.raises(ValueError, match=r"^a sample of 63 rows is smaller than one unit of 64 rows$"):
        tb.sample_async(63)
    with pytest.raises(ValueError, match=r"^3 task buffers for a balance over 2 tasks$"):
        TaskBuffers(tb.buffers, TaskBalance(parse_balance("equal", 2)))
