"""The size search's rule (`qdistill shrink`), on small cases: which candidates each rung drops,
and which one wins."""

import math

import pytest

from qdistill.cluster.driver.search import RUNGS, WINDOW, SizeSearch

PARAMS = {"a": 10, "b": 20, "c": 40, "d": 80, "e": 160}


def test_rungs_fall_at_an_eighth_a_quarter_and_half_the_budget():
    search = SizeSearch(0.95, PARAMS)
    assert RUNGS == (0.125, 0.25, 0.5)
    assert not search.due(0.12) and search.due(0.125)
    search.halve(env_steps=1, figures={})
    assert not search.due(0.2) and search.due(0.25)
    search.halve(env_steps=2, figures={})
    search.halve(env_steps=3, figures={})
    assert not search.due(1.0)  # three rungs and no more


def test_each_rung_drops_the_lower_half_by_score_capped_at_the_threshold_then_size():
    search = SizeSearch(0.95, PARAMS)
    assert search.active == ["a", "b", "c", "d", "e"]  # smallest first
    # a and b below the threshold; c, d, e at or above it: alike, so the smaller of them rank first
    search.observe({"a": 50.0, "b": 94.0, "c": 95.0, "d": 120.0, "e": 99.0})
    dropped = search.halve(env_steps=100, figures={"a": {"eval/return": 5.0}})
    assert dropped == ["a", "b"] and search.active == ["c", "d", "e"]  # ceil(5 / 2) = 3 kept
    assert search.dropped["a"] == {"at_env_steps": 100, "at_rung": 0.125, "ranked_pct_of_teacher": 50.0,
                                   "eval/return": 5.0}
    # a candidate with no finite figure yet ranks last; a dropped one's scores are not kept
    search.observe({"a": 200.0, "d": math.nan})
    search.scores.pop("d")
    assert search.halve(env_steps=200, figures={}) == ["d"] and "a" not in search.scores
    assert search.active == ["c", "e"] and search.dropped["d"]["ranked_pct_of_teacher"] is None
    search.observe({"c": 60.0, "e": 90.0})  # c: mean(95, 60) = 77.5; e: mean(99, 90) = 94.5
    assert search.halve(env_steps=300, figures={}) == ["c"]  # both below: the higher stays
    assert search.active == ["e"] and search.rung == 3


def test_a_candidate_ranks_by_the_mean_of_its_last_five_evaluations_not_its_luckiest():
    search = SizeSearch(0.95, {"small": 10, "large": 100})
    assert WINDOW == 5
    for small, large in [(0.0, 0.0), (77.0, 110.0), (118.0, 92.0), (93.0, 98.0), (80.0, 104.0), (79.0, 113.0)]:
        search.observe({"small": small, "large": large})
    # small's best (118) clears 95 and would win on size; its last five average 89.4, large's 103.4
    assert search.scores == {"small": [77.0, 118.0, 93.0, 80.0, 79.0], "large": [110.0, 92.0, 98.0, 104.0, 113.0]}
    assert search.ranked_score("small") == pytest.approx(89.4) and search.ranked_score("large") == pytest.approx(103.4)
    assert search.halve(env_steps=1, figures={}) == ["small"] and search.active == ["large"]


def test_the_winner_is_the_smallest_left_whose_interval_clears_the_threshold():
    search = SizeSearch(0.9, PARAMS, active=["b", "c", "d"])
    assert search.threshold == 90.0
    assert search.winner({"b": 89.9, "c": 90.0, "d": 99.0}) == "c"
    assert search.winner({"b": 50.0, "c": 80.0, "d": 85.0}) is None
    assert search.winner({"a": 99.0}) is None  # only candidates left can win


def test_state_round_trips():
    search = SizeSearch(0.95, PARAMS)
    search.observe({"a": 100.0, "c": 40.0})
    search.halve(env_steps=7, figures={})
    search.observe({"a": 90.0})
    again = SizeSearch(0.95, PARAMS)
    again.restore(search.state())
    assert (again.active, again.dropped, again.rung, again.scores) == \
        (search.active, search.dropped, search.rung, search.scores)
    assert again.scores == {"a": [100.0, 90.0], "c": [40.0]}


@pytest.mark.parametrize("keep", [0.0, -1.0, 1.6])
def test_a_keep_out_of_range_is_refused(keep):
    from qdistill.cluster.config import DistillRunConfig
    from qdistill.learners.configs import DistillConfig

    with pytest.raises(ValueError, match=rf"^keep {keep} is not valid: expected the share of the teacher's return the "
                                         r"student must keep, a number in \(0, 1.5\] \(e.g. 0.95\)$"):
        DistillRunConfig(env="CartPole-v1", out="x", steps=10, search_keep=keep,
                         distill=DistillConfig(students=("8", "16")))


def test_weight_bytes_count_inner_dense_layers_as_int8_and_a_shared_trunk_once():
    from qdistill.cluster.rundir.search import weight_bytes
    from qdistill.learners.multitask import build
    from qdistill.learners.networks import QNetwork

    # 16x16 on CartPole: 4x16+16, 16x16+16, 16x2+2 = 386 params; only the 16x16 layer's weights go to int8
    assert weight_bytes(QNetwork("16x16", (4,), 2)) == {"float_bytes": 4 * 386, "int8_bytes": 4 * 386 - 4 * 256 + 256 + 4 * 16}
    # a multi-task 16x16 over CartPole and Acrobot: an input layer and a head per task around one shared 16x16 layer
    whole = build("16x16", [((4,), 2), ((6,), 3)], inputs="per-task")
    params = (4 * 16 + 16) + (6 * 16 + 16) + (16 * 16 + 16) + (16 * 2 + 2) + (16 * 3 + 3)
    assert weight_bytes(whole, list(whole.tasks)) == {"float_bytes": 4 * params,
                                                      "int8_bytes": 4 * params - 4 * 256 + 256 + 4 * 16}
    assert weight_bytes(QNetwork("c8k3s1-16", (10, 10, 4), 3))["int8_bytes"] is None  # conv nets have no int8 form
