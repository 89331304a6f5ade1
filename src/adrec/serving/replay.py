"""Off-policy evaluation on adrec's own logs: what a candidate model (with its serving settings) would have earned
on the requests an exploring policy served, before it serves a single user.

1. :func:`read_logged` reads the served ads whose impressions carry the serving policy's propensity (the
   probability that it put that ad in that slot for that request, signed into the token and stored with the
   impression; exploration ``egreedy``, ``softmax`` or ``thompson`` logs them), with their clicks, conversions and
   what the ledger charged.
2. Every logged request is replayed through the candidate's :class:`~adrec.serving.Pipeline` — the one decision
   path — at its logged time, for its user and placement: :meth:`~adrec.serving.Pipeline.slot_distribution` gives
   the candidate's probability of every ad in every slot and the price it would charge there. The store is read
   through :class:`AsOf`: budgets spent and frequency caps as they stood at the request (from the event log), and
   what the pipeline learns from the log (the segments' most-clicked ads, the campaigns' conversion rates) as it
   stood when the logged window opened (``cutoff``), so nothing the window itself taught leaks into the candidate.
3. The estimators of :mod:`adrec.evaluation.ope` weigh each logged slot by ``pi(a in p) / mu(a in p)`` (the
   independent-position estimator: each slot's click depends on its own ad and position, as in the simulator's
   position-based click model), with a logistic reward model over (user segment, ad, slot, segment × category)
   cross-fitted by user: DM, IPW, SNIPW, DR, SNDR, Switch-DR and DRos, each with a bootstrap interval that
   resamples users (a user's requests are not independent).

Estimated: ``ctr`` (clicks per logged slot: per impression where the candidate fills every slot the logger
filled; a slot it would leave empty counts as a slot without a click), ``clicks_per_request`` and
``revenue_per_request`` (what the candidate would bill: its own GSP price of the ad in the slot times the billable
event — click for CPC, impression for CPM, conversion for CPA — before any budget cap; the ledger charges no more
than a budget allows, so where budgets bind the logged charges, and live revenue, are lower), per request = per
slot × logged slots per request.

What the replay cannot see, and so assumes unchanged by the candidate: who comes and when (users who return
because of what they were shown), how users tire of repeated ads (the candidate is replayed against the logged
history, not its own), budgets spent (the logged spend, not the candidate's), the per-campaign exploration caps,
and the catalogue (as it is now: a bid changed during the window is replayed at its new value). Behaviour profiles
are read as they are now: a candidate whose click model reads them sees interests the window's own clicks built.
Spend is counted by when each event happened; a serving process sees it when its batch reaches the ledger, and
counts its own recent tokens meanwhile (replayed here from the logged ads).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.schema import EventType
from adrec.evaluation.ope import BanditLog, LogisticReward, RoundValues, one_hot, standard_estimators
from adrec.exceptions import ValidationError
from adrec.feedback.tokens import TokenSigner, new_secret
from adrec.progress import Bars
from adrec.serving.pipeline import Pipeline, PipelineConfig, ServingModel, SlotDistribution
from adrec.store.base import Store, demographic_segment

__all__ = ["METRICS", "AsOf", "LoggedSlots", "evaluate_logged", "read_logged"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

METRICS = ("ctr", "clicks_per_request", "revenue_per_request")


@dataclass(frozen=True)
class LoggedSlots:
    """Served ads with a logged propensity, one row per impression, requests in time order (rows of a request
    together, slots in order)."""

    request: Ints
    """Each row's request, ``0..n_requests - 1`` in time order."""
    user_id: list[str]
    ad_id: list[str]
    placement: list[str | None]
    position: Ints
    """The slot, from 1."""
    ts: Floats
    propensity: Floats
    clicked: Floats
    converted: Floats
    pricing: list[str]
    price: Floats
    """The price per billable event the logging policy charged."""
    charged: Floats
    """What the ledger charged for the row's events."""

    def __len__(self) -> int:
        return len(self.request)

    @property
    def n_requests(self) -> int:
        return int(self.request.max()) + 1 if len(self.request) else 0


