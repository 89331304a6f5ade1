"""pCTR calibration: model scores turned into click probabilities (Platt scaling), fitted on logged impressions.

A model trained on the clicks scores the pairs it learned from high, so fitted on those same impressions a
calibrator comes out far too confident (pCTR many times the truth: the closed loop measures it, see
:mod:`adrec.experiment`). :func:`held_out_calibration` fits on impressions the model's training never saw: a copy
of the model trained on the clicks before the last ``holdout`` share of the logged impressions scores those later
impressions, labelled by their clicks; the result travels with the artifact (:attr:`Artifact.calibration`) and is
used as it is for the model trained on every click. Without it, :func:`fit_calibrator` fits at load time on the
store's impressions, held-out pairs preferred.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from adrec.data.interactions import Interactions
from adrec.data.schema import EventType
from adrec.exceptions import ValidationError
from adrec.models.artifact import Artifact
from adrec.models.base import Recommender
from adrec.store.base import Store
from adrec.store.datasets import from_store

__all__ = ["Calibrator", "fit_calibrator", "held_out_calibration"]

#: Clicks needed among the held-out impressions for a held-out fit.
MIN_HELD_OUT_CLICKS = 50


@dataclass(frozen=True)
class Calibrator:
    """Platt scaling: ``pCTR = sigmoid(a * (score - mean) / std + b)``, fitted on logged impressions and clicks.

    ``n`` is the number of impressions it was fitted on (0: not fitted; then ``base_rate`` is used for every ad
    and ranking falls back to bid order within the candidates).
    """

    a: float = 0.0
    b: float = -4.6
    mean: float = 0.0
    std: float = 1.0
    base_rate: float = 0.01
    n: int = 0
    z_max: float = math.inf
    """Standardised scores are clipped here (the 99.9th percentile of the fitting data): no extrapolation."""
    held_out: bool = False
    """True when fitted on impressions of pairs outside the model's training data (else in-sample: optimistic)."""

    def __call__(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        z = np.minimum((np.asarray(scores, dtype=np.float64) - self.mean) / self.std, self.z_max)
        out: npt.NDArray[np.float64] = expit(self.a * z + self.b)  # no overflow far from the fitted range
        return out

    @classmethod
    def fit(
        cls, scores: npt.ArrayLike, clicked: npt.ArrayLike, *, base_rate: float | None = None, iterations: int = 50
    ) -> Calibrator:
        """Logistic regression of the click on the standardised score (Newton's method, tiny L2 for stability).

        ``base_rate`` is the pCTR of ads without a model score (default: the smoothed click rate of ``clicked``).
        """
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(clicked, dtype=np.float64)
        base = float((y.sum() + 1.0) / (len(y) + 2.0))
        prior = base if base_rate is None else base_rate
        if len(s) < 50 or y.sum() == 0 or y.sum() == len(y):
            return cls(b=math.log(base / (1 - base)), base_rate=prior, n=len(s))
        mean, std = float(s.mean()), float(s.std()) or 1.0
        x = np.stack([(s - mean) / std, np.ones_like(s)], axis=1)
        w = np.array([0.0, math.log(base / (1 - base))])
        for _ in range(iterations):
            p = expit(x @ w)
            grad = x.T @ (p - y) + 1e-6 * w
            hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        z_max = float(np.percentile(x[:, 0], 99.9))
        return cls(a=float(w[0]), b=float(w[1]), mean=mean, std=std, base_rate=prior, n=len(s), z_max=z_max)


def fit_calibrator(artifact: Artifact, store: Store, max_impressions: int) -> Calibrator:
    """Fit pCTR on the store's logged impressions (the first ``max_impressions``) of users and ads the model knows.

    Each click of a user on an ad labels one of that pair's impressions as clicked (clicks beyond the pair's
    impressions are ignored), so the fitted rate is the per-impression click rate.
    """
    users: list[str] = []
    ads: list[str] = []
    clicks: Counter[tuple[str, str]] = Counter()
    n = 0
    for batch in store.iter_events(types=[EventType.IMPRESSION, EventType.CLICK], batch_size=100_000):
        imp = batch.type == int(EventType.IMPRESSION)
        users += batch.user_id[imp].tolist()
        ads += batch.ad_id[imp].tolist()
        clk = ~imp
        clicks.update(zip(batch.user_id[clk].tolist(), batch.ad_id[clk].tolist(), strict=True))
        n += int(imp.sum())
        if n >= max_impressions:
            break
    if not users:
        return Calibrator()
    u = artifact.users.transform(users, missing=-1)
    i = artifact.items.transform(ads, missing=-1)
    known = (u >= 0) & (i >= 0)
    labels = np.zeros(len(users), dtype=np.float64)
    for j, pair in enumerate(zip(users, ads, strict=True)):
        if clicks[pair] > 0:
            labels[j] = 1.0
            clicks[pair] -= 1
    overall = float((labels.sum() + 1.0) / (len(labels) + 2.0))  # for ads and users the model does not know
    if known.sum() == 0:
        return Calibrator.fit([], labels, base_rate=overall)
    # Pairs the model was trained on score high because it saw their clicks: fitted on them, pCTR comes out far
    # too confident. Prefer impressions of pairs outside the training matrix (later clicks are their positives).
    in_train = np.zeros(len(u), dtype=bool)
    in_train[known] = np.asarray(artifact.seen[u[known], i[known]]).ravel() != 0
    held_out = known & ~in_train
    chosen = held_out if labels[held_out].sum() >= 50 else known
    scores = artifact.model.score(u[chosen], i[chosen])
    fitted = Calibrator.fit(scores, labels[chosen], base_rate=overall)
    return dataclasses.replace(fitted, held_out=bool(chosen is held_out))


def _impressions(
    store: Store, max_impressions: int
) -> tuple[list[str], list[str], npt.NDArray[np.float64], list[tuple[str, str, float]]]:
    """The store's latest ``max_impressions`` impressions (user, ad, ts, in time order) and its clicks (user, ad,
    ts): the held-out share is cut from the end, so it must be the end of the log, live impressions included."""
    kept: deque[tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.float64]]] = deque()
    clicks: list[tuple[str, str, float]] = []
    n = 0
    for batch in store.iter_events(types=[EventType.IMPRESSION, EventType.CLICK], batch_size=100_000):
        imp = batch.type == int(EventType.IMPRESSION)
        kept.append((batch.user_id[imp], batch.ad_id[imp], batch.ts[imp]))
        n += int(imp.sum())
        while kept and n - len(kept[0][2]) >= max_impressions:  # older than the latest max_impressions
            n -= len(kept.popleft()[2])
        clk = ~imp
        clicks += zip(batch.user_id[clk].tolist(), batch.ad_id[clk].tolist(), batch.ts[clk].tolist(), strict=True)
    if not kept:
        return [], [], np.zeros(0), clicks
    drop = max(n - max_impressions, 0)
    users = np.concatenate([b[0] for b in kept])[drop:].tolist()
    ads = np.concatenate([b[1] for b in kept])[drop:].tolist()
    ts = np.concatenate([b[2] for b in kept])[drop:]
    return users, ads, ts, clicks


