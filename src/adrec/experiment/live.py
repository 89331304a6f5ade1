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

Arms share the store, and so the campaigns' budgets: an arm that spends faster leaves less to the others (the
budget-split design is not built yet). Users do not yet tire of repeated ads or come back by relevance.
"""

from __future__ import annotations

import inspect
import math
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from adrec.data.schema import EventType
from adrec.exceptions import ConfigError
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
from adrec.simulate.history import request_times
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
    ("revenue_per_request", "billed", "requests"),
    ("true_ctr_of_shown", "true_ctr", "impressions"),
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
    totals: dict[str, float]
    """requests, impressions, clicks, conversions, billed (what billable events would cost at the tokens'
    prices), true_ctr (sum of the true click probabilities of the ads shown), spend and unbilled (what the ledger
    charged and what budgets left unbilled)."""
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


_TOTALS = ("requests", "impressions", "clicks", "conversions", "billed", "true_ctr")


def _train(arm: ArmConfig, store: Store, version: str) -> ServingModel | None:
    """The arm's model trained on every click in the store, ready to serve (None before the first click)."""
    data = from_store(store, (EventType.CLICK,)).interactions
    if data.nnz == 0:
        return None
    params = dict(arm.params)
    if "verbose" in inspect.signature(registered_models()[arm.model]).parameters:
        params.setdefault("verbose", False)  # the experiment's own progress bar is the one to watch
    model = get_model(arm.model, **params).fit(data)
    return ServingModel.from_artifact(Artifact.create(model, data), store, version=version)