def read_logged(store: Store, *, since: float | None = None, until: float | None = None) -> LoggedSlots:
    """The served ads of ``since <= served_ts < until`` whose impression carries a propensity (requests with a slot
    without one are left out whole: a slate is evaluated as a whole)."""
    served: dict[str, tuple[Any, ...]] = {}
    for batch in store.iter_served(since=since, until=until):
        columns = (
            batch.user_id,
            batch.ad_id,
            batch.placement,
            batch.position,
            batch.served_ts,
            batch.click_ts,
            batch.conversion_ts,
            batch.pricing_model,
            batch.price,
            batch.cost,
        )
        for iid, *row in zip(batch.iid.tolist(), *(c.tolist() for c in columns), strict=True):
            served[iid] = tuple(row)
    propensity: dict[str, float] = {}
    # Impressions recorded after ``until`` of ads served before it count: rows are matched by their token's id.
    for events in store.iter_events(types=[EventType.IMPRESSION], since=since, batch_size=100_000):
        for iid, p in zip(events.request_id.tolist(), events.propensity.tolist(), strict=True):
            if iid in served and not math.isnan(p):
                propensity[iid] = p
    # A request's slots: the pipeline names them ``{request_id}-{rank}``, and they share their user and serving
    # time (the simulator's history numbers every impression, with one time per request).
    by_request: dict[tuple[str, str, float], list[str]] = defaultdict(list)
    incomplete: set[tuple[str, str, float]] = set()
    for iid, kept in served.items():
        request = (iid.rsplit("-", 1)[0], kept[0], kept[4])
        by_request[request].append(iid)
        if iid not in propensity or kept[3] < 1:
            incomplete.add(request)
    requests = sorted(
        (r for r in by_request if r not in incomplete), key=lambda r: (min(served[i][4] for i in by_request[r]), r)
    )
    order = [(n, iid) for n, r in enumerate(requests) for iid in sorted(by_request[r], key=lambda i: served[i][3])]
    rows = [served[iid] for _, iid in order]
    return LoggedSlots(
        np.array([n for n, _ in order], dtype=np.int64),
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        np.array([r[3] for r in rows], dtype=np.int64),
        np.array([r[4] for r in rows], dtype=np.float64),
        np.array([propensity[iid] for _, iid in order], dtype=np.float64),
        np.array([not math.isnan(r[5]) for r in rows], dtype=np.float64),
        np.array([not math.isnan(r[6]) for r in rows], dtype=np.float64),
        [str(r[7]) for r in rows],
        np.array([r[8] for r in rows], dtype=np.float64),
        np.array([r[9] for r in rows], dtype=np.float64),
    )


