"""The end-to-end demo on embedded defaults, as a library: simulate a market, pick and evaluate a model, show
recommendations against the simulator's ground truth. ``adrec demo`` prints what these functions return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.datasets import Dataset
from adrec.data.interactions import Interactions
from adrec.data.splits import random_split
from adrec.evaluation.runner import EvaluationReport, compare_models, make_model
from adrec.models.base import Recommender, get_model
from adrec.simulate import Market, SimulationConfig

__all__ = [
    "DEMO_MODELS",
    "ColdAdCheck",
    "LookalikeCheck",
    "TruthRow",
    "cold_ad_check",
    "demo_config",
    "fit_best",
    "lookalike_check",
    "select_model",
    "truth_check",
    "truth_lift",
]

DEMO_MODELS: tuple[str, ...] = ("popularity", "itemknn", "ease", "gfcf", "bpr", "lightgcn")
"""Candidates the demo compares (all fit in seconds on the demo market)."""
SELECT_BY = "ndcg@10"


def demo_config(seed: int) -> SimulationConfig:
    """The demo market: small enough to simulate and train on in well under a minute, dense enough to learn."""
    return SimulationConfig(
        seed=seed, n_users=3_000, n_advertisers=40, n_campaigns=120, n_ads=400, n_impressions=600_000
    )


def select_model(
    dataset: Dataset,
    candidates: Sequence[str] = DEMO_MODELS,
    *,
    seed: int = 0,
    params: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, EvaluationReport, EvaluationReport]:
    """Choose a model on a validation split carved from train, then evaluate every candidate on test.

    Returns the chosen name, the validation report and the test report (test is never used to choose).
    """
    fit, val = random_split(dataset.train, 0.15, random_state=seed)
    validation = Dataset(f"{dataset.name} (validation)", fit, val, dataset.item_categories)
    val_report = compare_models(validation, list(candidates), ks=(10, 20), params=params)
    best = max(val_report.results, key=lambda r: r.metrics[SELECT_BY]).model
    test_report = compare_models(dataset, list(candidates), ks=(10, 20), params=params)
    return best, val_report, test_report


def _market_index(train: Interactions, market: Market) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Market indices of the users and ads of ``train`` (``-1`` where the market has none)."""
    users = {uid: i for i, uid in enumerate(market.user_ids().tolist())}
    ads = {aid: i for i, aid in enumerate(market.ad_ids().tolist())}
    return (
        np.array([users.get(u, -1) for u in train.users.ids], dtype=np.int64),
        np.array([ads.get(a, -1) for a in train.items.ids], dtype=np.int64),
    )


@dataclass(frozen=True)
class TruthRow:
    user_id: str
    ads: list[str]
    titles: list[str]
    true_ctr_recommended: float
    """Mean true click probability (position 1) of the recommended ads."""
    true_ctr_catalogue: float
    """Mean true click probability of all ads for this user: what a random ad would get."""


def truth_check(
    model: Recommender, train: Interactions, market: Market, titles: Sequence[str], user_ids: Sequence[str], k: int = 5
) -> list[TruthRow]:
    """Recommend ``k`` unseen ads to each user and compare their *true* CTR with the catalogue average."""
    user_index, ad_index = _market_index(train, market)
    item_ids = train.items.ids
    rows = []
    known = ad_index[ad_index >= 0]
    for uid in user_ids:
        u = train.users.index(uid)
        ids, _ = model.recommend(u, k, exclude=train.matrix[[u]])
        mu = user_index[u]
        if mu < 0:
            raise KeyError(uid)  # a training user the market does not have
        rec = ad_index[ids]
        truth_rec = market.true_ctr(np.full(len(rec), mu), rec, position=1)
        truth_all = market.true_ctr(np.full(len(known), mu), known, position=1)
        rows.append(
            TruthRow(
                uid,
                [item_ids[i] for i in ids.tolist()],
                [titles[i] if i < len(titles) else "" for i in ids.tolist()],
                float(np.mean(truth_rec)),
                float(np.mean(truth_all)),
            )
        )
    return rows