def held_out_calibration(
    train: Callable[[Interactions], Recommender],
    store: Store,
    *,
    holdout: float = 0.2,
    max_impressions: int = 1_000_000,
) -> dict[str, Any] | None:
    """A calibrator fitted on impressions the model did not learn from, as :attr:`Artifact.calibration` keeps it.

    ``train`` fits a new model (the same kind and settings as the one being served) on the store's clicks before
    the time that leaves the last ``holdout`` share of the impressions out; that model scores the held-out
    impressions of users and ads it knows, each labelled clicked when a held-out click of the same pair is left
    to claim (as :func:`fit_calibrator` labels them). None when the held-out impressions hold fewer than
    :data:`MIN_HELD_OUT_CLICKS` clicks the model could score, or nothing was clicked before the cut.
    """
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    users, ads, ts, clicks = _impressions(store, max_impressions)
    if len(ts) == 0:
        return None
    cut = float(np.quantile(ts, 1.0 - holdout))
    try:
        early = from_store(store, (EventType.CLICK,), before=cut).interactions
    except ValidationError:  # no click before the cut
        return None
    model = train(early)
    later = Counter((u, a) for u, a, t in clicks if t >= cut)
    chosen = np.flatnonzero(ts >= cut)
    u = early.users.transform([users[j] for j in chosen], missing=-1)
    i = early.items.transform([ads[j] for j in chosen], missing=-1)
    labels = np.zeros(len(chosen))
    for n, j in enumerate(chosen.tolist()):
        pair = (users[j], ads[j])
        if later[pair] > 0:
            labels[n] = 1.0
            later[pair] -= 1
    known = (u >= 0) & (i >= 0)
    if labels[known].sum() < MIN_HELD_OUT_CLICKS:
        return None
    overall = float((labels.sum() + 1.0) / (len(labels) + 2.0))
    fitted = Calibrator.fit(model.score(u[known], i[known]), labels[known], base_rate=overall)
    return dataclasses.asdict(dataclasses.replace(fitted, held_out=True))
