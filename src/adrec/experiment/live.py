"""The live loop: a simulated market served through adrec's own pipeline, one simulated request at a time.

1. The market (:class:`~adrec.simulate.Market`) is generated and written to the store with its warm-up history
   (``market.n_impressions`` impressions logged by the simulator's logging policy, through the ledger).
2. The live window starts when the history ends and lasts ``days`` simulated days. Requests arrive on the
   simulator's diurnal curve, each from a user drawn by the users' heavy-tailed activity.
3. Each user belongs to one arm (:func:`~adrec.experiment.assign.assign_arms`, salted hash of the user id). Each arm
   is a :class:`~adrec.serving.Pipeline` over the same store: the one decision path of the API, called with the
   simulated time (``now``), so schedules, daily budgets, pacing, caps windows and token expiry follow the
   simulated clock; nothing reads the wall clock.
4. The user's response is drawn from the market's truth at the served positions (``Market.true_ctr``, position
   bias included; conversions from ``Market.true_cvr``). Impressions, clicks and conversions go back as the API's
   clients send them, with their signed tokens, through :func:`~adrec.feedback.ingest_feedback` every
   ``feedback_every_s`` simulated seconds: the ledger charges them within budgets and caps, and reports see them.
5. Every ``retrain_hours`` simulated hours a model arm retrains its model from the store's clicks and swaps it in
   (:meth:`~adrec.serving.Pipeline.swap_model`, as ``POST /v1/admin/models/reload`` does).

Users react. **Fatigue**: each earlier impression of the same ad to the same user multiplies its click
probability by ``fatigue``. **Return**: visits are drawn hour by hour from each user's visit rate (initially the
market's activity), and after each visit the user's rate is multiplied by ``((r + r̄) / (2 r̄)) ** return_elasticity``,
where ``r`` is the mean click probability of what was shown (0 when nothing was) and ``r̄`` that of random ads at
random slots, bounded to [0.2, 5] times the initial rate; an hour's number of visits follows the diurnal curve
scaled by how far the rates moved in total. A policy that shows irrelevant ads loses visits (``visits_per_user``).

Arms share the store, and so the campaigns' budgets: an arm that spends faster leaves less to the others (the
budget-split design is not built yet). A model arm retrains on the warm-up history's clicks and its own users'
live clicks only; its retrains also refresh the segment rankings it serves cold users from, read from every
arm's events (the other arms keep those of the warm-up history). Revenue is what the ledger charged (the event
log's costs), so an arm is never credited with money a spent budget did not pay.
"""

from __future__ import annotations

import inspect
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from adrec.data.schema import EventBatch, EventType
from adrec.exceptions import ConfigError, ValidationError
from adrec.experiment.assign import assign_arms
from adrec.experiment.reference import reference_model
from adrec.experiment.stats import Comparison, RatioEstimate, compare_ratios, ratio_estimate
from adrec.feedback.ingest import RawFeedback, ingest_feedback
from adrec.feedback.tokens import TokenSigner, new_secret
from adrec.models.artifact import Artifact
from adrec.models.base import get_model, registered_models
from adrec.progress import Bars
from adrec.serving.pipeline import Pipeline, PipelineConfig, ServingModel
from adrec.simulate.config import SimulationConfig
from adrec.simulate.history import hourly_intensity
from adrec.simulate.market import Market
from adrec.simulate.runner import simulate
from adrec.store.base import Store
from adrec.store.datasets import from_store

__all__ = ["ArmConfig", "ArmResult", "ExperimentConfig", "ExperimentReport", "run_experiment"]

_CLICK_DELAY_S = 15.0
_CONVERSION_DELAY_MEDIAN_S = 900.0

#: The metrics compared between arms, each a ratio of per-user sums: (name, numerator, denominator).
METRICS: tuple[tuple[str, str, str], ...] = (
    ("ctr", "clicks", "impressions"),
    ("clicks_per_request", "clicks", "requests"),
    ("cvr", "conversions", "clicks"),
    ("revenue_per_request", "revenue", "requests"),
    ("true_ctr_of_shown", "true_ctr", "impressions"),
    ("visits_per_user", "requests", "users"),
)


