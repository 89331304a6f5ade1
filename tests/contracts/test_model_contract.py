"""The recommender contract, run over every registered model on known-answer data.

A model registered without an entry in ``FAST_PARAMS`` fails here on purpose: every model must be tested.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from adrec.data.interactions import Interactions
from adrec.exceptions import ValidationError
from adrec.models import NotFittedError, Recommender, get_model, registered_models

# Small, fast hyper-parameters per model for these tests (CPU, seconds).
FAST_PARAMS: dict[str, dict[str, object]] = {
    "lightgcn": {
        "factors": 8,
        "epochs": 10,
        "batch_size": 64,
        "lr": 0.05,
        "validation_fraction": 0.0,
        "num_threads": 1,
    },
    "popularity": {},
    "itemknn": {"k_neighbors": 10},
    "ease": {"regularization": 1.0},
    "bpr": {"factors": 8, "epochs": 40, "batch_size": 64, "learning_rate": 0.05, "verbose": False},
    "gfcf": {"factors": 4},
    "bspm": {"factors": 4},
    "cfgan": {"epochs": 100, "lr": 0.01, "hidden_units": 8, "zr_ratio": 0.2, "pm_ratio": 0.2, "num_threads": 1},
    "fusion": {"base": "ease", "generator": "itemknn", "weight": 0.5, "base_params": {"regularization": 1.0}},
    "mmr": {"base": "ease", "strength": 0.5, "depth": 10, "base_params": {"regularization": 1.0}},
}
# Models that give every user the same list: exempt from the personalised known-answer test.
NOT_PERSONALISED = {"popularity"}

GROUPS, PER_GROUP = 4, 6
N = GROUPS * PER_GROUP


def checkerboard() -> Interactions:
    """Users and items in 4 blocks; user u saw every item of its block except item u.

    The only unseen item of user u's own block is item u, so a personalised model must rank it first.
    """
    group = np.arange(N) // PER_GROUP
    dense = (group[:, None] == group[None, :]).astype(np.float32)
    np.fill_diagonal(dense, 0.0)
    return Interactions(sp.csr_matrix(dense))


@pytest.fixture(scope="module")
def data() -> Interactions:
    return checkerboard()


@pytest.fixture(params=sorted(registered_models()))
def model_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fitted(model_name: str, data: Interactions) -> Recommender:
    assert model_name in FAST_PARAMS, f"add test parameters for {model_name!r} to FAST_PARAMS"
    return get_model(model_name, **FAST_PARAMS[model_name]).fit(data)


def test_fit_returns_self(model_name: str, data: Interactions) -> None:
    model = get_model(model_name, **FAST_PARAMS.get(model_name, {}))
    with pytest.raises(NotFittedError):
        model.recommend(0)
    assert model.fit(data) is model


def test_checkerboard_user_u_gets_item_u_first(model_name: str, fitted: Recommender, data: Interactions) -> None:
    if model_name in NOT_PERSONALISED:
        pytest.skip(f"{model_name} is not personalised")
    users = np.arange(N)
    ids, _ = fitted.recommend(users, k=1, exclude=data.matrix[users])
    assert ids[:, 0].tolist() == users.tolist()


def test_batch_equals_scalar(fitted: Recommender, data: Interactions) -> None:
    users = np.array([3, 0, 17, 3])
    ids, scores = fitted.recommend(users, k=5, exclude=data.matrix[users])
    for row, u in enumerate(users):
        one_ids, one_scores = fitted.recommend(int(u), k=5, exclude=data.matrix[[u]])
        batch_scores = scores[row][ids[row] >= 0]
        np.testing.assert_allclose(one_scores, batch_scores, rtol=1e-5, atol=1e-6)
        # Items whose scores are float noise around 0 (other blocks, for the graph filters) may swap places
        # between a batch and a single user (different reduction shapes); every distinguishable rank must agree.
        signal = np.abs(one_scores) > 1e-6
        np.testing.assert_array_equal(one_ids[signal], ids[row][ids[row] >= 0][signal])


def test_scores_descend_and_k_larger_than_catalogue(fitted: Recommender) -> None:
    ids, scores = fitted.recommend(np.arange(N), k=10 * N)
    assert ids.shape == (N, N)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert all(sorted(row) == list(range(N)) for row in ids.tolist())


def test_exclusions_are_never_returned(fitted: Recommender, data: Interactions) -> None:
    users = np.arange(N)
    ids, scores = fitted.recommend(users, k=N, exclude=data.matrix[users])
    seen = data.matrix.toarray() > 0
    for u in users:
        row = ids[u]
        assert not seen[u, row[row >= 0]].any()
        assert (row >= 0).sum() == N - seen[u].sum()
        assert np.isneginf(scores[u][row < 0]).all()
    single, _ = fitted.recommend(0, k=N, exclude=data.matrix[[0]])
    assert len(single) == N - seen[0].sum()


def test_candidates_restrict_the_list(fitted: Recommender) -> None:
    cand = np.array([20, 1, 7])
    ids, _ = fitted.recommend(np.arange(5), k=10, candidates=cand)
    assert ids.shape == (5, 3)
    assert all(set(row) == {1, 7, 20} for row in ids.tolist())


def test_pair_scores_match_full_scores(fitted: Recommender) -> None:
    users = np.array([0, 5, 9, 23])
    items = np.array([2, 5, 0, 11])
    full = fitted.score(users)
    assert full.shape == (4, N)
    np.testing.assert_allclose(fitted.score(users, items), full[np.arange(4), items], rtol=1e-5, atol=1e-6)


def test_bad_indices_are_refused(fitted: Recommender) -> None:
    with pytest.raises(ValidationError, match="user_idx"):
        fitted.recommend(N)
    with pytest.raises(ValidationError, match="item_idx"):
        fitted.recommend(0, candidates=[N + 3])
    with pytest.raises(ValidationError, match="exclude"):
        fitted.recommend([0, 1], exclude=sp.csr_matrix((1, N)))
    with pytest.raises(ValidationError, match="k"):
        fitted.recommend(0, k=0)


def test_save_load_round_trip(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    users = np.arange(N)
    np.testing.assert_allclose(loaded.score(users), fitted.score(users), rtol=1e-6)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "m").iterdir())


def test_embeddings_have_the_right_shapes(fitted: Recommender) -> None:
    users, items = fitted.user_embeddings, fitted.item_embeddings
    assert (users is None) == (items is None)
    if users is not None and items is not None:
        assert users.shape[0] == N
        assert items.shape[0] == N
        assert users.shape[1] == items.shape[1]


def test_same_seed_same_result(model_name: str, data: Interactions) -> None:
    params = FAST_PARAMS.get(model_name, {})
    a = get_model(model_name, **params).fit(data).score(np.arange(N))
    b = get_model(model_name, **params).fit(data).score(np.arange(N))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
