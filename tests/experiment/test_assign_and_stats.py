"""Arm assignment (stable, balanced, salted) and the user-clustered intervals (known answers, coverage)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adrec.exceptions import ValidationError
from adrec.experiment import assign_arms, compare_ratios, ratio_estimate
from adrec.experiment.stats import Z95

USERS = [f"u{i:06d}" for i in range(20_000)]


def test_assignment_is_stable_and_balanced_by_traffic() -> None:
    arms = assign_arms(USERS, [1, 1, 2], "s1")
    assert np.array_equal(arms, assign_arms(USERS, [1, 1, 2], "s1"))  # the same user always lands in the same arm
    assert np.array_equal(arms[5000:6000], assign_arms(USERS[5000:6000], [1, 1, 2], "s1"))  # not by position
    shares = np.bincount(arms, minlength=3) / len(USERS)
    # Binomial standard deviation of a share near 0.25 over 20,000 users: 0.003; allow four.
    np.testing.assert_allclose(shares, [0.25, 0.25, 0.5], atol=0.012)


def test_another_salt_reshuffles_users_independently() -> None:
    a, b = assign_arms(USERS, [1, 1], "s1"), assign_arms(USERS, [1, 1], "s2")
    agree = float((a == b).mean())
    assert abs(agree - 0.5) < 0.02  # independent halves agree half of the time


def test_traffic_shares_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="traffic"):
        assign_arms(USERS[:3], [1, 0], "s")


def test_ratio_estimate_known_answer() -> None:
    # y = (1, 0, 2), n = (2, 1, 3): R = 3/6; residuals y - R n = (0, -0.5, 0.5); Σr² = 0.5;
    # var = 0.5 / 6² × 3/2 = 1/48.
    est = ratio_estimate([1, 0, 2], [2, 1, 3])
    assert est.mean == pytest.approx(0.5)
    assert est.se == pytest.approx(math.sqrt(1 / 48))
    half = Z95 * math.sqrt(1 / 48)
    assert (est.ci_low, est.ci_high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert math.isnan(ratio_estimate([], []).mean)


def test_comparison_known_answer() -> None:
    a = ratio_estimate([3, 1, 2, 2], [10, 10, 10, 10])  # 0.2; residuals (1, -1, 0, 0): var = 2/1600 × 4/3
    b = ratio_estimate([1, 1, 2, 0], [10, 10, 10, 10])  # 0.1; residuals (0, 0, 1, -1): the same variance
    se = math.sqrt(2 * (2 / 1600 * 4 / 3))
    c = compare_ratios("a", "b", "ctr", a, b)
    assert c.difference == pytest.approx(0.1)
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.1 - Z95 * se), pytest.approx(0.1 + Z95 * se))
    assert c.lift == pytest.approx(1.0)
    assert c.p_value == pytest.approx(math.erfc(0.1 / se / math.sqrt(2)))
    assert c.lift_ci_low < 1.0 < c.lift_ci_high


def test_intervals_cover_the_truth_95_percent_of_the_time_with_clustered_users() -> None:
    # Users differ in their click rate (clustering) and in their number of impressions: a per-impression binomial
    # interval would be too narrow; the clustered one must cover the true CTR about 95 % of the time.
    rng = np.random.default_rng(0)
    covered = 0
    trials = 400
    for _ in range(trials):
        n = rng.integers(1, 40, size=300)
        p = rng.beta(0.5, 20, size=300)  # heterogeneous users, mean 0.0244
        y = rng.binomial(n, p)
        est = ratio_estimate(y, n)
        covered += est.ci_low <= 0.5 / 20.5 <= est.ci_high
    assert 0.92 <= covered / trials <= 0.98


def test_a_metric_an_arm_cannot_measure_is_unknown_not_significant() -> None:
    # An arm without clicks has no CVR: its comparison used to come out with p = 0 ("significant").
    none = ratio_estimate([0, 0, 0], [0, 0, 0])
    c = compare_ratios("a", "b", "cvr", none, ratio_estimate([1, 0, 2], [3, 4, 5]))
    assert math.isnan(none.mean) and math.isnan(c.p_value) and math.isnan(c.difference)