class AsOf:
    """A read-only view of a store as it stood at :attr:`now` (the request being replayed) for budgets and
    frequency caps, and at ``cutoff`` for what the pipeline learns from the event log; everything else is read
    through. Writes are refused."""

    def __init__(self, store: Store, cutoff: float) -> None:
        self._store = store
        self.cutoff = cutoff
        self.now = cutoff
        campaign_of = {a.ad_id: a.campaign_id for batch in store.iter_ads(on_error=_skip) for a in batch}
        spends: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for batch in store.iter_events(batch_size=100_000):
            costly = np.flatnonzero(batch.cost > 0)
            for ad, ts, cost in zip(
                batch.ad_id[costly].tolist(), batch.ts[costly].tolist(), batch.cost[costly].tolist(), strict=True
            ):
                campaign = campaign_of.get(ad)
                if campaign is not None:
                    spends[campaign].append((ts, cost))
        self._spend: dict[str, tuple[list[float], Floats]] = {}
        for campaign, items in spends.items():
            items.sort()
            self._spend[campaign] = ([ts for ts, _ in items], np.concatenate([[0.0], np.cumsum([c for _, c in items])]))

    def _spent(self, campaign: str, at: float, inclusive: bool = False) -> float:
        times, cumulative = self._spend[campaign]
        i = (bisect.bisect_right if inclusive else bisect.bisect_left)(times, at)
        return float(cumulative[i])

    def campaign_spend(self, day: str) -> dict[str, tuple[float, float]]:
        """Each campaign's spend on ``day`` and in total, counting the events before :attr:`now`."""
        start = _day_start(day)
        out = {}
        for campaign in self._spend:
            total = self._spent(campaign, self.now)
            if total > 0:
                out[campaign] = (total - self._spent(campaign, min(start, self.now)), total)
        return out

    def delivery_times(self, user_id: str, since: float) -> list[tuple[str, str, float]]:
        return [d for d in self._store.delivery_times(user_id, since) if d[2] < self.now]

    def iter_events(self, **kwargs: Any) -> Iterator[Any]:
        until = kwargs.pop("until", None)
        return self._store.iter_events(until=self.cutoff if until is None else min(until, self.cutoff), **kwargs)

    def segment_click_counts(self, limit: int = 200) -> dict[str, list[tuple[str, int]]]:
        """As :meth:`~adrec.store.base.Ledger.segment_click_counts`, over the clicks before ``cutoff``."""
        segment = {u.user_id: demographic_segment(u.gender.value, u.age) for b in self._store.iter_users() for u in b}
        counts: dict[str, dict[str, int]] = {}
        for batch in self.iter_events(types=[EventType.CLICK]):
            for user, ad in zip(batch.user_id.tolist(), batch.ad_id.tolist(), strict=True):
                seg = segment.get(user)
                if seg is not None:
                    counts.setdefault(seg, {})
                    counts[seg][ad] = counts[seg].get(ad, 0) + 1
        return {seg: sorted(ads.items(), key=lambda kv: (-kv[1], kv[0]))[:limit] for seg, ads in sorted(counts.items())}

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("append_", "apply_", "upsert_", "delete_", "put_", "revoke_", "bump_")):
            raise AttributeError(f"{name}: a replay reads the store, it never writes it")
        return getattr(self._store, name)


def _skip(record_id: str, err: Exception) -> None:
    """A stored ad that is no longer a valid record: left out, as the serving catalogue leaves it out."""


def _day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class _Replayed:
    """Per logged row: the candidate's probability of the logged ad in the logged slot and its price there; per
    request: its distribution (ads as catalogue action indices)."""

    pi: Floats
    price: Floats
    dists: list[tuple[Ints, SlotDistribution]]


def _replay(
    pipeline: Pipeline,
    view: AsOf,
    logged: LoggedSlots,
    action_of: dict[str, int],
    runs: int,
    progress: bool,
) -> _Replayed:
    pi = np.zeros(len(logged))
    price = np.zeros(len(logged))
    dists: list[tuple[Ints, SlotDistribution]] = []
    starts = np.flatnonzero(np.r_[True, np.diff(logged.request) != 0])
    ends = np.r_[starts[1:], len(logged)]
    with Bars(progress) as bars:
        advance = bars.task("replayed requests", len(starts))
        for n, (lo, hi) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            ts = float(logged.ts[lo])
            view.now = ts
            k = int(logged.position[lo:hi].max())
            dist = pipeline.slot_distribution(
                logged.user_id[lo], k, now=ts, placement=logged.placement[lo], runs=runs, seed=f"{n}"
            )
            where = {a: i for i, a in enumerate(dist.ad_ids)}
            # The logged ads are outstanding for the requests after this one, as they were for the logging policy,
            # with the chances the candidate estimates (0 for an ad it does not score).
            rows = [where.get(a, -1) for a in logged.ad_id[lo:hi]]
            pipeline.remember_served(
                logged.user_id[lo],
                ts,
                logged.ad_id[lo:hi],
                logged.price[lo:hi].tolist(),
                [float(dist.pctr[r]) if r >= 0 else 0.0 for r in rows],
                [float(dist.pcvr[r]) if r >= 0 else 0.0 for r in rows],
            )
            for row in range(lo, hi):
                i = where.get(logged.ad_id[row])
                slot = int(logged.position[row]) - 1
                if i is not None and dist.probability[i, slot] > 0:
                    pi[row] = dist.probability[i, slot]
                    price[row] = dist.price[i, slot]
            shown = np.flatnonzero(dist.probability.sum(axis=1) > 0)  # kept for the DM terms: only what it may show
            kept = dataclasses.replace(
                dist,
                ad_ids=[dist.ad_ids[i] for i in shown.tolist()],
                probability=dist.probability[shown],
                price=dist.price[shown],
                pctr=dist.pctr[shown],
                pcvr=dist.pcvr[shown],
                pricing=[dist.pricing[i] for i in shown.tolist()],
            )
            dists.append((np.array([action_of[a] for a in kept.ad_ids], dtype=np.int64), kept))
            advance(1)
    return _Replayed(pi, price, dists)