def truth_lift(
    model: Recommender, train: Interactions, market: Market, k: int = 5, max_users: int = 2_000, seed: int = 0
) -> tuple[float, float]:
    """Mean true CTR (position 1) of each user's top-``k`` unseen recommendations, and of all ads, over users.

    At most ``max_users`` users (a seeded sample) are checked.
    """
    user_index, ad_index = _market_index(train, market)
    users = np.arange(train.n_users)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    ids, _ = model.recommend(users, k, exclude=train.matrix[users])
    mu = user_index[users]
    if (mu < 0).any():
        raise KeyError(train.users.ids[int(users[np.argmin(mu)])])  # a training user the market does not have
    valid = (ids >= 0) & (ad_index[np.maximum(ids, 0)] >= 0)
    rec = market.true_ctr(np.repeat(mu, ids.shape[1]).reshape(ids.shape)[valid], ad_index[ids[valid]], position=1)
    known = ad_index[ad_index >= 0]
    everything = market.true_ctr(mu[:, None], known[None, :], position=1)
    return float(np.mean(rec)), float(np.mean(everything))


def fit_best(name: str, train: Interactions, params: dict[str, dict[str, Any]] | None = None) -> Recommender:
    return make_model(name, **(params or {}).get(name, {})).fit(train)


@dataclass(frozen=True)
class ColdAdCheck:
    ad_id: str
    title: str
    clicks_hidden: int
    """Training clicks of the ad that were removed to make it new."""
    encoder: str
    neighbours: list[str]
    """Titles of the warm ads closest in content, which the new ad borrows its scores from."""
    recommended_to: int
    """Users with the new ad in their top-``k`` (unseen ads) before its first click."""
    true_ctr_recommended: float
    """Mean true CTR (position 1) of the new ad for those users (NaN when none)."""
    audience: int
    """The top 10 % of users by the new ad's predicted score."""
    true_ctr_audience: float
    """Mean true CTR of the new ad for that audience."""
    true_ctr_all: float
    """Mean true CTR of the new ad over all users."""


