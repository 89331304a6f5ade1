"""Metric functions: known answers and properties (Hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from adrec.evaluation import metrics as M

ALL = [M.precision, M.recall, M.f1, M.ndcg, M.hit_rate, M.average_precision]


@st.composite
def ranked_lists(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    n_users = draw(st.integers(1, 8))
    width = draw(st.integers(1, 12))
    hits = draw(hnp.arrays(bool, (n_users, width)))
    extra = draw(hnp.arrays(np.int64, (n_users,), elements=st.integers(0, 5)))
    n_rel = hits.sum(axis=1) + extra  # relevant items may lie outside the list
    k = draw(st.integers(1, width))
    return hits, n_rel, k


@given(ranked_lists())
def test_metrics_are_in_unit_interval_or_nan_without_relevant_items(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    hits, n_rel, k = case
    for metric in ALL:
        values = metric(hits, n_rel, k)
        assert values.shape == (hits.shape[0],)
        assert np.isnan(values[n_rel == 0]).all()
        ok = values[n_rel > 0]
        assert ((ok >= 0) & (ok <= 1 + 1e-12)).all(), metric.__name__


@given(ranked_lists())
def test_f1_is_the_harmonic_mean(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    hits, n_rel, k = case
    p, r, f = M.precision(hits, n_rel, k), M.recall(hits, n_rel, k), M.f1(hits, n_rel, k)
    valid = n_rel > 0
    expected = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    np.testing.assert_allclose(f[valid], expected[valid])


@given(st.integers(1, 20), st.integers(1, 20))
def test_a_perfect_ranking_scores_one(n_relevant: int, k: int) -> None:
    width = max(k, n_relevant)
    hits = np.zeros((1, width), dtype=bool)
    hits[0, :n_relevant] = True  # every relevant item ranked first
    n_rel = np.array([n_relevant])
    assert M.ndcg(hits, n_rel, k)[0] == pytest.approx(1.0)
    assert M.average_precision(hits, n_rel, k)[0] == pytest.approx(1.0)
    assert M.hit_rate(hits, n_rel, k)[0] == 1.0
    assert M.recall(hits, n_rel, k)[0] == pytest.approx(min(n_relevant, k) / n_relevant)
    assert M.precision(hits, n_rel, k)[0] == pytest.approx(min(n_relevant, k) / k)


@given(ranked_lists())
def test_recall_and_hit_rate_grow_with_k(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    hits, n_rel, _ = case
    valid = n_rel > 0
    for metric in (M.recall, M.hit_rate):
        prev = np.zeros(valid.sum())
        for k in range(1, hits.shape[1] + 1):
            cur = metric(hits, n_rel, k)[valid]
            assert (cur >= prev - 1e-12).all()
            prev = cur


def test_known_values() -> None:
    hits = np.array([[True, False, True, False]])
    n_rel = np.array([3])
    assert M.precision(hits, n_rel, 4)[0] == 0.5
    assert M.recall(hits, n_rel, 4)[0] == pytest.approx(2 / 3)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert M.ndcg(hits, n_rel, 4)[0] == pytest.approx(dcg / idcg)
    assert M.average_precision(hits, n_rel, 4)[0] == pytest.approx((1 + 2 / 3) / 3)


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="k must be"):
        M.recall(np.ones((1, 3), bool), np.array([3]), 4)
    with pytest.raises(ValueError, match="more hits"):
        M.recall(np.ones((1, 3), bool), np.array([1]), 3)


def test_beyond_accuracy_known_answers() -> None:
    top = np.array([[0, 1, -1], [1, 2, 3]])
    assert M.catalogue_coverage(top, 8) == 0.5
    cats = np.array([0, 0, 1, 1])
    # list 1: one pair, same category -> 0; list 2: items 1,2,3 cats 0,1,1 -> 4 of 6 ordered pairs differ
    assert M.intra_list_diversity(top, cats) == pytest.approx((0 + 4 / 6) / 2)
    emb = np.eye(4)
    assert M.intra_list_diversity(top, emb) == pytest.approx(1.0)  # orthogonal items
    pop = np.array([10, 5, 5, 1])
    expected = np.mean(-np.log2(np.array([10, 5, 5, 5, 1]) / 10))
    assert M.novelty(top, pop, 10) == pytest.approx(expected)
