"""The live loop: a simulated market served through adrec's own pipeline, one simulated request at a time.

1. The market (:class:`~adrec.simulate.Market`) is generated once. Each arm gets a store of its own holding the
   market and its warm-up history (``market.n_impressions`` impressions logged by the simulator's logging policy,
   through the ledger), and its traffic share of every campaign's remaining budget (**budget split**, see
   :mod:`adrec.experiment.markets`): arms cannot win, or lose, by draining budgets the others share.
2. The live window starts when the history ends and lasts ``days`` simulated days. Requests arrive on the
   simulator's diurnal curve, each from a user drawn by the users' heavy-tailed activity.
3. Each user belongs to one arm (:func:`~adrec.experiment.assign.assign_arms`, salted hash of the user id). Each arm
   is a :class:`~adrec.serving.Pipeline` over its store: the one decision path of the API, called with the
   simulated time (``now``), so schedules, daily budgets, pacing, caps windows and token expiry follow the
   simulated clock; nothing reads the wall clock.
4. The user's response is drawn from the market's truth at the served positions (``Market.true_ctr``, position
   bias included; conversions from ``Market.true_cvr``), with each arm's own random stream. Impressions, clicks
   and conversions go back as the API's clients send them, with their signed tokens, through
   :func:`~adrec.feedback.ingest_feedback` every ``feedback_every_s`` simulated seconds: the ledger charges them
   within budgets and caps, and reports see them.
5. Every ``retrain_hours`` simulated hours a model arm retrains its model from its store's clicks (the warm-up
   history and its own users' live clicks) and swaps it in (:meth:`~adrec.serving.Pipeline.swap_model`, as
   ``POST /v1/admin/models/reload`` does), re-reading the segment rankings it serves cold users from.
6. The market changes: campaigns launch (``launch``, ads with no history), advertisers change bids
   (``bid_change``), campaigns end on their schedules and budgets run out.

Users react. **Fatigue**: each impression of the same ad to the same user in the last ``fatigue_window_s`` (the
warm-up's included) multiplies its click probability by ``fatigue``. **Return**: visits are drawn hour by hour
from each user's visit rate (initially the market's activity), and after each visit the user's rate is multiplied
by ``((r + r̄) / (2 r̄)) ** return_elasticity``, where ``r`` is the mean click probability of what was shown (0 when
nothing was) and ``r̄`` that of random ads at random slots, bounded to [0.2, 5] times the initial rate; an hour's
number of visits follows the diurnal curve scaled by how far the rates moved in total. A policy that shows
irrelevant ads loses visits (``visits_per_user``).

Revenue is what the ledger charged (the event log's costs), so an arm is never credited with money a spent budget
did not pay. What is measured is listed in :data:`METRICS` (ratios with user-clustered CIs) and
:class:`ArmResult` (coverage, calibration, pacing, budget utilisation, regret against the oracle, the learning
curve across retrains).
"""

from __future__ import annotations

import inspect
import math
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from adrec.data.interactions import Interactions
from adrec.data.schema import EventType
from adrec.exceptions import ConfigError, ValidationError
from adrec.experiment.assign import assign_arms
from adrec.experiment.markets import (
    ArmBudgets,
    BidChange,
    Launch,
    change_bids,
    pick_campaigns,
    split_budgets,
    with_launches,
)
from adrec.experiment.reference import reference_model
from adrec.experiment.servers import ArmServer, InProcess, OverHttp
from adrec.experiment.stats import Comparison, RatioEstimate, compare_ratios, ratio_estimate
from adrec.feedback.clicks import served_click_dataset
from adrec.feedback.ingest import RawFeedback
from adrec.feedback.tokens import TokenSigner, new_secret
from adrec.models.artifact import Artifact
from adrec.models.base import Recommender, get_model, registered_models
from adrec.models.ctr import ClickModel, get_click_model, load_click_model, registered_click_models
from adrec.profiles.builder import ProfileBuilder
from adrec.progress import Bars
from adrec.serving.calibration import held_out_calibration
from adrec.serving.pipeline import CLICK_MODEL_DIR, PipelineConfig, ServingModel, find_model_dir
from adrec.simulate.config import SimulationConfig
from adrec.simulate.history import hourly_intensity
from adrec.simulate.market import Market
from adrec.simulate.runner import simulate
from adrec.store import open_store
from adrec.store.base import Store
from adrec.store.datasets import from_store

__all__ = ["ArmConfig", "ArmResult", "ExperimentConfig", "ExperimentReport", "run_experiment", "train_arm"]

_CLICK_DELAY_S = 15.0
_CONVERSION_DELAY_MEDIAN_S = 900.0

#: Per-user sums kept for every user (rows of the loop's ``per_user``).
_TOTALS = (
    "requests",
    "impressions",
    "clicks",
    "conversions",
    "billed",
    "true_ctr",
    "revenue",
    "value",
    "welfare",
    "pctr",
    "new_impressions",
)
_ROW = {name: i for i, name in enumerate(_TOTALS)}

