"""Full-ranking evaluation: every user's scores over **all** items, training items excluded, no sampling.

Vectorized and batched over users, so all 29,858 Gowalla users evaluate in seconds for a dot-product model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from adrec.data.interactions import Interactions
from adrec.data.linalg import EXCLUDED, top_k
from adrec.evaluation import metrics
from adrec.exceptions import ValidationError
from adrec.models.base import Recommender

__all__ = ["METRICS", "RankingResult", "RecallValidator", "evaluate_model", "hit_matrix"]

METRICS: dict[str, Callable[[npt.ArrayLike, npt.ArrayLike, int], npt.NDArray[np.float64]]] = {
    "precision": metrics.precision,
    "recall": metrics.recall,
    "f1": metrics.f1,
    "ndcg": metrics.ndcg,
    "hit_rate": metrics.hit_rate,
    "map": metrics.average_precision,
}


@dataclass
class RankingResult:
    """Mean metrics over evaluated users (``"recall@20"`` → value), plus the top-K lists that produced them."""

    values: dict[str, float]
    n_users: int
    seconds: float
    top_items: npt.NDArray[np.int64] = field(repr=False)
    """``(n_users_evaluated, max(ks))`` recommended item indices, ``-1`` padded."""
    users: npt.NDArray[np.int64] = field(repr=False)

    def __getitem__(self, key: str) -> float:
        return self.values[key]


def hit_matrix(
    top: npt.NDArray[np.int64], relevant: Interactions, users: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """``hits[b, r]``: is ``top[b, r]`` among the items of user ``users[b]`` in ``relevant`` (one vectorized test)."""
    rows = relevant.matrix[users]
    n_items = np.int64(relevant.n_items)
    rel_keys = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(rows.indptr)) * n_items + rows.indices
    top_keys = np.arange(len(users), dtype=np.int64)[:, None] * n_items + top
    return np.isin(top_keys, rel_keys) & (top >= 0)


def evaluate_model(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    ks: Sequence[int] = (20,),
    *,
    metric_names: Sequence[str] = ("precision", "recall", "ndcg"),
    users: npt.ArrayLike | None = None,
    batch_size: int = 512,
) -> RankingResult:
    """Rank all items for every user with test items, hide their training items, and average the metrics.

    Parameters
    ----------
    model
        A fitted model over the same user and item indices as ``train`` and ``test``.
    train, test
        Matrices of the same shape. Training items are excluded from the ranking.
    ks
        Cut-offs; metrics are reported as ``"name@k"``.
    metric_names
        Keys of :data:`METRICS`.
    users
        Users to evaluate (default: every user with at least one test item).
    batch_size
        Users scored at once; memory is about ``batch_size * n_items * 4`` bytes.
    """
    import time

    started = time.perf_counter()
    if train.matrix.shape != test.matrix.shape:
        raise ValidationError("test", f"shape {test.matrix.shape} differs from train {train.matrix.shape}")
    unknown = [m for m in metric_names if m not in METRICS]
    if unknown:
        raise ValidationError("metrics", f"unknown {unknown}; known: {', '.join(METRICS)}")
    n_rel_all = np.diff(test.matrix.indptr)
    eval_users = np.flatnonzero(n_rel_all > 0) if users is None else np.asarray(users, dtype=np.int64)
    max_k = max(ks)
    tops: list[npt.NDArray[np.int64]] = []
    sums = {f"{m}@{k}": 0.0 for m in metric_names for k in ks}
    counted = 0
    for start in range(0, len(eval_users), batch_size):
        batch = eval_users[start : start + batch_size]
        scores = model.score(batch)
        if not scores.flags.writeable:
            scores = np.array(scores, dtype=np.float32)
        seen = train.matrix[batch]
        rows = np.repeat(np.arange(len(batch)), np.diff(seen.indptr))
        scores[rows, seen.indices] = EXCLUDED
        top, vals = top_k(scores, max_k)
        top[np.isneginf(vals)] = -1
        tops.append(top)
        hits = hit_matrix(top, test, batch)
        n_rel = n_rel_all[batch]
        valid = n_rel > 0
        counted += int(valid.sum())
        for m in metric_names:
            for k in ks:
                sums[f"{m}@{k}"] += float(np.nansum(METRICS[m](hits[valid], n_rel[valid], k)))
    values = {key: (total / counted if counted else float("nan")) for key, total in sums.items()}
    return RankingResult(
        values=values,
        n_users=counted,
        seconds=time.perf_counter() - started,
        top_items=np.concatenate(tops) if tops else np.empty((0, max_k), dtype=np.int64),
        users=eval_users,
    )


@dataclass(frozen=True)
class RecallValidator:
    """Recall@``k`` of a model on held-out interactions, training items excluded: the
    :data:`~adrec.models.base.Validator` that models which stop early (LightGCN) take from evaluation.

    Examples
    --------
    >>> model = LightGCN(validator=RecallValidator(k=20)).fit(train)  # doctest: +SKIP
    """

    k: int = 20
    batch_size: int = 1024
    """Users scored at once (see :func:`evaluate_model`)."""

    @property
    def name(self) -> str:
        """The metric's key, ``"recall@k"``: the label of training logs."""
        return f"recall@{self.k}"

    def __call__(self, model: Recommender, train: Interactions, valid: Interactions) -> float:
        result = evaluate_model(model, train, valid, ks=(self.k,), metric_names=("recall",), batch_size=self.batch_size)
        return result.values[self.name]
