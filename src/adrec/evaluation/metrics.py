"""Top-K ranking metrics as pure, vectorized functions of a hit matrix.

All functions take ``hits``, a boolean array ``(n_users, K)`` whose entry ``[u, r]`` says whether the item at
rank ``r`` (0-based) of user ``u``'s list is relevant, and ``n_relevant`` ``(n_users,)``, the number of relevant
items of each user. They return per-user values ``(n_users,)`` at cut-off ``k <= K``; average them for the
usual figure. Users with no relevant item get NaN (leave them out of averages).

Definitions follow the LightGCN/NGCF evaluation code: recall = hits / |relevant|; NDCG with binary gains and
ideal DCG over ``min(|relevant|, k)`` items; MAP@k = sum of precision@r at each hit / ``min(|relevant|, k)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "average_precision",
    "catalogue_coverage",
    "f1",
    "hit_rate",
    "intra_list_diversity",
    "ndcg",
    "novelty",
    "precision",
    "recall",
]

Floats = npt.NDArray[np.float64]


def _prep(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.bool_], Floats]:
    h = np.asarray(hits, dtype=bool)
    if h.ndim != 2:
        raise ValueError(f"hits must be 2-D (users, ranks); got shape {h.shape}")
    if not 1 <= k <= h.shape[1]:
        raise ValueError(f"k must be in [1, {h.shape[1]}]; got {k}")
    n = np.asarray(n_relevant, dtype=np.float64)
    if n.shape != (h.shape[0],):
        raise ValueError(f"n_relevant must have shape ({h.shape[0]},); got {n.shape}")
    if (h[:, :k].sum(axis=1) > n).any():
        raise ValueError("a user has more hits than relevant items")
    return h[:, :k], n


def _safe_div(a: Floats, b: Floats) -> Floats:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def precision(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> Floats:
    h, n = _prep(hits, n_relevant, k)
    return np.where(n > 0, h.sum(axis=1) / k, np.nan)


def recall(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> Floats:
    h, n = _prep(hits, n_relevant, k)
    return _safe_div(h.sum(axis=1).astype(np.float64), n)


def f1(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> Floats:
    """Harmonic mean of precision@k and recall@k (0 where both are 0)."""
    p, r = precision(hits, n_relevant, k), recall(hits, n_relevant, k)
    with np.errstate(invalid="ignore"):
        return np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1.0), np.where(np.isnan(p), np.nan, 0.0))


def hit_rate(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> Floats:
    h, n = _prep(hits, n_relevant, k)
    return np.where(n > 0, h.any(axis=1).astype(np.float64), np.nan)


def ndcg(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> Floats:
    h, n = _prep(hits, n_relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (h * discounts).sum(axis=1)
    ideal_len = np.minimum(n, k).astype(np.int64)
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_len]
    return _safe_div(dcg, idcg)


def average_precision(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int) -> Floats:
    """AP@k: mean of precision@r over the ranks r of the hits, divided by ``min(|relevant|, k)``."""
    h, n = _prep(hits, n_relevant, k)
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return _safe_div((prec_at_r * h).sum(axis=1), np.minimum(n, k))


# -- beyond accuracy: properties of the recommended lists themselves -------------------------------------------
def catalogue_coverage(top_items: npt.ArrayLike, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list (``-1`` padding ignored)."""
    top = np.asarray(top_items)
    shown = np.unique(top[top >= 0])
    return float(len(shown) / n_items) if n_items else 0.0


def intra_list_diversity(top_items: npt.ArrayLike, item_features: npt.ArrayLike) -> float:
    """Mean pairwise dissimilarity within each list, averaged over lists.

    ``item_features`` is either a 1-D array of category codes ``(n_items,)`` — dissimilarity is 1 when two
    items' categories differ — or a 2-D array of embeddings ``(n_items, d)`` — dissimilarity is
    ``1 - cosine``. Lists shorter than two items are skipped.
    """
    top = np.asarray(top_items, dtype=np.int64)
    feats = np.asarray(item_features)
    values = []
    for row in top:
        items = row[row >= 0]
        if len(items) < 2:
            continue
        n_pairs = len(items) * (len(items) - 1)
        if feats.ndim == 1:
            cats = feats[items]
            same = (cats[:, None] == cats[None, :]).sum() - len(items)
            values.append(1.0 - same / n_pairs)
        else:
            x = feats[items].astype(np.float64)
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            sim = x @ x.T
            values.append(1.0 - (sim.sum() - np.trace(sim)) / n_pairs)
    return float(np.mean(values)) if values else float("nan")


def novelty(top_items: npt.ArrayLike, item_popularity: npt.ArrayLike, n_users: int) -> float:
    """Mean self-information ``-log2(popularity_i / n_users)`` of the recommended items (higher = less known).

    ``item_popularity`` counts the training users of each item; unseen items count as 1 to keep it finite.
    """
    top = np.asarray(top_items, dtype=np.int64)
    pop = np.maximum(np.asarray(item_popularity, dtype=np.float64), 1.0)
    shown = top[top >= 0]
    if shown.size == 0 or n_users <= 0:
        return float("nan")
    return float(np.mean(-np.log2(pop[shown] / n_users)))
