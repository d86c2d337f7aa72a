"""The task balance of a multi-task run's samples: exact counts."""

import numpy as np
import pytest

from qdistill.actors.balance import TaskBalance, parse_balance


def test_equal_weights_split_each_batch_within_one_row_and_rotate_the_extra_row():
    balance = TaskBalance(parse_balance("equal", 3))
    assert [balance.counts(256).tolist() for _ in range(4)] == [[86, 85, 85], [85, 86, 85], [85, 85, 86], [86, 85, 85]]
    assert balance.state() == [342, 341, 341]


def test_one_row_samples_go_round_robin_and_stated_weights_hold_exactly():
    balance = TaskBalance(parse_balance("equal", 3))
    assert [int(np.argmax(balance.counts(1))) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    weighted = TaskBalance(parse_balance("2:1:1", 3))
    assert [int(np.argmax(weighted.counts(1))) for _ in range(8)] == [0, 1, 2, 0, 0, 1, 2, 0]  # the most owed first
    assert weighted.counts(256).tolist() == [128, 64, 64]


@pytest.mark.parametrize("weights", ["1:0:3", "0.7:0.2:0.1", "5:3:1", "1:1:1:1:1"])
def test_every_task_stays_within_one_row_of_its_share_for_any_sample_sizes(weights):
    n_tasks = len(weights.split(":"))
    share = np.asarray(parse_balance(weights, n_tasks))
    balance = TaskBalance(tuple(share))
    rng, total = np.random.default_rng(0), 0
    for n in rng.integers(1, 300, 500):
        counts = balance.counts(int(n))
        total += n
        assert counts.sum() == n and (counts >= 0).all()
        assert np.abs(balance.given - total * share).max() < 1
    if "0" in weights.split(":"):
        assert balance.given[weights.split(":").index("0")] == 0


def test_a_resumed_balance_carries_on_where_it_stopped():
    first = TaskBalance(parse_balance("equal", 3))
    first.counts(256)
    resumed = TaskBalance(parse_balance("equal", 3))
    resumed.load(first.state())
    assert resumed.counts(256).tolist() == first.counts(256).tolist() == [85, 86, 85]


@pytest.mark.parametrize("text", ["1:1", "1:x:1", "0:0:0", "-1:1:1", "inf:1:1", ""])
def test_a_bad_balance_is_refused_in_one_line(text):
    with pytest.raises(ValueError, match=rf"^task balance {text!r} is not valid: expected 'equal' or 3 weights >= 0 "
                                         r"joined by ':' \(e\.g\. '1:1:1'\), one per task, not all 0$"):
        parse_balance(text, 3)