#: The metrics compared between arms, each a ratio of per-user sums: (name, numerator, denominator).
METRICS: tuple[tuple[str, str, str], ...] = (
    ("ctr", "clicks", "impressions"),
    ("clicks_per_request", "clicks", "requests"),
    ("cvr", "conversions", "clicks"),
    ("conversions_per_request", "conversions", "requests"),
    ("revenue_per_request", "revenue", "requests"),
    ("value_per_request", "value", "requests"),
    ("roi", "value", "revenue"),
    ("welfare_per_request", "welfare", "requests"),
    ("true_ctr_of_shown", "true_ctr", "impressions"),
    ("expected_clicks_per_request", "true_ctr", "requests"),
    ("pcoc", "pctr", "true_ctr"),
    ("new_ad_share", "new_impressions", "impressions"),
    ("visits_per_user", "requests", "users"),
    ("clicks_per_user", "clicks", "users"),
    ("conversions_per_user", "conversions", "users"),
    ("revenue_per_user", "revenue", "users"),
    ("welfare_per_user", "welfare", "users"),
)
"""``value``: the advertisers' conversion value; ``roi``: conversion value per unit the ledger charged;
``welfare``: the true expected conversion value of what was shown (click × conversion probability × order
value); ``true_ctr``: the true click probability of each ad shown, at its position, fatigue included;
``expected_clicks_per_request`` is the quantity regret is measured in; ``pcoc``: Σ served pCTR / Σ true click
probability (1 is calibrated); ``new_ad_share``: impressions of ads launched during the run.

``*_per_user`` divide by every user assigned to the arm, those who never came included: the arm's share of the
users is its share of every budget (the budget split), so these are the totals "for the same budget". They are
the headline for revenue and clicks: with users who come back (the return model) the number of requests is itself
an outcome of the policy, and a per-request ratio penalises the arm whose users return — the oracle earns less
per request than popularity on the default market once its budgets run out, and far more per user."""

#: The pipeline settings an arm may set (the loop sets the spend refresh and outstanding window itself).
_SERVING_KEYS = (
    "n_candidates",
    "explore_share",
    "exploration",
    "epsilon",
    "temperature",
    "prior_precision",
    "max_explore",
    "propensity_draws",
    "campaign_explore_share",
    "max_per_advertiser",
    "category_decay",
    "reserve_ecpm",
    "pcvr",
    "pcvr_prior_clicks",
    "repeat_decay",
    "repeat_window_s",
)
_INTEGER_KEYS = ("n_candidates", "max_per_advertiser", "max_explore", "propensity_draws")

#: Log-spaced pCTR bins of the calibration (ECE) table.
_CALIBRATION_EDGES = np.logspace(-4, 0, 17)


class ArmConfig(BaseModel):
    """One policy of the experiment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Letters, digits, ``_``, ``.`` and ``-`` (it names the arm's store in ``--db`` templates)."""
    policy: Literal["model", "no-model", "oracle", "random"] = "model"
    """``model``: serve a registered recommender trained on the store's clicks; ``no-model``: the pipeline without
    a model (every user is cold: the demographic segment's most-clicked ads, then the most clicked overall);
    ``oracle``: rank by the true click probability (the upper bound); ``random``: relevance ignored (see
    :mod:`adrec.experiment.reference`)."""
    model: str = "bpr"
    """The registered recommender (``adrec train --help`` lists them) of a ``model`` arm."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Its hyper-parameters."""
    model_dir: str | None = None
    """A saved model folder (``adrec train --out DIR``; with its click model in ``DIR/ctr`` if it has one) that a
    ``model`` arm serves as it is, never retrained (``model``, ``params`` and ``retrain_hours`` do not apply): the
    candidate ``adrec ope --policy-model DIR`` estimated offline, run live."""
    click_model: str | None = None
    """A registered click model (``lr``, ``fm``, ``dcnv2``, ``lightgbm``) that ranks the candidates the arm's
    ``model`` retrieves: trained with it, at the start and at each retrain, on the ads the arm's store served
    (:func:`~adrec.feedback.clicks.served_click_dataset`). Its features read behaviour profiles, so the arm also
    runs the profile job: its store's profiles are built before the window and updated at each retrain."""
    click_params: dict[str, Any] = Field(default_factory=dict)
    """The click model's hyper-parameters."""
    traffic: float = Field(default=1.0, gt=0, le=1000)
    """Share of users, relative to the other arms; also the arm's share of every campaign's budget."""
    retrain_hours: float = Field(default=24.0, gt=0, le=24 * 3650)
    """Simulated hours between retrains of a ``model`` arm."""
    serving: dict[str, float | str] = Field(default_factory=dict)
    """The arm's ranking, re-ranking and exploration settings: :class:`~adrec.serving.PipelineConfig` fields
    (``n_candidates``, ``explore_share``, ``exploration`` (a name: none, egreedy, softmax, thompson), ``epsilon``,
    ``temperature``, ``prior_precision``, ``max_explore``, ``propensity_draws``, ``campaign_explore_share``,
    ``max_per_advertiser``,
    ``category_decay``, ``reserve_ecpm``, ``pcvr``, ``pcvr_prior_clicks``, ``repeat_decay``,
    ``repeat_window_s``), the serving defaults where left out; the ``oracle`` knows the truth, so its
    ``repeat_decay`` is the market's ``fatigue`` unless set."""

    @model_validator(mode="after")
    def _known_model(self) -> ArmConfig:
        if self.policy == "model" and self.model not in registered_models():
            known = ", ".join(sorted(registered_models()))
            raise ValueError(f"unknown model {self.model!r}; registered: {known}")
        if self.model_dir is not None:
            if self.policy != "model":
                raise ValueError(f"model_dir is served by a model arm, not by a {self.policy} arm")
            if self.click_model is not None:
                raise ValueError("an arm serving model_dir takes its click model from the folder (DIR/ctr)")
            if not Path(self.model_dir).exists():
                raise ValueError(f"model_dir {self.model_dir} does not exist")
        if self.click_model is not None:
            if self.policy != "model":
                raise ValueError(f"click_model ranks the candidates of a model arm, not of a {self.policy} arm")
            if self.click_model not in registered_click_models():
                known = ", ".join(sorted(registered_click_models()))
                raise ValueError(f"unknown click model {self.click_model!r}; registered: {known}")
        unknown = set(self.serving) - set(_SERVING_KEYS)
        if unknown:
            raise ValueError(f"unknown serving settings {sorted(unknown)}; known: {', '.join(_SERVING_KEYS)}")
        for key, value in self.serving.items():
            if isinstance(value, str) != (key == "exploration"):
                want = "a strategy name" if key == "exploration" else "a number"
                raise ValueError(f"serving.{key} must be {want} (got {value!r})")
        for key in ("n_candidates", "max_per_advertiser"):
            v = self.serving.get(key)
            if isinstance(v, float | int) and (v < 1 or v != int(v)):
                raise ValueError(f"serving.{key} must be a whole number of at least 1 (got {v:g})")
        for key in ("max_explore", "propensity_draws"):
            v = self.serving.get(key)
            if isinstance(v, float | int) and (v < 0 or v != int(v)):
                raise ValueError(f"serving.{key} must be a whole number of at least 0 (got {v:g})")
        reserve = self.serving.get("reserve_ecpm", 0.0)
        if isinstance(reserve, float | int) and reserve < 0:
            raise ValueError(f"serving.reserve_ecpm must be at least 0 (got {reserve:g})")
        try:
            self.pipeline_config(900.0)  # the pipeline's own checks of the other values
        except ConfigError as err:
            raise ValueError(f"serving: {err}") from None
        return self

    def pipeline_config(
        self, feedback_every_s: float, defaults: dict[str, float | str] | None = None
    ) -> PipelineConfig:
        """The arm's pipeline settings (``defaults`` under its own). Spend changes only when the loop sends
        feedback, which refreshes it: no re-read in between; served ads count against budgets until their events
        come, at least two feedback intervals."""
        merged = {**(defaults or {}), **self.serving}
        values: dict[str, Any] = {k: int(v) if k in _INTEGER_KEYS else v for k, v in merged.items()}
        return PipelineConfig(
            **values, spend_refresh_s=feedback_every_s, outstanding_window_s=max(600.0, 2 * feedback_every_s)
        )


