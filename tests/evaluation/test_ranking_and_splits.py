"""Full-ranking evaluation against an oracle and an anti-oracle; splits never leak test into train."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from adrec.data.interactions import Interactions
from adrec.evaluation.ranking import evaluate_model
from adrec.evaluation.splits import leave_last_out, random_split, temporal_split
from adrec.models.base import Recommender


class FixedScores(Recommender):
    """Scores given up front: lets a test build an oracle."""

    name: ClassVar[str] = ""

    def __init__(self, table: Any = None) -> None:
        self.table = table

    def _fit(self, matrix: sp.csr_matrix) -> None:
        pass

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating[Any]]:
        return np.asarray(self.table, dtype=np.float32)[users]


def _data(seed: int = 0, n_users: int = 40, n_items: int = 30) -> Interactions:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    dense[:, 0] = 1  # everyone has at least two interactions
    dense[:, 1] = 1
    return Interactions(sp.csr_matrix(dense))


def test_oracle_scores_one_and_anti_oracle_zero() -> None:
    data = _data()
    train, test = random_split(data, 0.3, random_state=1)
    oracle = FixedScores(test.matrix.toarray()).fit(train)
    result = evaluate_model(oracle, train, test, ks=(30,), metric_names=("recall", "ndcg", "hit_rate", "map"))
    for key in ("recall@30", "ndcg@30", "hit_rate@30", "map@30"):
        assert result[key] == pytest.approx(1.0), key
    anti = FixedScores(-test.matrix.toarray() - 10 * train.matrix.toarray()).fit(train)
    k = 2
    worst = evaluate_model(anti, train, test, ks=(k,), metric_names=("recall",))
    # With k smaller than every user's count of non-test, non-train items, the anti-oracle never hits.
    free = 30 - (train.matrix + test.matrix).toarray().astype(bool).sum(axis=1)
    assert (free >= k).all()
    assert worst["recall@2"] == 0.0


def test_train_items_are_never_in_the_evaluated_lists() -> None:
    data = _data(3)
    train, test = random_split(data, 0.2, random_state=0)
    model = FixedScores(train.matrix.toarray() * 100).fit(train)  # a model that loves training items
    result = evaluate_model(model, train, test, ks=(5,), batch_size=7)
    for u, row in zip(result.users, result.top_items, strict=True):
        seen = set(train.matrix[u].indices.tolist())
        assert not seen & set(row[row >= 0].tolist())


def test_batch_size_does_not_change_results() -> None:
    data = _data(5)
    train, test = random_split(data, 0.25, random_state=2)
    table = np.random.default_rng(0).random(data.matrix.shape)
    model = FixedScores(table).fit(train)
    a = evaluate_model(model, train, test, ks=(3, 10), metric_names=("recall", "ndcg", "precision"), batch_size=4)
    b = evaluate_model(model, train, test, ks=(3, 10), metric_names=("recall", "ndcg", "precision"), batch_size=1000)
    assert a.values == pytest.approx(b.values)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.floats(0.05, 0.95))
def test_random_split_partitions_each_user(seed: int, fraction: float) -> None:
    data = _data(seed % 7)
    train, test = random_split(data, fraction, random_state=seed)
    assert train.matrix.multiply(test.matrix).nnz == 0
    assert (train.matrix + test.matrix - data.matrix).count_nonzero() == 0
    counts = np.diff(data.matrix.indptr)
    assert (np.diff(train.matrix.indptr) >= 1).all()  # at most all but one to test
    assert (np.diff(test.matrix.indptr)[counts >= 2] >= 1).all()


def test_temporal_split_and_leave_last_out_take_the_latest() -> None:
    data = _data(1)
    rng = np.random.default_rng(0)
    times = rng.permutation(data.nnz).astype(np.float64)
    ts = sp.csr_matrix((times, data.matrix.indices, data.matrix.indptr), shape=data.matrix.shape)
    train, test = temporal_split(data, ts, 0.25)
    for u in range(data.n_users):
        tr = ts[u].toarray()[0][train.matrix[u].indices]
        te = ts[u].toarray()[0][test.matrix[u].indices]
        assert tr.max() < te.min()
    train1, test1 = leave_last_out(data, times)
    assert (np.diff(test1.matrix.indptr) == 1).all()
    for u in range(data.n_users):
        row_times = ts[u].toarray()[0]
        assert test1.matrix[u].indices[0] == int(np.argmax(np.where(data.matrix[u].toarray()[0] > 0, row_times, -1)))
    assert train1.nnz + test1.nnz == data.nnz
