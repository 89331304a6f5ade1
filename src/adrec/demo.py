"""The end-to-end demo on embedded defaults, as a library: simulate a market, pick and evaluate a model, show
recommendations against the simulator's ground truth. ``adrec demo`` prints what these functions return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adrec.data.datasets import Dataset
from adrec.data.interactions import Interactions
from adrec.evaluation.runner import EvaluationReport, compare_models
from adrec.evaluation.splits import random_split
from adrec.models.base import Recommender, get_model
from adrec.simulate import Market, SimulationConfig

__all__ = ["DEMO_MODELS", "TruthRow", "demo_config", "fit_best", "select_model", "truth_check", "truth_lift"]

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
    market_users = {uid: i for i, uid in enumerate(market.user_ids().tolist())}
    market_ads = {aid: i for i, aid in enumerate(market.ad_ids().tolist())}
    ad_index = np.array([market_ads.get(a, -1) for a in train.items.ids])
    rows = []
    all_ads = np.flatnonzero(ad_index >= 0)
    for uid in user_ids:
        u = train.users.index(uid)
        ids, _ = model.recommend(u, k, exclude=train.matrix[[u]])
        mu = market_users[uid]
        rec = ad_index[ids]
        truth_rec = market.true_ctr(np.full(len(rec), mu), rec, position=1)
        truth_all = market.true_ctr(np.full(len(all_ads), mu), ad_index[all_ads], position=1)
        rows.append(
            TruthRow(
                uid,
                [train.items.ids[i] for i in ids.tolist()],
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
    market_users = {uid: i for i, uid in enumerate(market.user_ids().tolist())}
    market_ads = {aid: i for i, aid in enumerate(market.ad_ids().tolist())}
    ad_index = np.array([market_ads.get(a, -1) for a in train.items.ids])
    users = np.arange(train.n_users)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    ids, _ = model.recommend(users, k, exclude=train.matrix[users])
    mu = np.array([market_users[train.users.ids[u]] for u in users])
    valid = (ids >= 0) & (ad_index[np.maximum(ids, 0)] >= 0)
    rec = market.true_ctr(np.repeat(mu, ids.shape[1]).reshape(ids.shape)[valid], ad_index[ids[valid]], position=1)
    known = ad_index[ad_index >= 0]
    everything = market.true_ctr(mu[:, None], known[None, :], position=1)
    return float(np.mean(rec)), float(np.mean(everything))


def fit_best(name: str, train: Interactions, params: dict[str, dict[str, Any]] | None = None) -> Recommender:
    return get_model(name, **(params or {}).get(name, {})).fit(train)
