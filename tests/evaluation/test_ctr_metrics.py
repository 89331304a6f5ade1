"""Click metrics against brute-force definitions and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adrec.evaluation.ctr import (
    auc,
    click_metrics,
    ece,
    field_calibration,
    gain_captured,
    group_auc,
    logloss,
    pcoc,
)


def _pairs_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_the_share_of_ordered_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.3).astype(float)
    p = np.round(rng.random(300), 1)  # many ties
    assert auc(y, p) == pytest.approx(_pairs_auc(y, p))


def test_auc_known_answers() -> None:
    y = np.array([0, 0, 1, 1.0])
    assert auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(y, np.full(4, 0.5)) == 0.5
    assert math.isnan(auc(np.zeros(3), np.array([0.1, 0.2, 0.3])))


@pytest.mark.parametrize("seed", range(3))
def test_group_auc_is_the_impression_weighted_mean_of_per_group_auc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 12, 400).astype(str)
    y = (rng.random(400) < 0.25).astype(float)
    p = np.round(rng.random(400), 2)
    per, weights = [], []
    for g in np.unique(groups):
        m = groups == g
        if 0 < y[m].sum() < m.sum():
            per.append(_pairs_auc(y[m], p[m]))
            weights.append(m.sum())
    assert group_auc(y, p, groups) == pytest.approx(np.average(per, weights=weights))


def test_logloss_pcoc_and_ece_known_answers() -> None:
    assert logloss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert pcoc([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(2.0)
    # Each of two equal-mass bins predicts its own click rate exactly: no calibration error.
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0.0])
    assert ece(y, np.array([0.25] * 4 + [0.75] * 4), bins=2) == pytest.approx(0.0)
    # Predicting 0.5 for bins whose rates are 0.25 and 0.75 is off by 0.25 in each.
    assert ece(y, np.full(8, 0.5), bins=2) == pytest.approx(0.25)


def test_field_calibration_names_the_overpredicted_value() -> None:
    y = np.array([1, 0, 0, 0] * 500, dtype=float)
    p = np.full(2000, 0.25)
    values = np.repeat(["a", "b"], 1000)  # each holds the pattern 1, 0, 0, 0: a click rate of 0.25
    p[values == "b"] = 0.30  # b is over-predicted by 20 %
    got = field_calibration(y, p, values, min_count=500)
    assert got["a"]["pcoc"] == pytest.approx(1.0)
    assert got["b"]["pcoc"] == pytest.approx(1.2)
    assert got["b"]["error"] == pytest.approx(0.2)
    assert field_calibration(y, p, values, min_count=1001) == {}
    report = click_metrics(y, p, fields={"advertiser": values}, min_count=500)
    assert report["advertiser_max_error"] == pytest.approx(0.2)
    assert "advertiser_max_truth_error" not in report


def test_field_calibration_against_the_truth_is_free_of_click_noise() -> None:
    """Two advertisers whose true rate is 2 %: few clicks make the observed PCOC swing, the truth does not."""
    rng = np.random.default_rng(0)
    values = np.repeat(["a", "b"], 1000)
    truth = np.full(2000, 0.02)
    y = (rng.random(2000) < truth).astype(float)
    p = np.where(values == "b", 0.024, 0.02)  # b over-predicted by 20 %
    got = field_calibration(y, p, values, min_count=1000, truth=truth)
    assert got["a"]["vs_truth"] == pytest.approx(1.0) and got["b"]["truth_error"] == pytest.approx(0.2)
    report = click_metrics(y, p, fields={"advertiser": values}, min_count=1000, truth=truth)
    assert report["advertiser_max_truth_error"] == pytest.approx(0.2)


def test_gain_captured() -> None:
    assert gain_captured(0.10, 0.08, 0.06) == pytest.approx(0.5)
    assert math.isnan(gain_captured(0.1, 0.1, 0.1))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="0 and 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="probabilities"):
        logloss([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="same length"):
        pcoc([0, 1], [0.1])