def _reward_features(
    store: Store, logged: LoggedSlots, ads: list[str], category: dict[str, str]
) -> tuple[Floats, sp.csr_matrix, Ints, Floats]:
    """Context (the user's demographic segment, one-hot), action features (one-hot ad id), each action's group
    (its ``category``) and the cross vector (the segment again: how much each segment likes each category)."""
    segment = {u.user_id: demographic_segment(u.gender.value, u.age) for b in store.iter_users() for u in b}
    context = one_hot(np.array([segment.get(u, "unknown|?") for u in logged.user_id]))
    groups = np.unique(np.array([category.get(a, "") for a in ads]), return_inverse=True)[1].astype(np.int64)
    return context, sp.identity(len(ads), format="csr"), groups, context


def evaluate_logged(
    store: Store,
    model: str | Path | ServingModel | None,
    config: PipelineConfig,
    *,
    since: float | None = None,
    until: float | None = None,
    runs: int = 100,
    folds: int = 3,
    n_bootstrap: int = 1000,
    tau: float = 100.0,
    lambda_: float = 100.0,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = True,
    describe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Estimate the candidate (``model`` served with ``config``: a model folder, a loaded model, or None for no
    model) on the logged requests of ``[since, until)``; see the module docs. A folder is loaded through the
    :class:`AsOf` view, so a calibration it did not save is fitted on what the store held before the window, as
    serving it then would have.
    Returns the report (``estimates[METRIC][ESTIMATOR] = {estimate, ci_low, ci_high}``, the
    logged policy's own values under ``logged``, and the overlap diagnostics)."""
    logged = read_logged(store, since=since, until=until)
    if not len(logged):
        raise ValidationError(
            "--db",
            "no served ad in the window carries a propensity: serve with exploration (egreedy, softmax or thompson) "
            "to log them",
        )
    cutoff = float(logged.ts[0]) if since is None else since
    view = AsOf(store, cutoff)
    replay_config = dataclasses.replace(config, campaign_explore_share=1.0)
    if isinstance(model, str | Path):
        model = ServingModel.load(model, cast(Store, view))
    pipeline = Pipeline(cast(Store, view), model, TokenSigner(new_secret()), replay_config)
    category = {a.ad_id: a.category or "" for a in pipeline.catalog.ads}  # the catalogue the pipeline loaded
    ads = sorted(category.keys() | set(logged.ad_id))
    action_of = {a: i for i, a in enumerate(ads)}
    got = _replay(pipeline, view, logged, action_of, runs, progress)

    slots = int(logged.position.max())
    action = np.array([action_of[a] for a in logged.ad_id], dtype=np.int64)
    users = np.unique(np.array(logged.user_id), return_inverse=True)[1].astype(np.int64)
    log = BanditLog(action, logged.position - 1, logged.clicked, logged.propensity, len(ads), slots)
    context, features, groups, cross = _reward_features(store, logged, ads, category)
    # Cross-fitting by user: no user's clicks predict their own.
    fold = (np.random.default_rng(seed).permutation(int(users.max()) + 1) % max(folds, 1))[users]
    q_click = np.zeros(len(logged))
    dm_click = np.zeros(len(logged))
    dm_revenue = np.zeros(len(logged))
    q_revenue = np.zeros(len(logged))
    request_rows = np.r_[np.flatnonzero(np.r_[True, np.diff(logged.request) != 0]), len(logged)]
    for f in range(max(folds, 1)):
        train = np.flatnonzero(fold != f)
        if len(train) == 0:  # one fold (or one user): the plug-in model, fitted on every row
            train = np.arange(len(logged))
        reward = LogisticReward(1.0, groups).fit(context[train], features, log.take(train), cross[train])
        for r in np.flatnonzero(fold[request_rows[:-1]] == f).tolist():
            lo, hi = int(request_rows[r]), int(request_rows[r + 1])
            q = reward.predict(context[lo : lo + 1], features, slots, cross[lo : lo + 1])[0]  # (actions, slots)
            acts, dist = got.dists[r]
            # The candidate's chance of a billable event per click chance: 1 for CPM, pCVR for CPA, 1 for CPC.
            pricing = np.array(dist.pricing, dtype=object)
            per_click = np.where(pricing == "CPA", dist.pcvr, 1.0)
            cpm = pricing == "CPM"
            for row in range(lo, hi):
                slot = int(log.position[row])
                q_click[row] = q[action[row], slot]
                if not len(acts) or slot >= dist.probability.shape[1]:
                    continue
                p, qa = dist.probability[:, slot], q[acts, slot]
                billable = np.where(cpm, 1.0, qa * per_click)
                dm_click[row] = float(p @ qa)
                dm_revenue[row] = float(p @ (billable * np.nan_to_num(dist.price[:, slot])))
                mine = np.flatnonzero(acts == action[row])
                if len(mine):
                    q_revenue[row] = float(billable[mine[0]]) * got.price[row]

    pricing_of = np.array(logged.pricing)
    billed = np.where(pricing_of == "CPM", 1.0, np.where(pricing_of == "CPA", logged.converted, logged.clicked))
    revenue_log = dataclasses.replace(log, reward=billed * got.price)
    per_request = len(logged) / logged.n_requests
    estimates: dict[str, dict[str, dict[str, float]]] = {m: {} for m in METRICS}
    for estimator in standard_estimators(tau, lambda_):
        for metric, the_log, values, scale in (
            ("ctr", log, RoundValues(got.pi, dm_click, q_click), 1.0),
            ("clicks_per_request", log, RoundValues(got.pi, dm_click, q_click), per_request),
            ("revenue_per_request", revenue_log, RoundValues(got.pi, dm_revenue, q_revenue), per_request),
        ):
            e = estimator.estimate_interval(
                the_log, values, alpha=alpha, n_bootstrap=n_bootstrap, random_state=seed, cluster=users
            )
            estimates[metric][e.name] = {k: v * scale for k, v in e.as_dict().items()}
    w = got.pi / logged.propensity
    ess = float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0
    warnings = []
    if w.mean() > 1.1:  # E[pi / mu] over the logged slots is at most 1 when mu is the slot's true propensity
        warnings.append(
            f"the mean weight is {w.mean():.2f}, above 1: the logged propensities are smaller than the chance the "
            "logging policy put those ads in those slots (logs not served by adrec's pipeline, such as the "
            "simulator's warm-up history, whose propensities are single-draw approximations?); the estimates are "
            "not to be trusted"
        )
    return {
        "policy": describe or {},
        "rows": len(logged),
        "requests": logged.n_requests,
        "users": int(users.max()) + 1,
        "window": {"since": float(logged.ts[0]), "until": float(logged.ts[-1]), "cutoff": cutoff},
        "logged": {
            "ctr": float(logged.clicked.mean()),
            "clicks_per_request": float(logged.clicked.sum() / logged.n_requests),
            "revenue_per_request": float(logged.charged.sum() / logged.n_requests),
        },
        "overlap": {
            "matched_share": float((got.pi > 0).mean()),
            "mean_weight": float(w.mean()),
            "max_weight": float(w.max()),
            "effective_sample_size": ess,
        },
        "estimates": estimates,
        "warnings": warnings,
        "settings": {
            "runs": runs,
            "folds": folds,
            "n_bootstrap": n_bootstrap,
            "tau": tau,
            "lambda": lambda_,
            "alpha": alpha,
            "seed": seed,
        },
    }


def describe_policy(model: str | None, config: PipelineConfig, keys: Sequence[str]) -> dict[str, Any]:
    """What the report says the candidate was: its model folder and the settings given."""
    return {"model": model, "serving": {k: getattr(config, k) for k in keys}}
