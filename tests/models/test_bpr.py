"""BPR matrix factorisation: negative sampling, learning a block structure, embeddings, progress output."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from adrec.exceptions import ValidationError
from adrec.models import BPR
from adrec.models.bpr import sample_negatives

FAST = {"factors": 8, "epochs": 30, "batch_size": 128, "learning_rate": 0.05, "verbose": False}


def blocks(seed: int = 0) -> sp.csr_matrix:
    """3 groups of 20 users x 10 items; each user saw 6 random items of their own group."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(60):
        g = u // 20
        items = g * 10 + rng.choice(10, 6, replace=False)
        rows += [u] * 6
        cols += items.tolist()
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(60, 30))


def test_negatives_are_never_positives_and_cover_the_rest() -> None:
    m = blocks()
    users = np.repeat(np.arange(60), 200)
    neg = sample_negatives(m, users, np.random.default_rng(1))
    assert not np.asarray(m[users, neg]).any()
    assert len(np.unique(neg[users == 0])) == 30 - 6  # every non-positive item is drawn


def test_a_user_with_every_item_does_not_loop_forever() -> None:
    full = sp.csr_matrix(np.ones((2, 3)))
    neg = sample_negatives(full, np.array([0, 1, 1]), np.random.default_rng(0), max_rounds=3)
    assert neg.shape == (3,)


def test_learns_the_block_structure() -> None:
    m = blocks()
    model = BPR(**FAST).fit(m)  # type: ignore[arg-type]
    scores = model.score(np.arange(60))
    group = np.arange(60)[:, None] // 20 == np.arange(30)[None, :] // 10
    unseen_own = group & (m.toarray() == 0)
    # AUC of "unseen item of the user's own group" against "item of another group", averaged over users
    auc = [(scores[u, unseen_own[u]][:, None] > scores[u, ~group[u]][None, :]).mean() for u in range(60)]
    assert np.mean(auc) > 0.9


def test_scores_are_dot_products_of_the_embeddings() -> None:
    model = BPR(**FAST).fit(blocks())  # type: ignore[arg-type]
    users, items = model.user_embeddings, model.item_embeddings
    assert users is not None and items is not None
    assert users.shape == (60, 8)
    assert items.shape == (30, 8)
    np.testing.assert_allclose(model.score(np.arange(60)), users @ items.T, rtol=1e-5, atol=1e-6)


def test_the_seed_decides_the_result() -> None:
    a = BPR(**FAST, random_state=1).fit(blocks()).user_factors_  # type: ignore[arg-type]
    b = BPR(**FAST, random_state=2).fit(blocks()).user_factors_  # type: ignore[arg-type]
    assert not np.allclose(a, b)


def test_progress_bar_only_when_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    BPR(**{**FAST, "epochs": 2}).fit(blocks())  # type: ignore[arg-type]
    quiet = capsys.readouterr()
    assert quiet.out == quiet.err == ""
    BPR(**{**FAST, "epochs": 2, "verbose": True}).fit(blocks())  # type: ignore[arg-type]
    shown = capsys.readouterr()
    assert "bpr" in shown.out + shown.err


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"factors": 0}, "factors"),
        ({"epochs": -1}, "epochs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"regularization": -1.0}, "regularization"),
        ({"device": "gpu"}, "device"),
    ],
)
def test_bad_hyper_parameters_are_refused(params: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        BPR(**{**FAST, **params}).fit(blocks())  # type: ignore[arg-type]