class ExperimentConfig(BaseModel):
    """What to run: the market, the live days, the traffic, the market's changes and the arms."""

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
    """Seed of arrivals, responses and the market's changes (the market has its own, ``market.seed``)."""
    feedback_every_s: float = Field(default=900.0, gt=0, le=86_400)
    """How often, in simulated seconds, the clients send the events they have (conversions arrive later)."""
    fatigue: float = Field(default=0.8, gt=0, le=1)
    """Each earlier impression of the same ad to the same user within ``fatigue_window_s`` multiplies its click
    probability by this; 1 switches fatigue off."""
    fatigue_window_s: float = Field(default=86_400.0, gt=0, le=365 * 86_400)
    """How long an impression tires the user of that ad, in simulated seconds."""
    return_elasticity: float = Field(default=1.0, ge=0, le=10)
    """How much what a user was shown decides whether they come back (see the module docs); 0 switches the return
    model off."""
    http: bool = False
    """Serve the ``model`` and ``no-model`` arms through real ``adrec serve`` processes over HTTP, one per arm on
    its store (a file: ``--db`` with ``{arm}``, or a temporary one), instead of in this process: slower, and a
    check that the API decides as the pipeline does. The ``oracle`` and ``random`` arms, whose models are the
    simulator's truth, stay in process."""
    launch: Launch | None = None
    """Campaigns held back from the warm-up and launched during the live window (none by default)."""
    bid_change: BidChange | None = None
    """Advertisers changing bids during the live window (none by default)."""

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
        for what, change in (("launch", self.launch), ("bid_change", self.bid_change)):
            if change is not None and change.day >= self.days:
                raise ValueError(f"{what}.day {change.day:g} is not within the {self.days:g} live days")
        return self

    @property
    def live_start(self) -> float:
        """When the live window opens: the end of the warm-up history."""
        return self.market.start_ts + self.market.days * 86_400.0

    def traffic_shares(self) -> list[float]:
        total = sum(a.traffic for a in self.arms)
        return [a.traffic / total for a in self.arms]


@dataclass
class ArmResult:
    """What one arm did over the live window."""

    name: str
    users: int
    """Users assigned to the arm (``totals["active_users"]`` of them came at least once)."""
    totals: dict[str, float]
    """requests, impressions, clicks, conversions, billed (what billable events would cost at the tokens'
    prices), true_ctr, revenue (what the ledger charged, within the arm's budgets), value, welfare, pctr,
    new_impressions (see :data:`METRICS`), spend (= revenue, the advertisers' side), unbilled (billed − revenue),
    active_users, budget (what the arm's campaigns could spend in the window), regret (expected clicks lost
    against the oracle arm over the arm's requests; NaN without one)."""
    metrics: dict[str, RatioEstimate]
    daily: list[dict[str, float]]
    """Per simulated day: requests, impressions, clicks, ctr, true_ctr (summed), revenue, new_impressions,
    new_ad_ctr (true CTR of the launched ads' impressions), cumulative_regret."""
    summary: dict[str, float] = field(default_factory=dict)
    """coverage (share of the ads live in the window that the arm showed), ece (expected calibration error of the
    served pCTR against the true click probability), budget_utilisation (revenue / budget), pacing_error (mean
    distance of each campaign-day's cumulative spend from the even-pacing line, in daily budgets)."""
    calibration: list[dict[str, float]] = field(default_factory=list)
    """Per pCTR bin with impressions: count, mean served pCTR, mean true click probability."""
    learning_curve: list[dict[str, float]] = field(default_factory=list)
    """Per model version served (the initial one, then each retrain): from (simulated hours into the window),
    requests, impressions, true_ctr_of_shown, ctr."""
    retrains: list[float] = field(default_factory=list)
    """Seconds each retrain took (training and swapping in)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "users": self.users,
            "totals": self.totals,
            "metrics": {k: v.as_dict() for k, v in self.metrics.items()},
            "daily": self.daily,
            "summary": self.summary,
            "calibration": self.calibration,
            "learning_curve": self.learning_curve,
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
    regret: list[Comparison] = field(default_factory=list)
    """With an ``oracle`` arm: each other arm against it on expected clicks per request (the difference is minus
    the regret per request)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: market (the stores' warm-up), serving (the live loop, retrains included), retraining,
    accounting."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "arms": [a.as_dict() for a in self.arms],
            "comparisons": [c.as_dict() for c in self.comparisons],
            "regret": [c.as_dict() for c in self.regret],
            "seconds": self.seconds,
            "requests_per_second": self.requests_per_second,
            "gain_captured": self.gain_captured,
            "timings": self.timings,
        }