def run_experiment(
    config: ExperimentConfig,
    store: Store,
    *,
    progress: bool = True,
) -> ExperimentReport:
    """Run the live loop of ``config`` into ``store`` (which should be empty: the market is written into it) and
    compare the arms; see the module docs for what happens."""
    started = time.perf_counter()
    mcfg = config.market
    market = Market.generate(mcfg)
    with Bars(progress) as bars:
        with bars.step("market and warm-up history"):
            simulate(mcfg, store, progress=False)
        live_start = mcfg.start_ts + mcfg.days * 86_400.0
        n_requests = max(1, round(config.requests_per_day * config.days))
        live_cfg = mcfg.model_copy(
            update={
                "start": datetime.fromtimestamp(live_start, UTC),
                "days": max(1, math.ceil(config.days)),
                "n_impressions": n_requests * mcfg.slots,
            }
        )
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(7,)))
        times = request_times(live_cfg, np.arange(n_requests, dtype=np.int64), rng)
        times = live_start + (times - live_start) * (config.days / live_cfg.days)  # fractional days
        cdf = np.cumsum(market.user_activity)
        users = np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n_requests), side="right"), market.n_users - 1)
        user_ids = market.user_ids().tolist()
        arm_of_user = assign_arms(user_ids, [a.traffic for a in config.arms], config.salt)
        ad_index = {a: i for i, a in enumerate(market.ad_ids().tolist())}

        signer = TokenSigner(new_secret())
        pipelines: list[Pipeline] = []
        retrains: list[list[float]] = [[] for _ in config.arms]
        next_retrain = [live_start + a.retrain_hours * 3600.0 for a in config.arms]
        with bars.step("initial models"):
            for arm in config.arms:
                if arm.policy == "model":
                    model = _train(arm, store, f"{arm.name}-0")
                elif arm.policy in ("oracle", "random"):
                    model = reference_model(market, arm.policy, config.seed)
                else:
                    model = None
                pipelines.append(Pipeline(store, model, signer, PipelineConfig()))

        per_user = np.zeros((len(_TOTALS), market.n_users))
        days = max(1, math.ceil(config.days))
        daily = np.zeros((len(config.arms), days, 3))
        ledger = np.zeros((len(config.arms), 2))  # spend, unbilled
        pending: list[list[tuple[float, RawFeedback]]] = [[] for _ in config.arms]

        def flush(now: float) -> None:
            for j, events in enumerate(pending):
                due = [e for ts, e in events if ts <= now]
                if not due:
                    continue
                pending[j] = [(ts, e) for ts, e in events if ts > now]
                report = ingest_feedback(store, signer, due, now=now)
                if report.rejected:
                    raise RuntimeError(f"the ledger rejected simulated events: {report.rejected[:3]}")
                ledger[j] += (report.spend, report.unbilled)
                pipelines[j].refresh_spend()

        advance = bars.task("requests", n_requests)
        next_flush = live_start + config.feedback_every_s
        slots = mcfg.slots
        for r in range(n_requests):
            t = float(times[r])
            while t >= next_flush:
                flush(next_flush)
                next_flush += config.feedback_every_s
            u = int(users[r])
            j = int(arm_of_user[u])
            for k, arm in enumerate(config.arms):
                if arm.policy == "model" and t >= next_retrain[k]:
                    flush(t)
                    t0 = time.perf_counter()
                    model = _train(arm, store, f"{arm.name}-{len(retrains[k]) + 1}")
                    if model is not None:
                        pipelines[k].swap_model(model, relearn=True)
                    retrains[k].append(time.perf_counter() - t0)
                    next_retrain[k] += arm.retrain_hours * 3600.0
            # The request id seeds the pipeline's own draws (exploration): derived from the seed, so runs repeat.
            request_id = f"{(config.seed * 2_654_435_761 + r * 40_503) & 0xFFFFFFFF:08x}r{r}"
            response = pipelines[j].recommend(
                user_ids[u], k=slots, now=t, placement=mcfg.placement, request_id=request_id
            )
            day = min(int((t - live_start) // 86_400), days - 1)
            per_user[0, u] += 1
            daily[j, day, 0] += 1
            if not response.ads:
                if r % 1000 == 999:
                    advance(1000)
                continue
            ads = np.array([ad_index[a.ad_id] for a in response.ads], dtype=np.int64)
            positions = np.arange(1, len(ads) + 1)
            p_click = market.true_ctr(u, ads, positions)
            clicked = rng.random(len(ads)) < p_click
            converted = clicked & (rng.random(len(ads)) < market.true_cvr(u, ads))
            values = market.conversion_value(ads)
            click_delay = 1.0 + rng.exponential(_CLICK_DELAY_S, len(ads))
            conv_delay = rng.lognormal(math.log(_CONVERSION_DELAY_MEDIAN_S), 1.2, len(ads))
            per_user[1, u] += len(ads)
            per_user[2, u] += clicked.sum()
            per_user[3, u] += converted.sum()
            per_user[5, u] += p_click.sum()
            daily[j, day, 1] += len(ads)
            daily[j, day, 2] += clicked.sum()
            events = pending[j]
            for i, served in enumerate(response.ads):
                eid = f"x{config.seed}-{r}-{i}"
                billable = {"CPM": True, "CPC": bool(clicked[i]), "CPA": bool(converted[i])}[served.pricing_model]
                if billable:
                    per_user[4, u] += served.price
                events.append((t, RawFeedback(f"{eid}-i", EventType.IMPRESSION, served.token, t)))
                if clicked[i]:
                    tc = t + float(click_delay[i])
                    events.append((tc, RawFeedback(f"{eid}-c", EventType.CLICK, served.token, tc)))
                    if converted[i]:
                        tv = tc + float(conv_delay[i])
                        v = round(float(values[i]), 2)
                        events.append((tv, RawFeedback(f"{eid}-v", EventType.CONVERSION, served.token, tv, v)))
            if r % 1000 == 999:
                advance(1000)
        advance(n_requests % 1000)
        flush(max([ts for events in pending for ts, _ in events], default=float(times[-1])) + 1.0)

    arms: list[ArmResult] = []
    for j, arm in enumerate(config.arms):
        mine = arm_of_user == j
        active = mine & (per_user[0] > 0)
        sums = per_user[:, active]
        totals = {name: float(sums[i].sum()) for i, name in enumerate(_TOTALS)}
        totals["spend"], totals["unbilled"] = float(ledger[j, 0]), float(ledger[j, 1])
        col = {name: sums[i] for i, name in enumerate(_TOTALS)}
        metrics = {name: ratio_estimate(col[num], col[den]) for name, num, den in METRICS}
        per_day = [
            {"requests": d[0], "impressions": d[1], "clicks": d[2], "ctr": d[2] / d[1] if d[1] else math.nan}
            for d in daily[j].tolist()
        ]
        arms.append(ArmResult(arm.name, int(active.sum()), totals, metrics, per_day, retrains[j]))
    base = next(a for a in arms if a.name == (config.baseline or config.arms[0].name))
    comparisons = [
        compare_ratios(a.name, base.name, name, a.metrics[name], base.metrics[name])
        for a in arms
        if a is not base
        for name, _, _ in METRICS
    ]
    seconds = time.perf_counter() - started
    policies = {arm.policy: result for arm, result in zip(config.arms, arms, strict=True)}
    captured: dict[str, float] = {}
    if "random" in policies and "oracle" in policies:
        low, high = policies["random"].metrics["ctr"].mean, policies["oracle"].metrics["ctr"].mean
        if high > low:
            captured = {a.name: (a.metrics["ctr"].mean - low) / (high - low) for a in arms}
    return ExperimentReport(config, arms, comparisons, seconds, n_requests / seconds if seconds else 0.0, captured)
