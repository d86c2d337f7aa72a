"""A sampled chunk cut into minibatches: whole ones only, views of the chunk's arrays, every field."""

import numpy as np

from qdistill.cluster.driver.loop import minibatches
from qdistill.learners.batch import TransitionBatch


def _chunk(n: int, *, next_obs: bool) -> TransitionBatch:
    rows = np.arange(n)
    return TransitionBatch(
        observations=np.stack([rows, -rows], axis=1).astype(np.float32), actions=rows,
        rewards=rows.astype(np.float32),
        next_observations=(rows[:, None] + 0.5).astype(np.float32) if next_obs else None,
        terminations=rows % 2 == 0, truncations=rows % 3 == 0,
        teacher_q=np.stack([rows, rows], axis=1).astype(np.float32),
        label_version=rows, behaviour=(rows % 2).astype(np.int8), actor_id=(rows % 4).astype(np.int32),
        task=np.zeros(n, np.int16), horizon=(rows % 3 + 1).astype(np.int8) if next_obs else None)


def test_whole_minibatches_in_order_as_views_of_every_field():
    for next_obs in (True, False):
        chunk, ids = _chunk(10, next_obs=next_obs), np.arange(100, 110)
        parts = list(minibatches(ids, chunk, 4))
        assert [p_ids.tolist() for p_ids, _ in parts] == [[100, 101, 102, 103], [104, 105, 106, 107]]  # no 8, 9
        for i, (_, mb) in enumerate(parts):
            want = chunk.take(slice(4 * i, 4 * i + 4))
            for name in TransitionBatch.field_names():
                got, expected = getattr(mb, name), getattr(want, name)
                absent = not next_obs and name in ("next_observations", "horizon")
                assert (got is None) == (expected is None) == absent
                if got is not None:
                    assert np.array_equal(got, expected) and got.dtype == expected.dtype
                    assert np.shares_memory(got, getattr(chunk, name))  # a view, not a copy