def cold_ad_check(
    train: Interactions,
    market: Market,
    texts: Sequence[str],
    titles: Sequence[str],
    *,
    k: int = 5,
    encoder_kind: str = "auto",
) -> ColdAdCheck:
    """Make one clicked ad new (drop its clicks), recommend it from its creative text alone, check the truth.

    The ad is the one at the 75th percentile of clicks; an Item-kNN model is refitted without its clicks and the
    ad is scored by content-kNN over the warm ads (:class:`~adrec.models.coldstart.ColdItemScorer`).
    ``encoder_kind`` goes to :func:`~adrec.catalog.make_encoder` (MiniLM when installed, else TF-IDF).
    """
    from adrec.catalog import make_encoder
    from adrec.models.coldstart import ColdItemScorer, WithNewItems

    clicks = np.diff(train.matrix.tocsc().indptr)
    clicked = np.flatnonzero(clicks > 0)
    ad = int(clicked[np.argsort(clicks[clicked], kind="stable")[int(0.75 * (len(clicked) - 1))]])
    keep = np.ones(train.n_items, dtype=np.float32)
    keep[ad] = 0.0
    warm_matrix = sp.csr_matrix(train.matrix @ sp.diags(keep))
    warm_matrix.eliminate_zeros()
    model = get_model("itemknn").fit(warm_matrix)
    encoder = make_encoder(encoder_kind, corpus=texts)
    content = encoder.encode(list(texts))
    others = np.setdiff1d(np.flatnonzero(np.diff(warm_matrix.tocsc().indptr) > 0), [ad])
    scorer = ColdItemScorer(method="knn", k_neighbors=10).fit(model, content, warm_items=others)
    neighbours = scorer.neighbours(content[[ad]])
    order = neighbours.indices[np.argsort(-neighbours.data)][:3]
    view = WithNewItems(scorer=scorer, new_content=content[[ad]])
    users = np.arange(train.n_users)
    # The ad's old column stands for nothing now (its new one is the last): exclude it for everyone.
    old_column = sp.csr_matrix(
        (np.ones(train.n_users), (users, np.full(train.n_users, ad))), shape=warm_matrix.shape, dtype=np.float32
    )
    seen = sp.hstack([warm_matrix + old_column, sp.csr_matrix((train.n_users, 1))]).tocsr()
    ids, _ = view.recommend(users, k, exclude=seen)
    got = np.flatnonzero((ids == train.n_items).any(axis=1))
    market_users, market_ads = _market_index(train, market)
    truth = market.true_ctr(market_users, np.full(train.n_users, market_ads[ad]), position=1)
    predicted = scorer.score(users, content[[ad]])[:, 0]
    audience = np.argsort(-predicted, kind="stable")[: max(1, train.n_users // 10)]
    return ColdAdCheck(
        ad_id=train.items.ids[ad],
        title=titles[ad] if ad < len(titles) else "",
        clicks_hidden=int(clicks[ad]),
        encoder=type(encoder).__name__,
        neighbours=[titles[i] if i < len(titles) else train.items.ids[i] for i in order.tolist()],
        recommended_to=len(got),
        true_ctr_recommended=float(np.mean(truth[got])) if len(got) else float("nan"),
        audience=len(audience),
        true_ctr_audience=float(np.mean(truth[audience])),
        true_ctr_all=float(np.mean(truth)),
    )


@dataclass(frozen=True)
class LookalikeCheck:
    category: str
    seeds: int
    size: int
    vectors: str
    sample: list[str]
    true_ctr_audience: float
    """Mean true CTR (position 1) of the category's ads for the expanded audience."""
    true_ctr_others: float
    """The same for every user who is neither seed nor in the audience."""


def lookalike_check(
    model: Recommender,
    train: Interactions,
    market: Market,
    item_categories: npt.NDArray[np.int64],
    category_names: Sequence[str],
    *,
    n_seeds: int = 50,
    size: int = 300,
) -> LookalikeCheck:
    """Seed with the heaviest clickers of the most clicked category, expand by learned user vectors, and compare
    the audience's true CTR on that category's ads with everyone else's."""
    from adrec.profiles import UserVectors, lookalike

    per_category = sp.csr_matrix(
        (np.ones(train.n_items), (np.arange(train.n_items), np.maximum(item_categories, 0))),
        shape=(train.n_items, max(len(category_names), 1)),
    )
    counts = (train.matrix @ per_category).toarray()
    counts[:, np.unique(item_categories[item_categories < 0])] = 0
    category = int(counts.sum(axis=0).argmax())
    seeds = np.argsort(-counts[:, category], kind="stable")[:n_seeds]
    vectors = (
        UserVectors.from_model(model, train.users)
        if model.user_embeddings is not None
        else UserVectors.from_interactions(train)
    )
    result = lookalike(vectors, train.users.inverse(seeds).tolist(), size)
    audience = train.users.transform(result.user_ids)
    market_users, market_ads = _market_index(train, market)
    ads = market_ads[(item_categories == category) & (market_ads >= 0)]
    truth = market.true_ctr(market_users[:, None], ads[None, :], position=1).mean(axis=1)
    others = np.setdiff1d(np.arange(train.n_users), np.concatenate([seeds, audience]))
    return LookalikeCheck(
        category=category_names[category],
        seeds=len(seeds),
        size=len(audience),
        vectors=vectors.source,
        sample=result.user_ids[:5],
        true_ctr_audience=float(truth[audience].mean()),
        true_ctr_others=float(truth[others].mean()),
    )
