"""Cold start on a two-cluster market with known answers: new ads reach their cluster's users, new users get
their cluster's ads from a few events (fold-in) or from their declared attributes alone (demographic prior)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from adrec.catalog import TfidfEncoder
from adrec.data.schema import Gender, User
from adrec.exceptions import ValidationError
from adrec.models import BPR, EASE, GFCF, ItemKNN, Popularity, Recommender
from adrec.models.base import NotFittedError
from adrec.models.coldstart import (
    ColdItemScorer,
    DemographicPrior,
    FoldIn,
    WithNewItems,
    ridge_map,
    user_attributes,
)

N_USERS, N_ITEMS = 60, 24  # users 0..29 and items 0..11 form cluster A (sport), the rest cluster B (beauty)
SPORT = ["running shoes", "trail sneakers", "football boots", "tennis racket", "yoga mat", "cycling helmet"]
BEAUTY = ["red lipstick", "mascara", "face cream", "perfume", "nail polish", "hair serum"]


def cluster(idx: int | np.ndarray, n: int) -> np.ndarray:
    return (np.asarray(idx) >= n // 2).astype(int)


def texts() -> list[str]:
    out = []
    for i in range(N_ITEMS):
        words = SPORT if i < N_ITEMS // 2 else BEAUTY
        out.append(f"{words[i % 6]} sale {'sport gear' if i < N_ITEMS // 2 else 'beauty cosmetics'}")
    return out


def market() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    same = cluster(np.arange(N_USERS), N_USERS)[:, None] == cluster(np.arange(N_ITEMS), N_ITEMS)[None, :]
    r = rng.random((N_USERS, N_ITEMS)) < np.where(same, 0.5, 0.03)
    return sp.csr_matrix(r.astype(np.float32))


@pytest.fixture(scope="module")
def encoder() -> TfidfEncoder:
    return TfidfEncoder().fit(texts())


@pytest.fixture(scope="module")
def bpr() -> BPR:
    return BPR(factors=8, epochs=60, learning_rate=0.05, verbose=False, random_state=0).fit(market())


def test_ridge_map_recovers_a_linear_map_in_primal_and_dual_form() -> None:
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    x = rng.normal(size=(50, 5)).astype(np.float32)
    w_hat, b_hat = ridge_map(x, (x @ w + b).astype(np.float32), alpha=1e-6)
    np.testing.assert_allclose(w_hat, w, atol=1e-3)
    np.testing.assert_allclose(b_hat, b, atol=1e-3)
    wide = rng.normal(size=(4, 10)).astype(np.float32)  # fewer rows than features: the dual solve
    y = rng.normal(size=(4, 2)).astype(np.float32)
    w_d, b_d = ridge_map(wide, y, alpha=1e-6)
    np.testing.assert_allclose(wide @ w_d + b_d, y, atol=1e-3)  # interpolates
    with pytest.raises(ValidationError, match="alpha"):
        ridge_map(x, x, alpha=0.0)


@pytest.mark.parametrize("method", ["ridge", "knn"])
def test_new_ad_reaches_the_users_of_its_cluster(method: str, encoder: TfidfEncoder, bpr: BPR) -> None:
    scorer = ColdItemScorer(method=method, alpha=0.1, k_neighbors=5).fit(bpr, encoder.encode(texts()))
    new = encoder.encode(["trail running shoes sport gear", "lipstick face cream beauty cosmetics"])
    scores = scorer.score(np.arange(N_USERS), new)
    assert scores.shape == (N_USERS, 2)
    users = cluster(np.arange(N_USERS), N_USERS)
    for ad, group in ((0, 0), (1, 1)):
        top = np.argsort(-scores[:, ad])[:20]
        assert (users[top] == group).mean() >= 0.9, (method, ad)


@pytest.mark.parametrize("model", [EASE(regularization=5.0), ItemKNN(k_neighbors=10)], ids=["ease", "itemknn"])
def test_knn_cold_items_work_for_models_without_embeddings(model: Recommender, encoder: TfidfEncoder) -> None:
    model.fit(market())
    scorer = ColdItemScorer(method="knn", k_neighbors=5).fit(model, encoder.encode(texts()))
    scores = scorer.score(np.arange(N_USERS), encoder.encode(["yoga mat sport gear"]))[:, 0]
    a, b = scores[: N_USERS // 2], scores[N_USERS // 2 :]
    assert a.mean() > 3 * b.mean()
    with pytest.raises(ValidationError, match="knn"):
        ColdItemScorer(method="ridge").fit(model, encoder.encode(texts()))


def test_new_ad_is_recommended_before_its_first_click(encoder: TfidfEncoder, bpr: BPR) -> None:
    scorer = ColdItemScorer(method="knn", k_neighbors=5).fit(bpr, encoder.encode(texts()))
    view = WithNewItems(scorer=scorer, new_content=encoder.encode(["football boots sport gear"]))
    assert view.n_items_ == N_ITEMS + 1
    seen = sp.hstack([market(), sp.csr_matrix((N_USERS, 1))]).tocsr()
    ids, _ = view.recommend(np.arange(N_USERS), k=3, exclude=seen)
    got_it = (ids == N_ITEMS).any(axis=1)
    assert got_it[: N_USERS // 2].mean() >= 0.5
    assert not got_it[N_USERS // 2 :].any()
    with pytest.raises(ValidationError, match="view"):
        view.fit(market())


def test_cold_item_scorer_checks_its_inputs(encoder: TfidfEncoder, bpr: BPR) -> None:
    content = encoder.encode(texts())
    with pytest.raises(NotFittedError):
        ColdItemScorer().score([0], content)
    with pytest.raises(NotFittedError):
        ColdItemScorer().fit(BPR(), content)
    with pytest.raises(ValidationError, match="rows"):
        ColdItemScorer().fit(bpr, content[:5])
    with pytest.raises(ValidationError, match="method"):
        ColdItemScorer(method="magic").fit(bpr, content)
    scorer = ColdItemScorer().fit(bpr, content, warm_items=np.arange(N_ITEMS - 2))
    with pytest.raises(ValidationError, match="dimensions"):
        scorer.score([0], content[:, :3])
    # the held-out warm items are never neighbours
    assert not scorer.neighbours(content)[:, N_ITEMS - 2 :].nnz


@pytest.mark.parametrize(
    "model",
    [
        BPR(factors=8, epochs=60, learning_rate=0.05, verbose=False),
        EASE(regularization=5.0),
        ItemKNN(k_neighbors=10),
        GFCF(factors=4),
    ],
    ids=["bpr", "ease", "itemknn", "gfcf"],
)
def test_fold_in_from_three_events_finds_the_users_cluster(model: Recommender) -> None:
    model.fit(market())
    history = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [13, 15, 20])), shape=(2, N_ITEMS))  # user 1: none
    scores = FoldIn().score(model, history)
    assert scores.shape == (2, N_ITEMS)
    top = np.argsort(-np.where(history[0].toarray()[0] > 0, -np.inf, scores[0]))[:5]
    assert (cluster(top, N_ITEMS) == 1).all()


def test_score_rows_of_training_users_equals_their_scores() -> None:
    # item-based models score a row the same way whether it is a training user or a new one
    r = market()
    ease = EASE(regularization=5.0).fit(r)
    np.testing.assert_allclose(ease.score_rows(r[:5]), ease.score(np.arange(5)), rtol=1e-5)
    gfcf = GFCF(factors=4).fit(r)
    np.testing.assert_allclose(gfcf.score_rows(r[:5]), gfcf.score(np.arange(5)), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValidationError, match="columns"):
        ease.score_rows(sp.csr_matrix((1, 3)))


def test_fold_in_popularity_and_errors() -> None:
    pop = Popularity().fit(market())
    scores = FoldIn().score(pop, sp.csr_matrix((2, N_ITEMS)))
    np.testing.assert_array_equal(scores[0], pop.item_counts_)
    with pytest.raises(ValidationError, match="columns"):
        FoldIn().score(pop, sp.csr_matrix((1, 3)))
    with pytest.raises(ValidationError, match="regularization"):
        FoldIn(regularization=0).user_vectors(BPR(verbose=False, epochs=1).fit(market()), sp.csr_matrix((1, N_ITEMS)))


def test_demographic_prior_recommends_what_the_same_group_likes() -> None:
    r = market()
    groups = cluster(np.arange(N_USERS), N_USERS)
    attrs = [["gender=female" if g else "gender=male", f"occupation=job{u % 3}"] for u, g in enumerate(groups)]
    prior = DemographicPrior(shrinkage=5.0).fit(r, attrs)
    scores = prior.score([["gender=female", "occupation=job1"], ["gender=male"], ["gender=other"], []])
    assert (cluster(np.argsort(-scores[0])[:6], N_ITEMS) == 1).all()
    assert (cluster(np.argsort(-scores[1])[:6], N_ITEMS) == 0).all()
    np.testing.assert_allclose(scores[2], prior.p0_, rtol=1e-6)  # unknown attribute: overall popularity
    np.testing.assert_allclose(scores[3], prior.p0_, rtol=1e-6)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValidationError, match="entries"):
        DemographicPrior().fit(r, attrs[:3])
    with pytest.raises(NotFittedError):
        DemographicPrior().score([[]])


def test_user_attributes_bands_age_and_reads_attrs() -> None:
    user = User(user_id="u", age=29, gender=Gender.FEMALE, attrs={"occupation": "writer"})
    assert user_attributes(user) == ["age=25-34", "gender=female", "occupation=writer"]
    assert user_attributes(User(user_id="v", age=70)) == ["age=55+"]
    assert user_attributes(User(user_id="w", age=12)) == ["age=0-17"]