class ArmConfig(BaseModel):
    """One policy of the experiment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    policy: Literal["model", "no-model", "oracle", "random"] = "model"
    """``model``: serve a registered recommender trained on the store's clicks; ``no-model``: the pipeline without
    a model (every user is cold: the demographic segment's most-clicked ads, then the most clicked overall);
    ``oracle``: rank by the true click probability (the upper bound); ``random``: relevance ignored (see
    :mod:`adrec.experiment.reference`)."""
    model: str = "bpr"
    """The registered recommender (``adrec train --help`` lists them) of a ``model`` arm."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Its hyper-parameters."""
    traffic: float = Field(default=1.0, gt=0, le=1000)
    """Share of users, relative to the other arms."""
    retrain_hours: float = Field(default=24.0, gt=0, le=24 * 3650)
    """Simulated hours between retrains of a ``model`` arm."""

    @model_validator(mode="after")
    def _known_model(self) -> ArmConfig:
        if self.policy == "model" and self.model not in registered_models():
            known = ", ".join(sorted(registered_models()))
            raise ValueError(f"unknown model {self.model!r}; registered: {known}")
        return self


class ExperimentConfig(BaseModel):
    """What to run: the market, the live days, the traffic and the arms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    market: SimulationConfig = Field(default_factory=SimulationConfig)
    """The market and its warm-up history (``n_impressions`` logged before the live window)."""
    days: float = Field(default=3.0, gt=0, le=365)
    """Simulated days served live, starting when the warm-up history ends."""
    requests_per_day: int = Field(default=20_000, ge=1, le=10**8)
    arms: list[ArmConfig] = Field(min_length=1)
    baseline: str | None = None
    """The arm the others are compared with (default: the first)."""
    salt: str = Field(default="adrec", min_length=1, max_length=100)
    """Salt of the user → arm hash: another salt, another independent split."""
    seed: int = Field(default=0, ge=0)
    """Seed of arrivals and responses (the market has its own, ``market.seed``)."""
    feedback_every_s: float = Field(default=900.0, gt=0, le=86_400)
    """How often, in simulated seconds, the clients send the events they have (conversions arrive later)."""
    fatigue: float = Field(default=0.8, gt=0, le=1)
    """Each earlier impression of the same ad to the same user (in the live window) multiplies its click
    probability by this; 1 switches fatigue off."""
    return_elasticity: float = Field(default=1.0, ge=0, le=10)
    """How much what a user was shown decides whether they come back (see the module docs); 0 switches the return
    model off."""

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        """Read a TOML file (see ``config/experiment.example.toml``); a bad value raises :class:`ConfigError` naming
        the file and the key."""
        p = Path(path)
        try:
            values = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"experiment file {p} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{p}: {err}") from None
        try:
            return cls(**values)
        except PydanticValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(x) for x in first["loc"]) or "(top level)"
            raise ConfigError(f"{p}: {key}: {first['msg']}") from None

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be distinct (got {names})")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not an arm ({', '.join(names)})")
        return self


@dataclass
class ArmResult:
    """What one arm did over the live window."""

    name: str
    users: int
    """Users assigned to the arm (``totals["active_users"]`` of them came at least once)."""
    totals: dict[str, float]
    """requests, impressions, clicks, conversions, billed (what billable events would cost at the tokens'
    prices), true_ctr (sum of the click probabilities of the ads shown, fatigue included), revenue (what the
    ledger charged for them, within budgets), unbilled (billed − revenue), active_users."""
    metrics: dict[str, RatioEstimate]
    daily: list[dict[str, float]]
    """Per simulated day: requests, impressions, clicks, ctr."""
    retrains: list[float] = field(default_factory=list)
    """Seconds each retrain took (training and swapping in)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "users": self.users,
            "totals": self.totals,
            "metrics": {k: v.as_dict() for k, v in self.metrics.items()},
            "daily": self.daily,
            "retrain_seconds": self.retrains,
        }


