"""Confidence intervals on known samples."""

import numpy as np
import pytest

from qdistill.actors.intervals import bootstrap, iqm, iqm_ci, mean_ci, percent_ci, percent_of


def test_the_mean_of_ten_zeros_and_ten_ones_has_the_binomial_quantiles_as_its_interval():
    # a resampled mean is Binomial(20, 1/2) / 20: P(X <= 5) = 0.021 < 2.5% < P(X <= 6) = 0.058 and
    # P(X <= 13) = 0.942 < 97.5% < P(X <= 14) = 0.979, so the 95% percentile interval is [6/20, 14/20]
    ci = mean_ci([0.0] * 10 + [1.0] * 10)
    assert (ci.value, ci.low, ci.high) == (0.5, 0.3, 0.7)


def test_a_constant_sample_has_no_width_and_a_normal_one_the_textbook_width():
    assert mean_ci([3.0] * 7).to_dict() == {"value": 3.0, "low": 3.0, "high": 3.0}
    x = np.random.default_rng(1).normal(10.0, 2.0, 2_000)
    ci, half = mean_ci(x), 1.96 * x.std() / np.sqrt(len(x))
    assert ci.value == pytest.approx(x.mean(), abs=1e-12)
    assert ci.low == pytest.approx(x.mean() - half, rel=2e-3) and ci.high == pytest.approx(x.mean() + half, rel=2e-3)


def test_percent_of_the_teacher_resamples_episode_pairs_together():
    teacher = np.array([10.0, 20.0, 30.0, 40.0])
    ci = percent_ci(teacher * 0.9, teacher)  # the student scores 90% on every seed: every resample says 90%
    assert (ci.value, ci.low, ci.high) == pytest.approx((90.0, 90.0, 90.0))
    unpaired = percent_ci(teacher[::-1] * 0.9, teacher)  # the same returns on other seeds: now resamples differ
    assert unpaired.value == pytest.approx(90.0) and unpaired.low < 80 and unpaired.high > 100


def test_percent_of_flips_for_negative_returns_and_is_nan_against_zero():
    assert percent_of(-100.0, -80.0) == pytest.approx(80.0)  # Acrobot: a student slower than its teacher
    assert percent_of(90.0, 100.0) == pytest.approx(90.0)
    assert np.isnan(percent_of(5.0, 0.0)) and percent_of(0.0, -3.0) == np.inf
    np.testing.assert_allclose(percent_of(np.array([50.0, -50.0]), np.array([100.0, -25.0])), [50.0, 50.0])


def test_the_interquartile_mean_cuts_a_quarter_at_each_end_weighting_a_fractional_cut():
    assert iqm(np.array([1.0, 2.0, 3.0, 100.0])) == 2.5
    assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1000.0])) == 3.5
    assert iqm(np.array([0.0, 4.0, 6.0, 8.0, 1000.0])) == pytest.approx((0.75 * 4 + 6 + 0.75 * 8) / 2.5)
    ci = iqm_ci([5.0, 5.0, 5.0])
    assert (ci.value, ci.low, ci.high) == (5.0, 5.0, 5.0)


@pytest.mark.parametrize("columns,level,message", [
    ([[]], 0.95, r"^a bootstrap needs paired samples of one length >= 1, not lengths \[0\]$"),
    ([[1.0, 2.0], [1.0]], 0.95, r"^a bootstrap needs paired samples of one length >= 1, not lengths \[2, 1\]$"),
    ([[1.0]], 1.0, r"^confidence level 1.0 is not valid: expected a number in \(0, 1\)$"),
])
def test_bad_samples_are_refused_in_one_line(columns, level, message):
    with pytest.raises(ValueError, match=message):
        bootstrap(lambda *c: c[0].mean(axis=1), [np.asarray(c) for c in columns], level=level)
