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
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.data.interactions import Interactions
from adrec.data.schema import EventType
from adrec.exceptions import ValidationError
from adrec.models.artifact import Artifact
from adrec.models.base import Recommender
from adrec.models.calibration import Calibrator
from adrec.store.base import Store
from adrec.store.datasets import from_store

__all__ = ["Calibrator", "fit_calibrator", "held_out_calibration"]

#: Clicks needed among the held-out impressions for a held-out fit.
MIN_HELD_OUT_CLICKS = 50


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
