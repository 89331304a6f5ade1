"""Fusion (score blending of two models) and MMR re-ranking: known answers, limits, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from adrec.evaluation.metrics import intra_list_diversity
from adrec.exceptions import ValidationError
from adrec.models import MMR, Fusion, Recommender, get_model
from adrec.models.fusion import mmr_order, normalize_scores

N_GROUPS, USERS_PER, ITEMS_PER = 4, 10, 12
USER_GROUP = np.repeat(np.arange(N_GROUPS), USERS_PER)
ITEM_GROUP = np.repeat(np.arange(N_GROUPS), ITEMS_PER)


def blocks(density: float = 0.4, cross: float = 0.05, seed: int = 0) -> sp.csr_matrix:
    """Users mostly interact with their own group's items, a little with the others'."""
    rng = np.random.default_rng(seed)
    own = USER_GROUP[:, None] == ITEM_GROUP[None, :]
    dense = rng.random(own.shape) < np.where(own, density, cross)
    return sp.csr_matrix(dense.astype(np.float32))


def ranking(model: Recommender, matrix: sp.csr_matrix) -> np.ndarray:
    users = np.arange(matrix.shape[0])
    ids, _ = model.recommend(users, k=matrix.shape[1], exclude=matrix)
    return ids


# -- pure functions --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["rank", "minmax"])
def test_normalisation_keeps_the_order_within_zero_and_one(method: str) -> None:
    scores = np.random.default_rng(0).normal(size=(5, 9)) * np.array([[1], [10], [100], [0.1], [3]])
    out = normalize_scores(scores, method)
    assert out.min() == 0.0
    assert out.max() == 1.0
    np.testing.assert_array_equal(np.argsort(out, axis=1), np.argsort(scores, axis=1))
    np.testing.assert_array_equal(
        normalize_scores(np.ones((2, 4)), method)[0], normalize_scores(np.ones((1, 4)), method)[0]
    )
    with pytest.raises(ValidationError, match="normalization"):
        normalize_scores(scores, "zscore")


def test_mmr_pushes_a_near_duplicate_down() -> None:
    # Candidates a, a' (a copy of a) and b (unlike both), by relevance.
    relevance = np.array([[1.0, 0.9, 0.8]])
    sim = np.array([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    assert mmr_order(relevance, sim, 0.0).tolist() == [[0, 1, 2]]
    assert mmr_order(relevance, sim, 0.5).tolist() == [[0, 2, 1]]
    missing = np.array([[-np.inf, 0.5, 0.4]])
    assert mmr_order(missing, sim, 0.5).tolist() == [[1, 2, 0]]


# -- Fusion ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair() -> tuple[sp.csr_matrix, Recommender, Recommender]:
    matrix = blocks()
    return matrix, get_model("ease", regularization=5.0).fit(matrix), get_model("popularity").fit(matrix)


def test_fusion_at_the_ends_ranks_as_either_model(pair: tuple[sp.csr_matrix, Recommender, Recommender]) -> None:
    matrix, ease, popularity = pair
    fusion_base = Fusion.from_fitted(ease, popularity, weight=0.0)
    np.testing.assert_array_equal(ranking(fusion_base, matrix), ranking(ease, matrix))
    fusion_gen = Fusion.from_fitted(ease, popularity, weight=1.0)
    np.testing.assert_array_equal(ranking(fusion_gen, matrix)[:, :5], ranking(popularity, matrix)[:, :5])


def test_fusion_moves_lists_towards_the_generator(pair: tuple[sp.csr_matrix, Recommender, Recommender]) -> None:
    matrix, ease, popularity = pair
    pop_top = set(ranking(popularity, matrix)[0, :10].tolist())
    shares = []
    for weight in (0.0, 0.3, 0.7, 1.0):
        top = ranking(Fusion.from_fitted(ease, popularity, weight=weight, normalization="minmax"), matrix)[:, :10]
        shares.append(np.mean([len(pop_top & set(row.tolist())) / 10 for row in top]))
    assert shares == sorted(shares)
    assert shares[0] < shares[-1]


def test_fusion_refuses_bad_settings(pair: tuple[sp.csr_matrix, Recommender, Recommender]) -> None:
    matrix, ease, popularity = pair
    with pytest.raises(ValidationError, match="weight"):
        Fusion.from_fitted(ease, popularity, weight=1.5)
    with pytest.raises(ValidationError, match="normalization"):
        Fusion(base="ease", generator="popularity", normalization="z").fit(matrix)
    other = get_model("popularity").fit(matrix[:5])
    with pytest.raises(ValidationError, match="generator"):
        Fusion.from_fitted(ease, other)


def test_fusion_with_cfgan_round_trips(tmp_path: Path) -> None:
    matrix = blocks()
    gan = {"epochs": 2, "hidden_units": 8, "discriminator_units": 8, "num_threads": 1, "on_collapse": "ignore"}
    fusion = Fusion(base="ease", generator="cfgan", base_params={"regularization": 5.0}, generator_params=gan)
    fusion.fit(matrix)
    fusion.save(tmp_path / "f")
    loaded = Recommender.load(tmp_path / "f")
    assert isinstance(loaded, Fusion)
    assert loaded.get_params() == fusion.get_params()
    assert loaded.generator_model_.name == "cfgan"
    np.testing.assert_allclose(loaded.score(np.arange(8)), fusion.score(np.arange(8)), rtol=1e-6)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["arrays.npz", "params.json"]


# -- MMR -------------------------------------------------------------------------------------------------------
def test_mmr_at_zero_strength_keeps_the_base_order(pair: tuple[sp.csr_matrix, Recommender, Recommender]) -> None:
    matrix, ease, _ = pair
    mmr = MMR.from_fitted(ease, matrix, strength=0.0, depth=20)
    np.testing.assert_array_equal(ranking(mmr, matrix), ranking(ease, matrix))


def test_mmr_diversifies_lists_by_item_similarity(pair: tuple[sp.csr_matrix, Recommender, Recommender]) -> None:
    matrix, ease, _ = pair
    users = np.arange(matrix.shape[0])
    ild = []
    for strength in (0.0, 0.5, 0.9):
        ids, _ = MMR.from_fitted(ease, matrix, strength=strength, depth=30).recommend(users, k=10, exclude=matrix)
        ild.append(intra_list_diversity(ids, ITEM_GROUP))
        assert ids[:, 0].tolist() == ranking(ease, matrix)[:, 0].tolist()  # the first pick is the most relevant
    assert ild[0] < ild[1] < ild[2]


def test_mmr_ranks_training_items_last(pair: tuple[sp.csr_matrix, Recommender, Recommender]) -> None:
    matrix, ease, _ = pair
    ids, _ = MMR.from_fitted(ease, matrix, strength=0.5, depth=10).recommend(np.arange(3), k=matrix.shape[1])
    for u in range(3):
        n_seen = matrix[u].nnz
        assert set(ids[u, -n_seen:].tolist()) == set(matrix[u].indices.tolist())


def test_mmr_with_embeddings_needs_a_model_that_has_them(pair: tuple[sp.csr_matrix, Recommender, Recommender]) -> None:
    matrix, ease, _ = pair
    with pytest.raises(ValidationError, match="embeddings"):
        MMR.from_fitted(ease, matrix, similarity="embeddings")
    bpr = get_model("bpr", factors=4, epochs=5, batch_size=64, verbose=False).fit(matrix)
    ids, _ = MMR.from_fitted(bpr, matrix, similarity="embeddings", strength=0.5).recommend(np.arange(4), k=5)
    assert ids.shape == (4, 5)
    with pytest.raises(ValidationError, match="strength"):
        MMR(base="ease", strength=2.0).fit(matrix)