@dataclass
class ExperimentReport:
    config: ExperimentConfig
    arms: list[ArmResult]
    comparisons: list[Comparison]
    seconds: float
    requests_per_second: float
    gain_captured: dict[str, float] = field(default_factory=dict)
    """With a ``random`` and an ``oracle`` arm: the share of the oracle's CTR gain over random that each arm
    captures, ``(CTR − CTR_random) / (CTR_oracle − CTR_random)``."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "arms": [a.as_dict() for a in self.arms],
            "comparisons": [c.as_dict() for c in self.comparisons],
            "seconds": self.seconds,
            "requests_per_second": self.requests_per_second,
            "gain_captured": self.gain_captured,
        }


_TOTALS = ("requests", "impressions", "clicks", "conversions", "billed", "true_ctr", "revenue")


def _train(
    arm: ArmConfig, store: Store, version: str, keep: Callable[[EventBatch], npt.NDArray[np.bool_]] | None = None
) -> ServingModel | None:
    """The arm's model trained on the store's clicks (those ``keep`` selects), ready to serve (None without any)."""
    try:
        data = from_store(store, (EventType.CLICK,), keep=keep).interactions
    except ValidationError:  # no click to learn from yet
        return None
    if data.nnz == 0:
        return None
    params = dict(arm.params)
    if "verbose" in inspect.signature(registered_models()[arm.model]).parameters:
        params.setdefault("verbose", False)  # the experiment's own progress bar is the one to watch
    model = get_model(arm.model, **params).fit(data)
    return ServingModel.from_artifact(Artifact.create(model, data), store, version=version)


def _reference_relevance(market: Market, rng: np.random.Generator, n: int = 20_000) -> float:
    """The mean true click probability of a random ad at a random slot for a random user: what the return model
    compares a visit with."""
    users = rng.integers(market.n_users, size=n)
    ads = rng.integers(market.n_ads, size=n)
    positions = rng.integers(1, market.config.slots + 1, size=n)
    return float(market.true_ctr(users, ads, positions).mean())


class _Loop:
    """The state of one live run: the arms' pipelines, the users' visit rates and exposures, the events waiting
    to be sent, and what each user did."""

    def __init__(self, config: ExperimentConfig, store: Store, market: Market, bars: Bars) -> None:
        self.config, self.store, self.market = config, store, market
        mcfg = config.market
        self.live_start = mcfg.start_ts + mcfg.days * 86_400.0
        self.rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(7,)))
        self.user_ids = market.user_ids().tolist()
        self.arm_of_user = assign_arms(self.user_ids, [a.traffic for a in config.arms], config.salt)
        self.ad_index = {a: i for i, a in enumerate(market.ad_ids().tolist())}
        self.signer = TokenSigner(new_secret())
        self.pipelines: list[Pipeline] = []
        self.retrains: list[list[float]] = [[] for _ in config.arms]
        self.next_retrain = [self.live_start + a.retrain_hours * 3600.0 for a in config.arms]
        with bars.step("initial models"):
            for arm in config.arms:
                if arm.policy == "model":
                    model = _train(arm, store, f"{arm.name}-0")
                elif arm.policy in ("oracle", "random"):
                    model = reference_model(market, arm.policy, config.seed)
                else:
                    model = None
                # Spend changes only when this loop sends feedback (flush refreshes it): no re-read in between.
                # Served ads count against budgets until their events come: at least two feedback intervals.
                pipeline_config = PipelineConfig(
                    spend_refresh_s=config.feedback_every_s,
                    outstanding_window_s=max(600.0, 2 * config.feedback_every_s),
                )
                self.pipelines.append(Pipeline(store, model, self.signer, pipeline_config))
        self.per_user = np.zeros((len(_TOTALS), market.n_users))
        self.days = max(1, math.ceil(config.days))
        self.daily = np.zeros((len(config.arms), self.days, 3))
        self.pending: list[tuple[float, RawFeedback]] = []
        """Events not sent yet, with their times (every arm's: they go to the ledger together)."""
        self.next_flush = self.live_start + config.feedback_every_s
        self.exposures: dict[tuple[int, int], int] = {}
        self.rate0 = market.user_activity / market.user_activity.sum()
        self.rate = self.rate0.copy()
        """Each user's share of visits, moved by the return model."""
        self.reference = _reference_relevance(market, self.rng)
        self.requests = 0

    def flush(self, now: float) -> None:
        """Send every event due by ``now``, every arm's in one batch (the ledger applies it in time order, so no
        arm gets the last of a shared budget by being listed first), as the clients would."""
        due = [e for ts, e in self.pending if ts <= now]
        if not due:
            return
        self.pending = [(ts, e) for ts, e in self.pending if ts > now]
        report = ingest_feedback(self.store, self.signer, due, now=now)
        if report.rejected:
            raise RuntimeError(f"the ledger rejected simulated events: {report.rejected[:3]}")
        for pipeline in self.pipelines:
            pipeline.refresh_spend()

    def charged(self) -> None:
        """Each user's revenue: what the ledger charged for the live events (their costs in the event log)."""
        index = {u: i for i, u in enumerate(self.user_ids)}
        prefix = f"x{self.config.seed}-"
        for batch in self.store.iter_events(since=self.live_start):
            live = np.fromiter((e.startswith(prefix) for e in batch.event_id.tolist()), bool, len(batch))
            users = np.array([index[u] for u in batch.user_id[live].tolist()], dtype=np.int64)
            self.per_user[6] += np.bincount(users, weights=batch.cost[live], minlength=len(self.user_ids))

    def _own_clicks(self, k: int) -> Callable[[EventBatch], npt.NDArray[np.bool_]]:
        """A mask of the events arm ``k`` may learn from: the warm-up history, and its own users' live events."""
        users = {u for u, a in zip(self.user_ids, self.arm_of_user.tolist(), strict=True) if a == k}
        live_start = self.live_start

        def keep(batch: EventBatch) -> npt.NDArray[np.bool_]:
            own = np.fromiter((u in users for u in batch.user_id.tolist()), dtype=bool, count=len(batch))
            out: npt.NDArray[np.bool_] = (batch.ts < live_start) | own
            return out

        return keep

    def retrain_due(self, t: float) -> None:
        for k, arm in enumerate(self.config.arms):
            if arm.policy == "model" and t >= self.next_retrain[k]:
                self.flush(t)
                t0 = time.perf_counter()
                model = _train(arm, self.store, f"{arm.name}-{len(self.retrains[k]) + 1}", self._own_clicks(k))
                if model is not None:
                    self.pipelines[k].swap_model(model, relearn=True)
                self.retrains[k].append(time.perf_counter() - t0)
                self.next_retrain[k] += arm.retrain_hours * 3600.0

    def visit(self, t: float, u: int) -> None:
        """One request of user ``u`` at ``t``: served by the user's arm, answered from the truth, the events queued,
        and the user's visit rate moved by what they were shown."""
        while t >= self.next_flush:
            self.flush(self.next_flush)
            self.next_flush += self.config.feedback_every_s
        self.retrain_due(t)
        cfg, market, rng = self.config, self.market, self.rng
        r = self.requests
        self.requests += 1
        j = int(self.arm_of_user[u])
        # The request id seeds the pipeline's own draws (exploration): derived from the seed, so runs repeat.
        request_id = f"{(cfg.seed * 2_654_435_761 + r * 40_503) & 0xFFFFFFFF:08x}r{r}"
        response = self.pipelines[j].recommend(
            self.user_ids[u], k=cfg.market.slots, now=t, placement=cfg.market.placement, request_id=request_id
        )
        day = min(int((t - self.live_start) // 86_400), self.days - 1)
        self.per_user[0, u] += 1
        self.daily[j, day, 0] += 1
        relevance = 0.0
        if response.ads:
            ads = np.array([self.ad_index[a.ad_id] for a in response.ads], dtype=np.int64)
            seen = np.array([self.exposures.get((u, a), 0) for a in ads.tolist()])
            for a in ads.tolist():
                self.exposures[(u, a)] = self.exposures.get((u, a), 0) + 1
            p_click = market.true_ctr(u, ads, np.arange(1, len(ads) + 1)) * cfg.fatigue**seen
            relevance = float(p_click.mean())
            clicked = rng.random(len(ads)) < p_click
            converted = clicked & (rng.random(len(ads)) < market.true_cvr(u, ads))
            values = market.conversion_value(ads)
            click_delay = 1.0 + rng.exponential(_CLICK_DELAY_S, len(ads))
            conv_delay = rng.lognormal(math.log(_CONVERSION_DELAY_MEDIAN_S), 1.2, len(ads))
            self.per_user[1:4, u] += (len(ads), clicked.sum(), converted.sum())
            self.per_user[5, u] += p_click.sum()
            self.daily[j, day, 1:] += (len(ads), clicked.sum())
            events = self.pending
            for i, served in enumerate(response.ads):
                eid = f"x{cfg.seed}-{r}-{i}"
                billable = {"CPM": True, "CPC": bool(clicked[i]), "CPA": bool(converted[i])}[served.pricing_model]
                if billable:
                    self.per_user[4, u] += served.price
                events.append((t, RawFeedback(f"{eid}-i", EventType.IMPRESSION, served.token, t)))
                if clicked[i]:
                    tc = t + float(click_delay[i])
                    events.append((tc, RawFeedback(f"{eid}-c", EventType.CLICK, served.token, tc)))
                    if converted[i]:
                        tv = tc + float(conv_delay[i])
                        v = round(float(values[i]), 2)
                        events.append((tv, RawFeedback(f"{eid}-v", EventType.CONVERSION, served.token, tv, v)))
        if cfg.return_elasticity:
            factor = ((relevance + self.reference) / (2.0 * self.reference)) ** cfg.return_elasticity
            self.rate[u] = min(max(self.rate[u] * factor, 0.2 * self.rate0[u]), 5.0 * self.rate0[u])

    def run(self, advance: Callable[[int], None]) -> None:
        """Every simulated hour: its visits (the diurnal share of the day's requests, scaled by how far the users'
        visit rates moved in total), from users drawn by their current rates, at uniform times in the hour."""
        cfg = self.config
        hours = max(1, math.ceil(cfg.days * 24))
        share = hourly_intensity(self.live_start, hours)
        share[-1] *= cfg.days * 24 - (hours - 1)  # a partial last hour
        expected = cfg.requests_per_day * cfg.days * share / share.sum()
        carry = 0.0
        for hour in range(hours):
            carry += float(expected[hour]) * float(self.rate.sum())
            n = int(carry + 1e-9)
            carry -= n
            cdf = np.cumsum(self.rate)
            users = np.minimum(np.searchsorted(cdf / cdf[-1], self.rng.random(n), side="right"), len(cdf) - 1)
            length = 3600.0 * min(1.0, cfg.days * 24 - hour)
            times = self.live_start + hour * 3600.0 + np.sort(self.rng.random(n)) * length
            for t, u in zip(times.tolist(), users.tolist(), strict=True):
                self.visit(t, u)
            advance(n)
        self.flush(max((ts for ts, _ in self.pending), default=self.live_start) + 1.0)


def run_experiment(
    config: ExperimentConfig,
    store: Store,
    *,
    progress: bool = True,
) -> ExperimentReport:
    """Run the live loop of ``config`` into ``store`` (which should be empty: the market is written into it) and
    compare the arms; see the module docs for what happens."""
    started = time.perf_counter()
    market = Market.generate(config.market)
    with Bars(progress) as bars:
        with bars.step("market and warm-up history"):
            simulate(config.market, store, progress=False, market=market)
        loop = _Loop(config, store, market, bars)
        loop.run(bars.task("requests", round(config.requests_per_day * config.days)))
        loop.charged()
    arm_of_user, per_user, daily, retrains = loop.arm_of_user, loop.per_user, loop.daily, loop.retrains
    n_requests = loop.requests
    arms: list[ArmResult] = []
    for j, arm in enumerate(config.arms):
        mine = arm_of_user == j  # every user of the arm, those who never came included (visits per user)
        sums = per_user[:, mine]
        totals = {name: float(sums[i].sum()) for i, name in enumerate(_TOTALS)}
        totals["spend"] = totals["revenue"]
        totals["unbilled"] = max(totals["billed"] - totals["revenue"], 0.0)
        totals["active_users"] = float((sums[0] > 0).sum())
        col = {name: sums[i] for i, name in enumerate(_TOTALS)}
        col["users"] = np.ones(int(mine.sum()))
        metrics = {name: ratio_estimate(col[num], col[den]) for name, num, den in METRICS}
        per_day = [
            {"requests": d[0], "impressions": d[1], "clicks": d[2], "ctr": d[2] / d[1] if d[1] else math.nan}
            for d in daily[j].tolist()
        ]
        arms.append(ArmResult(arm.name, int(mine.sum()), totals, metrics, per_day, retrains[j]))
    base = next(a for a in arms if a.name == (config.baseline or config.arms[0].name))
    comparisons = [
        compare_ratios(a.name, base.name, name, a.metrics[name], base.metrics[name])
        for a in arms
        if a is not base
        for name, _, _ in METRICS
    ]
    seconds = time.perf_counter() - started
    first: dict[str, ArmResult] = {}  # the first arm of each policy
    for arm, result in zip(config.arms, arms, strict=True):
        first.setdefault(arm.policy, result)
    captured: dict[str, float] = {}
    if "random" in first and "oracle" in first:
        low, high = first["random"].metrics["ctr"].mean, first["oracle"].metrics["ctr"].mean
        if high > low:
            captured = {a.name: (a.metrics["ctr"].mean - low) / (high - low) for a in arms}
    return ExperimentReport(config, arms, comparisons, seconds, n_requests / seconds if seconds else 0.0, captured)