def _quiet(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``verbose`` off for ``model`` and the models it wraps (``base``, ``generator``) where they
    take it: the experiment's own progress bar is the one to watch."""
    out = dict(params)
    signature = inspect.signature(registered_models()[model]).parameters
    if "verbose" in signature:
        out.setdefault("verbose", False)
    for role in ("base", "generator"):
        if f"{role}_params" in signature:
            wrapped = out.get(role, signature[role].default)
            if isinstance(wrapped, str) and wrapped in registered_models():
                out[f"{role}_params"] = _quiet(wrapped, dict(out.get(f"{role}_params") or {}))
    return out


def _fit(arm: ArmConfig, data: Interactions) -> Recommender:
    return get_model(arm.model, **_quiet(arm.model, arm.params)).fit(data)


def train_arm(arm: ArmConfig, store: Store) -> Artifact | None:
    """The arm's model trained on its store's clicks (None without any), its pCTR calibrated on impressions a copy
    trained on earlier clicks never saw (:func:`~adrec.serving.calibration.held_out_calibration`; fitted in-sample
    when the model is loaded if too few clicks are held out)."""
    try:
        data = from_store(store, (EventType.CLICK,)).interactions
    except ValidationError:  # no click to learn from yet
        return None
    if data.nnz == 0:
        return None
    artifact = Artifact.create(_fit(arm, data), data)
    artifact.calibration = held_out_calibration(lambda early: _fit(arm, early), store)
    return artifact


def _train_click(arm: ArmConfig, store: Store) -> ClickModel | None:
    """The arm's click model trained on its store's served ads (None without a click model, or before the store
    has clicks to learn from): the last tenth of their span validates and calibrates it."""
    if arm.click_model is None:
        return None
    try:
        data = served_click_dataset(store, valid_share=0.1, test_share=0.0, name=f"arm {arm.name}'s store")
    except ValidationError:
        return None
    return get_click_model(arm.click_model, **arm.click_params).fit(data.train, data.valid, spec=data.spec)


def _reference_relevance(market: Market, rng: np.random.Generator, n: int = 20_000) -> float:
    """The mean true click probability of a random ad at a random slot for a random user: what the return model
    compares a visit with."""
    users = rng.integers(market.n_users, size=n)
    ads = rng.integers(market.n_ads, size=n)
    positions = rng.integers(1, market.config.slots + 1, size=n)
    return float(market.true_ctr(users, ads, positions).mean())


#: Columns of the loop's per-arm, per-day table.
_DAILY = ("requests", "impressions", "clicks", "true_ctr", "new_impressions", "new_true_ctr")


class _Loop:
    """The state of one live run: the arms' stores and pipelines, the users' visit rates and exposures, the
    events waiting to be sent, and what each user did."""

    def __init__(
        self,
        config: ExperimentConfig,
        stores: list[Store],
        market: Market,
        launched: npt.NDArray[np.bool_],
        budgets: list[ArmBudgets],
        bars: Bars,
    ) -> None:
        self.config, self.stores, self.market, self.budgets = config, stores, market, budgets
        self.live_start = config.live_start
        self.hours = max(1, math.ceil(config.days * 24))
        self.rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(7,)))
        self.arrival_rngs = [
            np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(11, k))) for k in range(len(stores))
        ]
        self.arm_rngs = [
            np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(8, k))) for k in range(len(stores))
        ]
        """Each arm's arrivals and responses come from streams of its own: what one arm shows (and so how often its
        users come back) cannot move another's draws."""
        self.user_ids = market.user_ids().tolist()
        self.arm_of_user = assign_arms(self.user_ids, [a.traffic for a in config.arms], config.salt)
        self.ad_index = {a: i for i, a in enumerate(market.ad_ids().tolist())}
        self.new_ad = launched[market.ad_campaign]
        secret = new_secret()
        self.signer = TokenSigner(secret)
        self.servers: list[ArmServer] = []
        self.retrains: list[list[float]] = [[] for _ in config.arms]
        self.next_retrain = [self.live_start + a.retrain_hours * 3600.0 for a in config.arms]
        self.profiled_until = [self.live_start] * len(config.arms)
        """Until when each click arm's profile job has folded the events into its store's profiles."""
        with bars.step("initial models" + (" and servers" if config.http else "")):
            for arm, store in zip(config.arms, stores, strict=True):
                artifact = train_arm(arm, store) if arm.policy == "model" and arm.model_dir is None else None
                click = None
                if arm.model_dir is not None:
                    folder = find_model_dir(arm.model_dir)
                    artifact = Artifact.load(folder)
                    if (folder / CLICK_MODEL_DIR).is_dir():
                        click = load_click_model(folder / CLICK_MODEL_DIR)
                        ProfileBuilder().rebuild(store)  # its features read the profiles the warm-up built
                if arm.click_model is not None:
                    ProfileBuilder().rebuild(store)  # the profile job, on the warm-up history
                    click = _train_click(arm, store) if artifact is not None else None
                truth: dict[str, float | str] = {
                    "repeat_decay": config.fatigue,
                    "repeat_window_s": config.fatigue_window_s,
                }
                defaults = truth if arm.policy == "oracle" else None  # the oracle knows how users tire
                pipeline_config = arm.pipeline_config(config.feedback_every_s, defaults)
                if config.http and arm.policy in ("model", "no-model"):
                    url = str(getattr(store, "url", ""))
                    server: ArmServer = OverHttp(store, url, arm.name, secret, pipeline_config, artifact, click=click)
                else:
                    model: ServingModel | None = None
                    if arm.policy in ("oracle", "random"):
                        model = reference_model(market, arm.policy, config.seed)
                    elif arm.model_dir is not None:
                        model = ServingModel.load(arm.model_dir, store)  # its conversion model (DIR/cvr) too
                    elif artifact is not None:
                        model = ServingModel.from_artifact(artifact, store, version=f"{arm.name}-0", click=click)
                    server = InProcess(store, model, self.signer, pipeline_config)
                self.servers.append(server)
        n_arms = len(config.arms)
        self.per_user = np.zeros((len(_TOTALS), market.n_users))
        self.days = max(1, math.ceil(config.days))
        self.daily = np.zeros((n_arms, self.days, len(_DAILY)))
        self.shown = np.zeros((n_arms, market.n_ads), dtype=bool)
        self.calibration = np.zeros((n_arms, len(_CALIBRATION_EDGES) + 1, 3))
        """Per arm and pCTR bin: impressions, Σ served pCTR, Σ true click probability."""
        self.periods: list[list[list[float]]] = [[[0.0, 0, 0, 0.0, 0]] for _ in config.arms]
        """Per arm, per model version: [start hour, requests, impressions, Σ true click probability, clicks]."""
        self.hourly_shown = np.zeros((n_arms, self.hours, 2))
        """Per arm and live hour: impressions and Σ their true click probability (the oracle's, hour by hour, is
        what each learning-curve period is compared with)."""
        self.pending: list[list[tuple[float, RawFeedback]]] = [[] for _ in config.arms]
        """Each arm's events not sent yet, with their times."""
        self.next_flush = self.live_start + config.feedback_every_s
        self.changes = self._market_changes()
        self.exposures = self._recent_impressions(stores[0])
        """Per (user, ad): the times the user was shown the ad within the fatigue window (warm-up included)."""
        self.rate0 = market.user_activity / market.user_activity.sum()
        self.rate = self.rate0.copy()
        """Each user's share of visits, moved by the return model."""
        self.reference = _reference_relevance(market, self.rng)
        self.requests = 0
        self.arm_requests = [0] * n_arms
        self.retrain_seconds = 0.0

    def _recent_impressions(self, store: Store) -> dict[tuple[int, int], list[float]]:
        """The warm-up's impressions within the fatigue window before the live start (the same in every arm's
        store), per (user, ad)."""
        user_index = {u: i for i, u in enumerate(self.user_ids)}
        out: dict[tuple[int, int], list[float]] = {}
        since = self.live_start - self.config.fatigue_window_s
        for batch in store.iter_events(types=[EventType.IMPRESSION], since=since):
            for u, a, ts in zip(batch.user_id.tolist(), batch.ad_id.tolist(), batch.ts.tolist(), strict=True):
                if ts < self.live_start:
                    out.setdefault((user_index[u], self.ad_index[a]), []).append(ts)
        return out

    def _market_changes(self) -> list[tuple[float, list[str]]]:
        """The bid changes due during the window: (when, campaign ids)."""
        change = self.config.bid_change
        if change is None:
            return []
        rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(9,)))
        picked = pick_campaigns(np.ones(self.market.n_campaigns, dtype=bool), change.share, rng)
        ids = self.market.campaign_ids()[picked].tolist()
        return [(self.live_start + change.day * 86_400.0, ids)]

    def apply_changes(self, t: float) -> None:
        while self.changes and t >= self.changes[0][0]:
            when, ids = self.changes.pop(0)
            self.flush(when)
            assert self.config.bid_change is not None
            for store, server in zip(self.stores, self.servers, strict=True):
                change_bids(store, ids, self.config.bid_change.factor)
                server.refresh_catalog()

    def flush(self, now: float) -> None:
        """Send each arm's events due by ``now`` to its ledger, in time order, as the clients would."""
        for k, pending in enumerate(self.pending):
            due = [e for ts, e in pending if ts <= now]
            if not due:
                continue
            self.pending[k] = [(ts, e) for ts, e in pending if ts > now]
            rejected = self.servers[k].send(due, now)
            if rejected:
                raise RuntimeError(f"the ledger rejected simulated events: {rejected[:3]}")

    def _live_costs(
        self, k: int
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[Any]]]:
        """Arm ``k``'s live events with a cost: (user index, ad index, ts, cost) per batch."""
        user_index = {u: i for i, u in enumerate(self.user_ids)}
        prefix = f"x{self.config.seed}-"
        for batch in self.stores[k].iter_events(since=self.live_start):
            live = np.fromiter((e.startswith(prefix) for e in batch.event_id.tolist()), bool, len(batch))
            live &= batch.cost > 0
            if not live.any():
                continue
            users = np.array([user_index[u] for u in batch.user_id[live].tolist()], dtype=np.int64)
            ads = np.array([self.ad_index[a] for a in batch.ad_id[live].tolist()], dtype=np.int64)
            yield users, ads, batch.ts[live], batch.cost[live]

    def charged(self) -> npt.NDArray[np.float64]:
        """Each user's revenue, from what the ledger charged for the live events (their costs in the event log);
        returns each arm's spend per campaign and simulated hour."""
        hourly = np.zeros((len(self.stores), self.market.n_campaigns, self.hours))
        for k in range(len(self.stores)):
            for users, ads, ts, cost in self._live_costs(k):
                self.per_user[_ROW["revenue"]] += np.bincount(users, weights=cost, minlength=len(self.user_ids))
                hour = np.minimum(((ts - self.live_start) // 3600).astype(np.int64), self.hours - 1)
                np.add.at(hourly[k], (self.market.ad_campaign[ads], hour), cost)
        return hourly

    def retrain_due(self, t: float) -> None:
        for k, arm in enumerate(self.config.arms):
            if arm.policy == "model" and arm.model_dir is None and t >= self.next_retrain[k]:
                self.flush(t)
                t0 = time.perf_counter()
                store = self.stores[k]
                artifact = train_arm(arm, store)
                click = None
                if arm.click_model is not None:
                    ProfileBuilder().update_window(store, self.profiled_until[k], t)  # the events flushed by t
                    self.profiled_until[k] = t
                    click = _train_click(arm, store) if artifact is not None else None
                if artifact is not None:
                    self.servers[k].swap(artifact, f"{arm.name}-{len(self.retrains[k]) + 1}", click)
                seconds = time.perf_counter() - t0
                self.retrains[k].append(seconds)
                self.retrain_seconds += seconds
                self.periods[k].append([(self.next_retrain[k] - self.live_start) / 3600.0, 0, 0, 0.0, 0])
                self.next_retrain[k] += arm.retrain_hours * 3600.0

    def visit(self, t: float, u: int) -> None:
        """One request of user ``u`` at ``t``: served by the user's arm, answered from the truth, the events queued,
        and the user's visit rate moved by what they were shown."""
        while t >= self.next_flush:
            self.flush(self.next_flush)
            self.next_flush += self.config.feedback_every_s
        self.apply_changes(t)
        self.retrain_due(t)
        cfg, market = self.config, self.market
        j = int(self.arm_of_user[u])
        r = self.arm_requests[j]
        self.arm_requests[j] += 1
        self.requests += 1
        rng = self.arm_rngs[j]
        # The request id seeds the pipeline's own draws (exploration): derived from the seed and the arm's own
        # count, so runs repeat and no arm's draws depend on another's traffic.
        request_id = f"{(cfg.seed * 2_654_435_761 + r * 40_503) & 0xFFFFFFFF:08x}a{j}r{r}"
        served_ads = self.servers[j].recommend(self.user_ids[u], cfg.market.slots, t, cfg.market.placement, request_id)
        day = min(int((t - self.live_start) // 86_400), self.days - 1)
        row, period = self.per_user[:, u], self.periods[j][-1]
        row[_ROW["requests"]] += 1
        self.daily[j, day, 0] += 1
        period[1] += 1
        relevance = 0.0
        if served_ads:
            ads = np.array([self.ad_index[a.ad_id] for a in served_ads], dtype=np.int64)
            seen = np.zeros(len(ads))
            since = t - cfg.fatigue_window_s
            for n, a in enumerate(ads.tolist()):
                times = [x for x in self.exposures.get((u, a), ()) if x > since]
                seen[n] = len(times)
                times.append(t)
                self.exposures[(u, a)] = times
            p_click = market.true_ctr(u, ads, np.arange(1, len(ads) + 1)) * cfg.fatigue**seen
            p_conv = market.true_cvr(u, ads)
            values = market.conversion_value(ads)
            relevance = float(p_click.mean())
            clicked = rng.random(len(ads)) < p_click
            converted = clicked & (rng.random(len(ads)) < p_conv)
            click_delay = 1.0 + rng.exponential(_CLICK_DELAY_S, len(ads))
            conv_delay = rng.lognormal(math.log(_CONVERSION_DELAY_MEDIAN_S), 1.2, len(ads))
            pctr = np.array([a.pctr for a in served_ads])
            new = self.new_ad[ads]
            n_clicks = int(clicked.sum())
            rounded = np.round(values, 2)
            row[1:4] += (len(ads), n_clicks, converted.sum())
            row[_ROW["true_ctr"]] += p_click.sum()
            row[_ROW["value"]] += float(rounded[converted].sum())
            row[_ROW["welfare"]] += float((p_click * p_conv * values).sum())
            row[_ROW["pctr"]] += pctr.sum()
            row[_ROW["new_impressions"]] += new.sum()
            self.daily[j, day, 1:] += (len(ads), n_clicks, p_click.sum(), new.sum(), p_click[new].sum())
            period[2:] = [period[2] + len(ads), period[3] + float(p_click.sum()), period[4] + n_clicks]
            self.hourly_shown[j, min(int((t - self.live_start) // 3600), self.hours - 1)] += (len(ads), p_click.sum())
            self.shown[j, ads] = True
            bins = np.digitize(pctr, _CALIBRATION_EDGES)
            np.add.at(self.calibration[j], bins, np.stack([np.ones(len(ads)), pctr, p_click], axis=1))
            events = self.pending[j]
            for i, served in enumerate(served_ads):
                eid = f"x{cfg.seed}-{j}-{r}-{i}"
                billable = {"CPM": True, "CPC": bool(clicked[i]), "CPA": bool(converted[i])}[served.pricing_model]
                if billable:
                    row[_ROW["billed"]] += served.price
                events.append((t, RawFeedback(f"{eid}-i", EventType.IMPRESSION, served.token, t)))
                if clicked[i]:
                    tc = t + float(click_delay[i])
                    events.append((tc, RawFeedback(f"{eid}-c", EventType.CLICK, served.token, tc)))
                    if converted[i]:
                        tv = tc + float(conv_delay[i])
                        v = float(rounded[i])
                        events.append((tv, RawFeedback(f"{eid}-v", EventType.CONVERSION, served.token, tv, v)))
        if cfg.return_elasticity:
            factor = ((relevance + self.reference) / (2.0 * self.reference)) ** cfg.return_elasticity
            self.rate[u] = min(max(self.rate[u] * factor, 0.2 * self.rate0[u]), 5.0 * self.rate0[u])

    def run(self, advance: Any) -> None:
        """Every simulated hour: its visits (the diurnal share of the day's requests, scaled by how far the visit
        rates of each arm's users moved), from each arm's users drawn by their current rates with the arm's own
        random stream, at uniform times in the hour, served in time order."""
        cfg = self.config
        hours = self.hours
        share = hourly_intensity(self.live_start, hours)
        share[-1] *= cfg.days * 24 - (hours - 1)  # a partial last hour
        expected = cfg.requests_per_day * cfg.days * share / share.sum()
        members = [np.flatnonzero(self.arm_of_user == j) for j in range(len(self.config.arms))]
        carry = np.zeros(len(members))
        for hour in range(hours):
            length = 3600.0 * min(1.0, cfg.days * 24 - hour)
            times, users = [], []
            for j, mine in enumerate(members):
                carry[j] += float(expected[hour]) * float(self.rate[mine].sum())
                n = int(carry[j] + (0.5 if hour == hours - 1 else 1e-9))  # the last hour rounds what is left
                carry[j] -= n
                if n == 0 or len(mine) == 0:
                    continue
                rng = self.arrival_rngs[j]
                cdf = np.cumsum(self.rate[mine])
                picked = np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(cdf) - 1)
                users.append(mine[picked])
                times.append(self.live_start + hour * 3600.0 + rng.random(n) * length)
            if not times:
                continue
            t_all, u_all = np.concatenate(times), np.concatenate(users)
            order = np.argsort(t_all, kind="stable")
            for t, u in zip(t_all[order].tolist(), u_all[order].tolist(), strict=True):
                self.visit(t, u)
            advance(len(order))
        last = max((ts for pending in self.pending for ts, _ in pending), default=self.live_start)
        self.flush(last + 1.0)


def _budget(loop: _Loop, k: int) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """What arm ``k``'s campaigns could spend in the window: each active campaign's daily budget over its
    scheduled days in the window (its share of the window without one), capped by what is left of its total
    budget. Also each campaign's daily budget (NaN without one) and whether it was live in the window."""
    market, budgets, cfg = loop.market, loop.budgets[k], loop.config
    end = loop.live_start + cfg.days * 86_400.0
    ids = market.campaign_ids().tolist()
    overlap = np.clip(
        np.minimum(market.campaign_end, end) - np.maximum(market.campaign_start, loop.live_start), 0, None
    )
    live = np.array([c in budgets.active for c in ids]) & (overlap > 0)
    daily = np.array([budgets.daily.get(c, math.nan) for c in ids])
    cap = np.array([budgets.remaining.get(c, math.inf) for c in ids])
    days = overlap / 86_400.0
    could = np.where(np.isnan(daily), np.inf, np.nan_to_num(daily) * np.ceil(days - 1e-9))
    could = np.minimum(could, cap)
    return float(could[live & np.isfinite(could)].sum()), daily, live


def _pacing_error(hourly: npt.NDArray[np.float64], daily: npt.NDArray[np.float64], hours: int) -> float:
    """Mean over campaign-days that spent (with a daily budget, whole days of the window) of the mean distance,
    hour by hour, between the cumulative spend and the even-pacing line ``budget × hours gone / 24``, in daily
    budgets."""
    errors = []
    line = np.arange(1, 25) / 24.0
    for d in range(hours // 24):
        day = hourly[:, d * 24 : (d + 1) * 24]
        spent = day.sum(axis=1)
        ok = ~np.isnan(daily) & (spent > 0)
        if ok.any():
            cumulative = np.cumsum(day[ok], axis=1) / daily[ok, None]
            errors.append(np.abs(cumulative - line).mean(axis=1))
    return float(np.concatenate(errors).mean()) if errors else math.nan


def _arm_results(loop: _Loop, hourly: npt.NDArray[np.float64]) -> list[ArmResult]:
    config, market = loop.config, loop.market
    arms: list[ArmResult] = []
    for j, arm in enumerate(config.arms):
        mine = loop.arm_of_user == j  # every user of the arm, those who never came included (visits per user)
        sums = loop.per_user[:, mine]
        totals = {name: float(sums[i].sum()) for i, name in enumerate(_TOTALS)}
        totals["spend"] = totals["revenue"]
        totals["unbilled"] = max(totals["billed"] - totals["revenue"], 0.0)
        totals["active_users"] = float((sums[0] > 0).sum())
        budget, daily_budget, live = _budget(loop, j)
        totals["budget"] = budget
        col = {name: sums[i] for i, name in enumerate(_TOTALS)}
        col["users"] = np.ones(int(mine.sum()))
        metrics = {name: ratio_estimate(col[num], col[den]) for name, num, den in METRICS}
        revenue_by_day = hourly[j].sum(axis=0)
        per_day = []
        for d, values in enumerate(loop.daily[j].tolist()):
            row = dict(zip(_DAILY, values, strict=True))
            row["ctr"] = row["clicks"] / row["impressions"] if row["impressions"] else math.nan
            row["new_ad_ctr"] = row.pop("new_true_ctr") / row["new_impressions"] if row["new_impressions"] else math.nan
            row["revenue"] = float(revenue_by_day[d * 24 : (d + 1) * 24].sum())
            per_day.append(row)
        ads_live = live[market.ad_campaign]
        cal = loop.calibration[j]
        filled = cal[:, 0] > 0
        n = cal[:, 0].sum()
        ece = float((np.abs(cal[filled, 1] - cal[filled, 2])).sum() / n) if n else math.nan
        summary = {
            "coverage": float((loop.shown[j] & ads_live).sum() / max(ads_live.sum(), 1)),
            "ece": ece,
            "budget_utilisation": totals["revenue"] / budget if budget > 0 else math.nan,
            "pacing_error": _pacing_error(hourly[j], daily_budget, loop.hours),
        }
        calibration = [
            {"impressions": float(c[0]), "pctr": float(c[1] / c[0]), "true_ctr": float(c[2] / c[0])}
            for c in cal[filled].tolist()
        ]
        curve = _learning_curve(loop, j)
        arms.append(
            ArmResult(
                arm.name, int(mine.sum()), totals, metrics, per_day, summary, calibration, curve, loop.retrains[j]
            )
        )
    return arms


def _learning_curve(loop: _Loop, j: int) -> list[dict[str, float]]:
    """Arm ``j``'s model versions: from when each served (hours into the live window), its requests, impressions,
    CTR and true CTR of the ads shown, ``share_of_oracle``: that true CTR over the oracle arm's in the same hours,
    and ``gain_share``: the share of the oracle's gain over the random arm it captured in those hours. Budgets run
    out and users tire as the run goes on, so every arm's true CTR falls, the oracle's included, and the best ads'
    budgets go first, so the oracle's lead over random shrinks too; the shares tell whether retraining on the live
    data made the arm better (NaN without an oracle arm, or a random one for the gain)."""
    arms = loop.config.arms
    oracle = next((k for k, a in enumerate(arms) if a.policy == "oracle"), None)
    random = next((k for k, a in enumerate(arms) if a.policy == "random"), None)
    periods = loop.periods[j]
    ends = [p[0] for p in periods[1:]] + [float(loop.hours)]
    curve = []
    for p, end in zip(periods, ends, strict=True):
        point = {
            "from_hour": p[0],
            "requests": p[1],
            "impressions": p[2],
            "true_ctr_of_shown": p[3] / p[2] if p[2] else math.nan,
            "ctr": p[4] / p[2] if p[2] else math.nan,
            "share_of_oracle": math.nan,
            "gain_share": math.nan,
        }
        hours = slice(math.floor(p[0]), math.ceil(end))
        best, floor = (
            loop.hourly_shown[k, hours].sum(axis=0) if k is not None else np.zeros(2) for k in (oracle, random)
        )
        if p[2] and best[0]:
            point["share_of_oracle"] = point["true_ctr_of_shown"] / (best[1] / best[0])
            if floor[0] and best[1] / best[0] != floor[1] / floor[0]:
                low = floor[1] / floor[0]
                point["gain_share"] = (point["true_ctr_of_shown"] - low) / (best[1] / best[0] - low)
        curve.append(point)
    return curve


def _regret(config: ExperimentConfig, arms: list[ArmResult]) -> list[Comparison]:
    """Against the first ``oracle`` arm: expected clicks per request, per day and in total (cumulative regret:
    expected clicks lost over each arm's own requests)."""
    oracle = next((r for a, r in zip(config.arms, arms, strict=True) if a.policy == "oracle"), None)
    if oracle is None:
        for arm in arms:
            arm.totals["regret"] = math.nan
        return []
    best = [d["true_ctr"] / d["requests"] if d["requests"] else math.nan for d in oracle.daily]
    out = []
    for arm in arms:
        cumulative = 0.0
        for d, b in zip(arm.daily, best, strict=True):
            if d["requests"] and not math.isnan(b):
                cumulative += b * d["requests"] - d["true_ctr"]
            d["cumulative_regret"] = cumulative
        per_request = (
            oracle.metrics["expected_clicks_per_request"].mean - arm.metrics["expected_clicks_per_request"].mean
        )
        arm.totals["regret"] = per_request * arm.totals["requests"]
        if arm is not oracle:
            m = "expected_clicks_per_request"
            out.append(compare_ratios(arm.name, oracle.name, m, arm.metrics[m], oracle.metrics[m]))
    return out


def run_experiment(
    config: ExperimentConfig,
    stores: Mapping[str, Store] | None = None,
    *,
    progress: bool = True,
) -> ExperimentReport:
    """Run the live loop of ``config`` and compare the arms; see the module docs for what happens.

    ``stores`` maps each arm's name to a new, empty store the arm's market is written into (kept afterwards for
    inspection); arms left out get an in-memory one, gone afterwards."""
    started = time.perf_counter()
    unknown = set(stores or {}) - {a.name for a in config.arms}
    if unknown:
        raise ConfigError(f"stores given for arms that are not in the experiment: {', '.join(sorted(unknown))}")
    market = Market.generate(config.market)
    launched = np.zeros(market.n_campaigns, dtype=bool)
    if config.launch is not None:
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(10,)))
        market, launched = with_launches(market, config.launch, config.live_start, rng)
    timings: dict[str, float] = {}
    with ExitStack() as stack, Bars(progress) as bars:
        scratch: Path | None = None  # the files of HTTP arms' stores nobody asked to keep
        arm_stores = []
        for arm in config.arms:
            store = (stores or {}).get(arm.name)
            if store is None:
                url = "sqlite://"
                if config.http and arm.policy in ("model", "no-model"):  # a server process must open it
                    scratch = scratch or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="adrec-exp-")))
                    url = f"sqlite:///{scratch / arm.name}.db"
                store = stack.enter_context(open_store(url))
            arm_stores.append(store)
        budgets = []
        with bars.step("market and warm-up history, in each arm's store"):
            simulate(config.market, arm_stores, progress=False, market=market)  # generated once, written to each
            for store, share in zip(arm_stores, config.traffic_shares(), strict=True):
                budgets.append(split_budgets(store, share, config.live_start))
        timings["market"] = time.perf_counter() - started
        loop = _Loop(config, arm_stores, market, launched, budgets, bars)
        for server in loop.servers:
            stack.callback(server.close)  # servers stop before their stores close
        t0 = time.perf_counter()
        loop.run(bars.task("requests", round(config.requests_per_day * config.days)))
        timings["serving"] = time.perf_counter() - t0
        timings["retraining"] = loop.retrain_seconds
        t0 = time.perf_counter()
        hourly = loop.charged()
        arms = _arm_results(loop, hourly)
        timings["accounting"] = time.perf_counter() - t0
    base = next(a for a in arms if a.name == (config.baseline or config.arms[0].name))
    comparisons = [
        compare_ratios(a.name, base.name, name, a.metrics[name], base.metrics[name])
        for a in arms
        if a is not base
        for name, _, _ in METRICS
    ]
    regret = _regret(config, arms)
    seconds = time.perf_counter() - started
    first: dict[str, ArmResult] = {}  # the first arm of each policy
    for arm, result in zip(config.arms, arms, strict=True):
        first.setdefault(arm.policy, result)
    captured: dict[str, float] = {}
    if "random" in first and "oracle" in first:
        low, high = first["random"].metrics["ctr"].mean, first["oracle"].metrics["ctr"].mean
        if high > low:
            captured = {a.name: (a.metrics["ctr"].mean - low) / (high - low) for a in arms}
    rps = loop.requests / seconds if seconds else 0.0
    return ExperimentReport(config, arms, comparisons, seconds, rps, captured, regret, timings)
