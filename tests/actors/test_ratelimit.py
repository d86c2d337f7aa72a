"""The samples-per-insert rate limiter's arithmetic (Reverb's SampleToInsertRatio semantics)."""

import pytest

from qdistill.actors.ratelimit import SampleToInsertRatio

# 2 samples per insert, sampling from 100 rows on, 40 sampled rows of slack either way
LIMIT = SampleToInsertRatio(samples_per_insert=2.0, min_size_to_sample=100, tolerance=40)


def test_no_sample_before_the_minimum_and_inserts_never_wait_until_then():
    assert not LIMIT.can_sample(99, 0, 1)
    assert LIMIT.can_sample(100, 0, 40) and not LIMIT.can_sample(100, 0, 41)  # offset 200 - tolerance 40
    assert LIMIT.can_insert(99, 0, 10_000)  # still filling: even a large insert goes in


def test_inserts_wait_when_the_learner_falls_behind():
    # 120 rows in, nothing sampled: diff 240 = offset 200 + tolerance 40, the most allowed
    assert LIMIT.can_insert(100, 0, 20) and not LIMIT.can_insert(100, 0, 21)
    assert not LIMIT.can_insert(120, 0, 1)
    assert LIMIT.can_insert(120, 2, 1)  # two rows sampled make room for one more insert


def test_samples_wait_when_data_is_too_thin():
    # 150 rows in, 140 sampled: diff 160 = offset 200 - tolerance 40, the least allowed
    assert not LIMIT.can_sample(150, 140, 1)
    assert LIMIT.can_sample(151, 140, 2) and not LIMIT.can_sample(151, 140, 3)


def test_steady_state_keeps_the_ratio_within_the_tolerance():
    inserted = sampled = 0
    for _ in range(1_000):  # an eager actor adding 10 rows and an eager learner sampling 16 at a time
        if LIMIT.can_insert(inserted, sampled, 10):
            inserted += 10
        if LIMIT.can_sample(inserted, sampled, 16):
            sampled += 16
        if inserted >= LIMIT.min_size_to_sample:
            assert LIMIT.offset - LIMIT.tolerance <= inserted * 2 - sampled <= LIMIT.offset + LIMIT.tolerance
    assert inserted > 1_000 and abs(sampled / (inserted - 100) - 2.0) < 0.05


def test_a_tolerance_too_small_for_the_sizes_is_refused():
    LIMIT.check_sizes(insert=12, sample=56)  # (12 * 2 + 56) / 2 = 40: just enough
    with pytest.raises(ValueError) as err:
        LIMIT.check_sizes(insert=13, sample=56)
    assert str(err.value) == ("rate tolerance 40 is too small for inserts of 13 rows and samples of 56 at 2 samples "
                              "per insert: expected at least 41 rows")


@pytest.mark.parametrize("kwargs, message", [
    ({"samples_per_insert": 0}, "samples_per_insert 0 is not valid: expected a number > 0"),
    ({"min_size_to_sample": 0}, "min_size_to_sample 0 is not valid: expected an integer >= 1"),
    ({"tolerance": -1}, "rate tolerance -1 is not valid: expected a number of rows >= 0"),
])
def test_bad_limits(kwargs, message):
    with pytest.raises(ValueError) as err:
        SampleToInsertRatio(**{"samples_per_insert": 1.0, "min_size_to_sample": 1, "tolerance": 0, **kwargs})
    assert str(err.value) == message
