"""Item-kNN: the similarity against cosine computed by hand, neighbourhood pruning, scoring."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from adrec.exceptions import ValidationError
from adrec.models import ItemKNN


def interactions(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = (rng.random((40, 15)) < 0.3).astype(np.float64)
    r[:, -1] = 0.0  # an item nobody saw
    return r


def cosine_by_hand(r: np.ndarray, shrink: float) -> np.ndarray:
    b = (r > 0).astype(np.float64)
    norms = np.sqrt(b.sum(axis=0))
    sim = (b.T @ b) / (np.outer(norms, norms) + shrink + 1e-300)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize("shrink", [0.0, 5.0])
def test_similarity_is_the_shrunk_cosine_without_the_diagonal(shrink: float) -> None:
    r = interactions()
    model = ItemKNN(k_neighbors=100, shrink=shrink).fit(sp.csr_matrix(r))
    np.testing.assert_allclose(model.similarity().toarray(), cosine_by_hand(r, shrink), rtol=1e-5, atol=1e-7)


def test_each_item_keeps_its_k_most_similar_items() -> None:
    r = interactions()
    model = ItemKNN(k_neighbors=3, shrink=0.0).fit(sp.csr_matrix(r))
    full = cosine_by_hand(r, 0.0)
    sim = model.similarity()
    for j in range(r.shape[1]):
        row = sim[j].toarray().ravel()
        kept = np.flatnonzero(row)
        assert len(kept) == min(3, np.count_nonzero(full[j]))
        np.testing.assert_allclose(row[kept], full[j, kept], rtol=1e-5)
        if len(kept):  # nothing dropped is more similar than what was kept
            assert full[j][np.setdiff1d(np.arange(r.shape[1]), kept)].max(initial=0) <= row[kept].min() + 1e-6


def test_an_item_is_scored_by_its_own_neighbours() -> None:
    r = interactions()
    r[2, 3] = 4.0  # weights in the row are used as given
    model = ItemKNN(k_neighbors=5).fit(sp.csr_matrix(r))
    sim = model.similarity().toarray()  # row i: the neighbours of item i
    expected = np.array(
        [[sum(r[u, j] * sim[i, j] for j in np.flatnonzero(sim[i])) for i in range(15)] for u in range(40)]
    )
    np.testing.assert_allclose(model.score(np.arange(40)), expected, rtol=1e-5, atol=1e-6)


def test_pair_scores_use_the_pruned_similarity() -> None:
    r = interactions()
    model = ItemKNN(k_neighbors=4).fit(sp.csr_matrix(r))
    users, items = np.array([0, 1, 2, 39]), np.array([14, 0, 7, 3])
    np.testing.assert_allclose(model.score(users, items), model.score(users)[np.arange(4), items], rtol=1e-6)


@pytest.mark.parametrize(("params", "field"), [({"k_neighbors": 0}, "k_neighbors"), ({"shrink": -1.0}, "shrink")])
def test_bad_hyper_parameters_are_refused(params: dict[str, float], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ItemKNN(**params).fit(sp.csr_matrix(interactions()))  # type: ignore[arg-type]
