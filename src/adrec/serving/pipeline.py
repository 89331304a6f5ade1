"""The ad decision pipeline: eligibility → candidates → pCTR and eCPM → re-ranking → GSP auction → tokens.

One implementation serves the HTTP API, the CLI and offline replay. It reads the ad library and budgets from the
store, holds one :class:`ServingModel` (a trained model artifact with its vector index and calibration) behind an
atomic reference, and can swap in a new model or a new catalogue snapshot while requests are in flight: a request
reads the references once at its start and finishes on what it read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.config import Settings
from adrec.data.profile import Behaviour
from adrec.data.schema import Device, EventType, User, utc_day
from adrec.data.targeting import targeting_interests
from adrec.exceptions import ConfigError, NotFoundError
from adrec.feedback.tokens import TokenSigner
from adrec.models.artifact import Artifact
from adrec.models.ctr import REFERENCE_POSITION, AdBlock, ClickModel, Examples, FeatureSpec, load_click_model
from adrec.retrieval.index import ExactIndex, VectorIndex, build_index
from adrec.serving.auction import ecpm as compute_ecpm
from adrec.serving.auction import gsp_prices
from adrec.serving.calibration import Calibrator, fit_calibrator
from adrec.serving.catalog import CatalogSnapshot, Eligibility, RequestContext
from adrec.serving.explore import Exploration, fill_slots, slot_runs
from adrec.serving.outstanding import Outstanding
from adrec.store.base import Delivery, Store, demographic_segment

log = logging.getLogger(__name__)

__all__ = [
    "Calibrator",
    "Pipeline",
    "PipelineConfig",
    "Response",
    "ServedAd",
    "ServingModel",
    "SlotDistribution",
    "find_model_dir",
]


# -- the model being served -------------------------------------------------------------------------------------
def find_model_dir(path: str | Path) -> Path:
    """The model folder to serve from ``path``: ``path`` itself if it is one (has ``ids.json``), else the folder
    named in ``path/CURRENT``, else the most recently written model folder inside ``path`` (hidden folders, saves
    in progress, are never chosen)."""
    root = Path(path)
    if (root / "ids.json").is_file():
        return root
    if not root.is_dir():
        raise NotFoundError(f"model folder {root} does not exist; train one with `adrec train --out {root}/NAME`")
    current = root / "CURRENT"
    if current.is_file():
        chosen = root / current.read_text().strip()
        if not (chosen / "ids.json").is_file():
            raise NotFoundError(f"{current} names {chosen.name!r}, which is not a model folder")
        return chosen
    # Hidden folders are saves in progress (or left by one that died): Artifact.save renames them when complete.
    folders = [p for p in root.iterdir() if not p.name.startswith(".") and (p / "ids.json").is_file()]
    if not folders:
        raise NotFoundError(f"no model folder (with ids.json) in {root}; train one with `adrec train`")
    return max(folders, key=lambda p: (p / "ids.json").stat().st_mtime)


CLICK_MODEL_DIR = "ctr"
"""A model folder's sub-folder for a click model (``adrec train --task ctr --out MODEL_FOLDER/ctr``)."""
CONVERSION_MODEL_DIR = "cvr"
"""A model folder's sub-folder for a conversion model (``adrec train --task cvr --out MODEL_FOLDER/cvr``)."""


@dataclass
class ServingModel:
    """A trained model ready to serve: artifact, vector index over its item embeddings, calibration, popularity,
    and optionally a click model that ranks the candidates the artifact retrieves and a conversion model for CPA."""

    artifact: Artifact
    version: str
    calibrator: Calibrator
    index: VectorIndex | None
    popularity: npt.NDArray[np.float64]
    click: ClickModel | None = None
    """When set, pCTR of every candidate comes from it (at :data:`REFERENCE_POSITION`) instead of the calibrated
    retrieval score."""
    conversion: ClickModel | None = None
    """When set, pCVR of every candidate comes from it instead of its campaign's logged conversion rate."""

    @classmethod
    def load(
        cls,
        path: str | Path,
        store: Store | None = None,
        *,
        index_kind: str = "auto",
        index_params: dict[str, Any] | None = None,
        max_impressions: int = 200_000,
    ) -> ServingModel:
        folder = find_model_dir(path)
        artifact = Artifact.load(folder)
        click, conversion = (
            load_click_model(folder / sub) if (folder / sub).is_dir() else None
            for sub in (CLICK_MODEL_DIR, CONVERSION_MODEL_DIR)
        )
        return cls.from_artifact(
            artifact,
            store,
            version=folder.name,
            index_kind=index_kind,
            index_params=index_params,
            max_impressions=max_impressions,
            index_cache=folder,
            click=click,
            conversion=conversion,
        )

    @classmethod
    def from_artifact(
        cls,
        artifact: Artifact,
        store: Store | None = None,
        *,
        version: str = "in-memory",
        index_kind: str = "auto",
        index_params: dict[str, Any] | None = None,
        max_impressions: int = 200_000,
        index_cache: Path | None = None,
        click: ClickModel | None = None,
        conversion: ClickModel | None = None,
    ) -> ServingModel:
        """Build the vector index (``index_kind``: auto, exact, ivf, hnsw; see :func:`build_index`; kept in and
        read back from ``index_cache`` if given) and calibrate pCTR on the store's logged impressions (``click``:
        a click model ranks the candidates instead; ``conversion``: a conversion model gives their pCVR)."""
        for m in (click, conversion):
            if m is not None:
                _feature_spec(m)  # refuse a model of an outside log's features before anything is built
        items = artifact.model.item_embeddings
        index = None
        if items is not None:
            index = build_index(items, index_kind, cache_dir=index_cache, **(index_params or {}))
        popularity = np.asarray(artifact.seen.sum(axis=0)).ravel().astype(np.float64)
        if artifact.calibration is not None:  # fitted on impressions its training never saw (see held_out_calibration)
            calibrator = Calibrator(**artifact.calibration)
        elif store is not None:
            calibrator = fit_calibrator(artifact, store, max_impressions)
        else:
            calibrator = Calibrator()
        return cls(artifact, version, calibrator, index, popularity, click, conversion)


def _feature_spec(model: ClickModel) -> FeatureSpec:
    """The spec of a click model serving may use: adrec's (users, ads, requests); a clear error for one trained on
    an outside log's columns (``criteo:``, ``avazu:``), which cannot describe adrec's ads."""
    if not isinstance(model.spec_, FeatureSpec):
        raise ConfigError(
            f"the {model.name} click model was trained on an outside CTR log's columns ({model.spec_!r}): it cannot "
            "rank adrec's ads; train one on adrec's features (`adrec train --task ctr -d store:URL` or `sim:`)"
        )
    return model.spec_


# -- responses --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedAd:
    """One ad of a response, with everything that decided it."""

    rank: int
    ad_id: str
    campaign_id: str
    advertiser_id: str
    title: str
    body: str
    image_url: str | None
    landing_url: str | None
    category: str | None
    brand: str | None
    product_price: float | None
    pricing_model: str
    bid: float
    price: float
    """Charge per billable event (click for CPC, impression for CPM, conversion for CPA); never above the bid."""
    pctr: float
    pcvr: float
    """Estimated chance that a click on the ad converts: the conversion model's for this user and request when the
    served model has one, else its campaign's logged rate (enters eCPM and price for CPA)."""
    ecpm: float
    score: float | None
    source: str
    """``model`` (nearest neighbours or exact model scores), ``segment`` (most clicked by the user's demographic
    segment), ``popular`` (most clicked overall) or ``explore`` (a fresh ad)."""
    rules: list[str]
    token: str

    def as_dict(self, *, confidential: bool = True) -> dict[str, Any]:
        """The ad as the API answers it. ``confidential=False`` leaves out what would tell a publisher the
        advertiser's bid (the bid, and the eCPM from which bid = eCPM / pCTR follows); the price charged stays."""
        out = self._as_dict()
        if not confidential:
            del out["bid"], out["explanation"]["ecpm"]
        return out

    def _as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "ad_id": self.ad_id,
            "campaign_id": self.campaign_id,
            "advertiser_id": self.advertiser_id,
            "creative": {
                "title": self.title,
                "body": self.body,
                "image_url": self.image_url,
                "landing_url": self.landing_url,
                "category": self.category,
                "brand": self.brand,
                "product_price": self.product_price,
            },
            "pricing_model": self.pricing_model,
            "bid": self.bid,
            "price": self.price,
            "explanation": {
                "source": self.source,
                "similarity": self.score,
                "pctr": self.pctr,
                "pcvr": self.pcvr,
                "ecpm": self.ecpm,
                "price": self.price,
                "rules": self.rules,
            },
            "token": self.token,
        }


@dataclass(frozen=True)
class Response:
    request_id: str
    user_id: str
    model_version: str | None
    ads: list[ServedAd]
    eligible: int
    """How many ads passed eligibility."""
    cold_start: bool
    """True when the user had no behavioural candidates (unknown to the model, or no consent)."""
    timings_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self, *, confidential: bool = True) -> dict[str, Any]:
        """See :meth:`ServedAd.as_dict` for ``confidential``."""
        return {
            "request_id": self.request_id,
            "user_id": self.user_id,
            "model_version": self.model_version,
            "cold_start": self.cold_start,
            "eligible_ads": self.eligible,
            "ads": [a.as_dict(confidential=confidential) for a in self.ads],
        }


# -- the pipeline -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PipelineConfig:
    """Knobs of the decision pipeline, with their defaults.

    n_candidates: how many nearest neighbours (or top model scores) enter ranking.
    max_fresh_candidates: how many fresh ads (see ``explore_share``) at most enter a request's ranking (0: every
        eligible one). With a click model each candidate costs a pass through it, and a large catalogue can hold
        thousands of fresh ads; capped, the eligible ones enter in a fixed order, by the eCPM their pCTR gives for
        a request nothing is known about (the click model's for an unknown user at the epoch's hour and no
        placement; the base rate without one), and the fresh-ad share draws among those.
    explore_share: share of slots kept for fresh ads (ads the model learned nothing about), when any are eligible
        (exploration ``none`` only: the other strategies explore every candidate, fresh ads included).
    exploration, epsilon, temperature, prior_precision, max_explore, propensity_draws: how the slots are filled
        and how each served ad's propensity is computed (see :mod:`adrec.serving.explore`).
    campaign_explore_share: the most of a campaign's impressions today (served by this process) that may be
        exploratory, once it has :data:`EXPLORE_FREE` of them (1 = no cap); a campaign at its cap is shown only
        where it is the exploiting choice.
    max_per_advertiser: most ads of one advertiser in one response.
    category_decay: eCPM multiplier per ad of the same category already placed (1 = no diversity pressure).
    reserve_ecpm: floor price in eCPM; ads below it are not shown.
    pcvr: prior conversion probability per click, for CPA eCPM. Each campaign's pCVR is estimated from the event
        log's clicks and conversions on its ads, shrunk towards the log's overall rate (itself shrunk towards this
        prior) with the weight of ``pcvr_prior_clicks`` clicks.
    spend_refresh_s: how often budgets are re-read from the store (feedback through this process refreshes at once).
    outstanding_window_s: how long the expected cost of a token this process handed out counts against its
        campaign's budget before its events reach the ledger (see :class:`~adrec.serving.outstanding.Outstanding`;
        0 turns it off).
    repeat_decay: pCTR multiplier per earlier impression of the same ad to the same user within
        ``repeat_window_s`` (users tire of seeing an ad again; 1 turns it off). It enters pCTR itself, so eCPM,
        prices and the served pCTR all see it; recorded impressions and the ones this process just served count.
    repeat_window_s: how far back those impressions count, in seconds.
    """

    n_candidates: int = 200
    max_fresh_candidates: int = 0
    explore_share: float = 0.1
    exploration: str = "none"
    epsilon: float = 0.1
    temperature: float = 0.25
    prior_precision: float = 1.0
    max_explore: int = 2
    propensity_draws: int = 200
    campaign_explore_share: float = 1.0
    max_per_advertiser: int = 2
    category_decay: float = 0.7
    reserve_ecpm: float = 0.0
    pcvr: float = 0.05
    pcvr_prior_clicks: float = 50.0
    spend_refresh_s: float = 1.0
    outstanding_window_s: float = 600.0
    repeat_decay: float = 1.0
    repeat_window_s: float = 86_400.0

    @property
    def explore(self) -> Exploration:
        """The exploration settings (:class:`~adrec.serving.explore.Exploration`)."""
        return Exploration(
            self.exploration,
            self.epsilon,
            self.temperature,
            self.prior_precision,
            self.max_explore,
            self.propensity_draws,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        """The pipeline knobs of :class:`~adrec.config.Settings` (same names)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})

    def __post_init__(self) -> None:
        if not 0.0 < self.category_decay <= 1.0:
            raise ConfigError(f"category_decay must be in (0, 1] (got {self.category_decay})")
        if not 0.0 < self.repeat_decay <= 1.0 or self.repeat_window_s < 0:
            raise ConfigError(
                f"repeat_decay must be in (0, 1] and repeat_window_s >= 0 (got {self.repeat_decay}, "
                f"{self.repeat_window_s})"
            )
        if not 0.0 <= self.explore_share <= 1.0:
            raise ConfigError(f"explore_share must be in [0, 1] (got {self.explore_share})")
        if self.max_fresh_candidates < 0:
            raise ConfigError(f"max_fresh_candidates must be >= 0 (got {self.max_fresh_candidates})")
        if not 0.0 <= self.campaign_explore_share <= 1.0:
            raise ConfigError(f"campaign_explore_share must be in [0, 1] (got {self.campaign_explore_share})")
        self.explore  # noqa: B018  (validates the exploration settings)
        if not 0.0 < self.pcvr <= 1.0 or self.pcvr_prior_clicks <= 0:
            raise ConfigError(
                f"pcvr must be in (0, 1] and pcvr_prior_clicks > 0 (got {self.pcvr}, {self.pcvr_prior_clicks})"
            )


SOURCES = ("model", "segment", "popular", "explore")
"""Where a candidate came from (:attr:`ServedAd.source`); candidates carry the index."""
MODEL, SEGMENT, POPULAR, EXPLORE = range(len(SOURCES))


@dataclass(frozen=True)
class _Timed:
    """The campaigns open regardless of the user, as of ``at`` (see :meth:`Pipeline._timed`)."""

    at: float
    day: str
    catalog: CatalogSnapshot
    timed: npt.NDArray[np.bool_]


@dataclass
class _Stored:
    """Each campaign's ``(today, total)`` spend as the store had it at ``at`` (see :meth:`Pipeline._timed`)."""

    at: float
    day: str
    catalog: CatalogSnapshot
    spent: npt.NDArray[np.float64]


@dataclass
class _Binding:
    """A catalogue snapshot bound to a model: which model item each ad is, and back."""

    catalog: CatalogSnapshot
    model: ServingModel | None
    item_of_ad: npt.NDArray[np.int64]
    ad_of_item: npt.NDArray[np.int64]
    popular_order: npt.NDArray[np.int64]
    """Warm ads (known to the model), most popular first: the cold-start fallback walks it."""
    segment_order: dict[str, npt.NDArray[np.int64]]
    """Per demographic segment, the catalogue's ads its users clicked most, first: walked before ``popular_order``."""
    fresh_mask: npt.NDArray[np.bool_]
    """Per catalogue ad, whether the model learned nothing about it (an exploration candidate, never a model
    candidate): not in its item index, or in it without one interaction in its training data (a new ad the store
    already listed when the model was trained: its embedding or score is untrained)."""
    campaign_pcvr: npt.NDArray[np.float64]
    """Per campaign, the estimated conversion probability per click (see :class:`PipelineConfig`)."""
    ad_blocks: dict[int, AdBlock] = field(default_factory=dict)
    """The catalogue's ads encoded for the model's click and conversion models, by their feature spec's
    ``hash_bits`` (empty without either)."""
    ad_impressions: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    """Per catalogue ad, its logged impressions (Thompson sampling's evidence; zeros unless it explores so)."""
    fresh_ads: npt.NDArray[np.int64] = field(init=False)
    """Catalogue indices of the fresh ads."""
    fresh_order: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """The fresh ads, most promising first (see :attr:`PipelineConfig.max_fresh_candidates`; empty when there is
    no cap)."""

    def __post_init__(self) -> None:
        self.fresh_ads = np.flatnonzero(self.fresh_mask)

    @classmethod
    def make(
        cls,
        catalog: CatalogSnapshot,
        model: ServingModel | None,
        logged: _Logged,
        config: PipelineConfig,
    ) -> _Binding:
        n_items = len(model.artifact.items) if model is not None else 0
        if model is not None and catalog.n_ads:
            item_of_ad = model.artifact.items.transform(catalog.ad_ids.tolist(), missing=-1)
        else:
            item_of_ad = np.full(catalog.n_ads, -1, dtype=np.int64)
        ad_of_item = np.full(n_items, -1, dtype=np.int64)
        known = item_of_ad >= 0
        ad_of_item[item_of_ad[known]] = np.flatnonzero(known)
        popularity = np.zeros(catalog.n_ads, dtype=np.float64)
        if model is not None:
            popularity[known] = model.popularity[item_of_ad[known]]
        warm = np.flatnonzero(known & (popularity > 0))
        order = warm[np.argsort(-popularity[warm], kind="stable")]
        segment_order = {
            seg: np.array([catalog.ad_index[a] for a, _ in ads if a in catalog.ad_index], dtype=np.int64)
            for seg, ads in logged.segments.items()
        }
        binding = cls(
            catalog,
            model,
            item_of_ad,
            ad_of_item,
            order,
            segment_order,
            ~known | (popularity <= 0),
            _campaign_pcvr(catalog, logged.conversions, config.pcvr, config.pcvr_prior_clicks),
            _encode_ads(catalog, model),
            np.array([logged.impressions.get(a, 0) for a in catalog.ad_ids.tolist()], dtype=np.float64),
        )
        if config.max_fresh_candidates and len(binding.fresh_ads):
            binding.fresh_order = binding.rank_fresh()
        return binding

    def rank_fresh(self) -> npt.NDArray[np.int64]:
        """The fresh ads by the eCPM their pCTR gives for a request nothing is known about, best first (ties in
        catalogue order)."""
        cat, fresh, model = self.catalog, self.fresh_ads, self.model
        if model is not None and model.click is not None:
            anonymous = RequestContext(0.0)
            blocks = self.ad_blocks[model.click.spec_.hash_bits]
            features = click_features(model.click, blocks, fresh, None, "", None, anonymous)
            pctr = model.click.predict(features, position=REFERENCE_POSITION)
        else:
            pctr = np.full(len(fresh), model.calibrator.base_rate if model is not None else Calibrator().base_rate)
        camp = np.maximum(cat.ad_campaign[fresh], 0)
        values = compute_ecpm(cat.c_pricing[camp], cat.c_bid[camp], pctr, self.campaign_pcvr[camp])
        values = np.where(cat.ad_campaign[fresh] >= 0, values, -np.inf)  # an ad without a campaign: last
        return fresh[np.argsort(-values, kind="stable")]


@dataclass(frozen=True)
class _Logged:
    """What the pipeline learns from the event log (re-read with model reloads, not per request)."""

    segments: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    """Per demographic segment, its most clicked ads (:meth:`Store.segment_click_counts`)."""
    conversions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per ad id, (clicks, conversions) in the log."""
    impressions: dict[str, int] = field(default_factory=dict)
    """Per ad id, its logged impressions (read only for Thompson sampling, whose posteriors narrow with them)."""

    @classmethod
    def read(cls, store: Store, *, impressions: bool = False) -> _Logged:
        clicks: Counter[str] = Counter()
        conversions: Counter[str] = Counter()
        shown: Counter[str] = Counter()
        types = [EventType.CLICK, EventType.CONVERSION, *([EventType.IMPRESSION] if impressions else [])]
        for batch in store.iter_events(types=types, batch_size=100_000):
            is_click = batch.type == int(EventType.CLICK)
            is_impression = batch.type == int(EventType.IMPRESSION)
            clicks.update(batch.ad_id[is_click].tolist())
            conversions.update(batch.ad_id[~is_click & ~is_impression].tolist())
            shown.update(batch.ad_id[is_impression].tolist())
        counts = {a: (clicks[a], conversions[a]) for a in clicks.keys() | conversions.keys()}
        return cls(store.segment_click_counts(), counts, dict(shown))


def _encode_ads(catalog: CatalogSnapshot, model: ServingModel | None) -> dict[int, AdBlock]:
    """The catalogue's ads as the features of the model's click and conversion models (once per catalogue and
    model, not per request)."""
    out: dict[int, AdBlock] = {}
    campaigns = {c.campaign_id: c for c in catalog.campaigns}
    for m in (model.click, model.conversion) if model is not None else ():
        if m is not None and m.spec_.hash_bits not in out:
            out[m.spec_.hash_bits] = _feature_spec(m).ads(catalog.ads, campaigns)
    return out


def _campaign_pcvr(
    catalog: CatalogSnapshot, counts: dict[str, tuple[int, int]], prior: float, weight: float
) -> npt.NDArray[np.float64]:
    """Per campaign, ``(conversions + weight * base) / (clicks + weight)`` over its ads' logged events, where
    ``base`` is the whole log's rate shrunk the same way towards ``prior`` (a Beta-binomial posterior mean)."""
    clicks = np.zeros(catalog.n_campaigns)
    conversions = np.zeros(catalog.n_campaigns)
    for ad_id, (c, v) in counts.items():
        i = catalog.ad_index.get(ad_id)
        if i is not None and catalog.ad_campaign[i] >= 0:
            clicks[catalog.ad_campaign[i]] += c
            conversions[catalog.ad_campaign[i]] += v
    base = (conversions.sum() + weight * prior) / (clicks.sum() + weight)
    # A conversion is counted with its click; more conversions than clicks (e.g. clicks not logged) cap at 1.
    rate: npt.NDArray[np.float64] = np.minimum((conversions + weight * base) / (clicks + weight), 1.0)
    return rate


@dataclass(frozen=True)
class _Request:
    """A request's user, history, eligible ads and candidates (:meth:`Pipeline._prepare`)."""

    user_id: str
    user: User | None
    interests: list[str]
    behaviour: Behaviour | None
    repeats: dict[str, int]
    n_eligible: int
    cold: bool
    cand: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    source: npt.NDArray[np.int8]
    marks: tuple[float, float, float]
    """``perf_counter`` at the start, after the lookups and after eligibility."""

    def timings(self, start: float, end: float) -> dict[str, float]:
        """Milliseconds of each step, from ``start`` (the request's) to ``end`` (candidates found)."""
        _, t1, t2 = self.marks
        return {"lookup": (t1 - start) * 1e3, "eligibility": (t2 - t1) * 1e3, "candidates": (end - t2) * 1e3}


@dataclass(frozen=True)
class _Scored:
    """The candidates that passed the reserve, with what the auction needs of each (positions into ``cand``)."""

    cand: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    source: npt.NDArray[np.int8]
    camp: npt.NDArray[np.int64]
    pctr: npt.NDArray[np.float64]
    pcvr: npt.NDArray[np.float64]
    pricing: npt.NDArray[Any]
    bid: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def take(self, rows: npt.NDArray[np.intp]) -> _Scored:
        return _Scored(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class SlotDistribution:
    """A policy's distribution over the ads of one request's slots (:meth:`Pipeline.slot_distribution`): the ads it
    scored (those it may show, and those it never would: probability 0), the probability of each in each slot,
    and what it would charge there."""

    ad_ids: list[str]
    probability: npt.NDArray[np.float64]
    """``(ads, k)``: the chance the ad is in the slot (a slot's column sums to at most 1: it may stay empty)."""
    price: npt.NDArray[np.float64]
    """``(ads, k)``: the mean charge per billable event when the ad is in the slot (NaN where it never is)."""
    pctr: npt.NDArray[np.float64]
    pcvr: npt.NDArray[np.float64]
    pricing: list[str]
    runs: int
    """Selections drawn (1: the policy is deterministic for this request)."""

    @classmethod
    def empty(cls, k: int) -> SlotDistribution:
        return cls([], np.zeros((0, k)), np.zeros((0, k)), np.zeros(0), np.zeros(0), [], 1)


EXPLORE_FREE = 20
"""Exploratory impressions a campaign may get each day before :attr:`PipelineConfig.campaign_explore_share`
applies (a new campaign, with no impressions yet, could otherwise never be explored)."""


class _ExploreCounts:
    """Per campaign, today's impressions served by this process and how many of them were exploratory."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._lock = threading.Lock()
        self._day = ""
        self._counts: dict[str, list[int]] = {}

    def explorable(self, campaign_ids: list[str], now: float) -> npt.NDArray[np.bool_] | None:
        """Whether exploration may still pick each campaign's ads (None: no cap)."""
        if self.share >= 1.0:
            return None
        counts = self._counts if utc_day(now) == self._day else {}
        out = []
        for c in campaign_ids:
            explored, total = counts.get(c, (0, 0))
            out.append(explored < max(self.share * total, EXPLORE_FREE))
        return np.array(out, dtype=bool)

    def add(self, campaign_ids: list[str], explored: list[bool], now: float) -> None:
        if self.share >= 1.0:
            return
        day = utc_day(now)
        with self._lock:
            if day != self._day:
                self._day, self._counts = day, {}
            for c, e in zip(campaign_ids, explored, strict=True):
                row = self._counts.setdefault(c, [0, 0])
                row[0] += int(e)
                row[1] += 1


class Pipeline:
    """Decides which ads a user sees and at what price.

    Parameters
    ----------
    store
        Where the ad library, users, profiles, budgets and frequency history live.
    model
        The model to serve (``None``: popularity-free fallback, every user is cold).
    signer
        Signs impression tokens.
    config
        See :class:`PipelineConfig`.
    """

    def __init__(
        self,
        store: Store,
        model: ServingModel | None,
        signer: TokenSigner,
        config: PipelineConfig | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.config = config or PipelineConfig()
        self._lock = threading.Lock()
        self._explore = self.config.explore
        self._explored = _ExploreCounts(self.config.campaign_explore_share)
        self._logged = _Logged.read(store, impressions=self._explore.strategy == "thompson")
        self._binding = _Binding.make(self._load_catalog(), model, self._logged, self.config)
        self._spend: _Timed | None = None
        self._stored: _Stored | None = None
        self.outstanding = Outstanding(self.config.outstanding_window_s)
        self._repeat_window = self.config.repeat_window_s if self.config.repeat_decay < 1.0 else 0.0
        """How far back a user's impressions lower pCTR (0: repeat decay off)."""

    # -- swapping ---------------------------------------------------------------------------------------------
    @property
    def model(self) -> ServingModel | None:
        return self._binding.model

    @property
    def catalog(self) -> CatalogSnapshot:
        return self._binding.catalog

    def swap_model(self, model: ServingModel, *, relearn: bool = False) -> None:
        """Serve ``model`` from the next request on (requests in flight finish on the old one).

        ``relearn`` also re-reads what the event log teaches (the segments' most-clicked ads, the
        campaigns' conversion rates: a scan of the clicks, done with model reloads, not with every catalogue
        change).
        """
        if relearn:
            self._logged = _Logged.read(self.store, impressions=self._explore.strategy == "thompson")
        with self._lock:
            self._binding = _Binding.make(self._binding.catalog, model, self._logged, self.config)

    def refresh_catalog(self) -> None:
        """Re-read campaigns and ads from the store (after the library changed)."""
        catalog = self._load_catalog()
        with self._lock:
            self._binding = _Binding.make(catalog, self._binding.model, self._logged, self.config)
            self._spend = self._stored = None

    def refresh_spend(self) -> None:
        """Forget cached budgets: the next request re-reads spend from the store."""
        self._spend = self._stored = None

    def _load_catalog(self) -> CatalogSnapshot:
        """The ad library as stored; rows that are no longer valid records are quarantined (left out, logged and
        listed in :attr:`CatalogSnapshot.quarantined`) instead of failing the load, so one bad row can neither
        freeze the catalogue nor stop a server from starting."""
        bad: list[tuple[str, str, str]] = []

        def quarantine(kind: str) -> Callable[[str, Exception], None]:
            def report(record_id: str, err: Exception) -> None:
                bad.append((kind, record_id, str(err)))
                log.warning("catalogue: %s %r quarantined (not served): %s", kind, record_id, err)

            return report

        campaigns = [c for batch in self.store.iter_campaigns(on_error=quarantine("campaign")) for c in batch]
        ads = [a for batch in self.store.iter_ads(on_error=quarantine("ad")) for a in batch]
        return CatalogSnapshot.build(campaigns, ads, bad)

    def _timed(self, binding: _Binding, now: float) -> npt.NDArray[np.bool_]:
        """The campaigns open at ``now`` regardless of the user (:meth:`CatalogSnapshot.timed_campaigns`).

        Spend is re-read from the store when ``spend_refresh_s`` passed, the day or the catalogue changed, or
        feedback through this process called :meth:`refresh_spend`; the mask (schedules, pacing, hour rules, the
        outstanding tokens' expected cost) is re-evaluated at most ``min(1 s, spend_refresh_s)`` apart. A
        single-threaded process that is the only writer of feedback and refreshes after each write (the experiment
        loop) can thus set ``spend_refresh_s`` long; a server with other writers (other workers) cannot.
        """
        cached = self._spend
        day = utc_day(now)
        catalog = binding.catalog
        if (
            cached is not None
            and cached.catalog is catalog
            and cached.day == day
            and 0.0 <= now - cached.at < min(1.0, self.config.spend_refresh_s)
        ):
            return cached.timed
        stored = self._stored
        if (
            stored is None
            or stored.catalog is not catalog
            or stored.day != day
            or not 0.0 <= now - stored.at < self.config.spend_refresh_s
        ):
            stored = self._stored = _Stored(now, day, catalog, catalog.spend_array(self.store.campaign_spend(day)))
        spent = stored.spent
        pending = self.outstanding.expected_cost(now)
        if pending:  # tokens handed out whose billable events may still come spend the budget too
            spent = spent + catalog.spend_array({c: (cost, cost) for c, cost in pending.items()})
        timed = catalog.timed_campaigns(now, spent)
        self._spend = _Timed(now, day, catalog, timed)
        return timed

    # -- the decision -----------------------------------------------------------------------------------------
    def _user(self, user_id: str) -> tuple[User | None, list[str], Behaviour | None]:
        """The user's declared record, the interests targeting may use (:func:`targeting_interests`) and the
        behaviour the click model may use (None without consent)."""
        try:
            profile = self.store.get_profile(user_id)
        except NotFoundError:
            return None, [], None
        user = profile.user
        behaviour = profile.behaviour if user.consent else None
        affinities = behaviour.affinities("category") if behaviour is not None else None
        return user, sorted(targeting_interests(user, affinities)), behaviour

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        placement: str | None = None,
        device: Device | None = None,
        region: str | None = None,
        exclude_advertisers: Sequence[str] = (),
        now: float | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> Response:
        """Up to ``k`` ads for ``user_id``, ranked, priced and explained (never empty when an ad is eligible).

        ``request_id`` (trusted callers: unique per request) names the request and its served ads
        (``{request_id}-{rank}``); by default a random one. ``client_request_id`` is a client's own id (the API's
        ``request_id`` parameter), which may repeat: the response echoes it and it seeds the request's random
        draws (the same id, the same exploration), while the served ads' ids stay unique (a random suffix)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1 (got {k})")
        t0 = time.perf_counter()
        binding = self._binding  # one read: a concurrent swap does not affect this request
        model = binding.model
        now = time.time() if now is None else now
        if client_request_id is not None:
            draws, request_id = client_request_id, f"{client_request_id}~{uuid.uuid4().hex[:12]}"
        else:
            request_id = request_id or uuid.uuid4().hex
            draws = request_id
        ctx = RequestContext(now, placement, device, region, frozenset(exclude_advertisers))
        req = self._prepare(binding, user_id, k, ctx)
        t3 = time.perf_counter()
        scored = self._score(binding, req, ctx)
        ads = self._rank(binding, scored, k, req, ctx, request_id, draws) if scored is not None else []
        t4 = time.perf_counter()
        timings = {**req.timings(t0, t3), "rank_auction": (t4 - t3) * 1e3}
        return Response(
            client_request_id if client_request_id is not None else request_id,
            user_id,
            model.version if model is not None else None,
            ads,
            req.n_eligible,
            req.cold,
            timings,
        )

    def _prepare(self, binding: _Binding, user_id: str, k: int, ctx: RequestContext) -> _Request:
        """The request's user, history, eligible ads and candidates."""
        t0 = time.perf_counter()
        catalog, model, now = binding.catalog, binding.model, ctx.now
        user, interests, behaviour = self._user(user_id)
        deliveries: list[tuple[str, str, float]] = []
        pending: list[tuple[str, str, float]] = []
        window = max(catalog.max_window, self._repeat_window)
        if window:
            deliveries = self.store.delivery_times(user_id, now - window)
            pending = self.outstanding.served(user_id)
        repeats = _repeats(deliveries, pending, now - self._repeat_window) if self._repeat_window else {}
        t1 = time.perf_counter()
        eligible = catalog.eligibility(user, interests, ctx, self._timed(binding, now), deliveries, pending)
        n_eligible = eligible.count()
        t2 = time.perf_counter()
        behavioural = user is not None and user.consent
        u = -1
        if behavioural and model is not None and user_id in model.artifact.users:
            u = model.artifact.users.index(user_id)
        segment = demographic_segment(user.gender.value, user.age) if user is not None else None
        if n_eligible:
            cand, scores, source = self._candidates(binding, u, eligible, k, segment)
        else:
            cand, scores, source = np.array([], dtype=np.int64), np.array([]), np.array([], dtype=np.int8)
        return _Request(
            user_id, user, interests, behaviour, repeats, n_eligible, u < 0, cand, scores, source, (t0, t1, t2)
        )

    def _candidates(
        self, b: _Binding, u: int, eligible: Eligibility, k: int, segment: str | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int8]]:
        """Candidate ads (catalogue indices), their model scores (NaN where none) and where each came from (an
        index into :data:`SOURCES`).

        Work is proportional to the candidates, not to the catalogue, except on the exact fallback paths.
        """
        cfg = self.config
        parts: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]] = []
        if u >= 0 and b.model is not None:
            model = b.model
            got = np.array([], dtype=np.int64)
            got_scores = np.array([], dtype=np.float64)
            if model.index is not None:
                query = model.artifact.model.user_embeddings[[u]]  # type: ignore[index]
                items, sims = model.index.search(query, cfg.n_candidates)
                found = items[0] >= 0
                ads, ads_scores = b.ad_of_item[items[0][found]], sims[0][found]
                known = ads >= 0
                ads, ads_scores = ads[known], ads_scores[known]
                keep = eligible[ads] & ~b.fresh_mask[ads]  # a score learned from nothing is no evidence
                got, got_scores = ads[keep], ads_scores[keep].astype(np.float64)
                if len(got) < k:
                    warm = np.flatnonzero(eligible.mask & ~b.fresh_mask)
                    if len(got) < min(k, len(warm)):
                        # Targeting removed most neighbours: exact search over the eligible ads (the reference).
                        vectors = model.artifact.model.item_embeddings[b.item_of_ad[warm]]  # type: ignore[index]
                        ids, sims2 = ExactIndex(vectors).search(query, min(cfg.n_candidates, len(warm)))
                        valid = ids[0] >= 0
                        got, got_scores = warm[ids[0][valid]], sims2[0][valid].astype(np.float64)
            else:
                warm = np.flatnonzero(eligible.mask & ~b.fresh_mask)
                if len(warm):
                    s = model.artifact.model.score(np.full(len(warm), u), b.item_of_ad[warm]).astype(np.float64)
                    top = np.argsort(-s, kind="stable")[: cfg.n_candidates]
                    got, got_scores = warm[top], s[top]
            parts.append((got, got_scores, MODEL))
        chosen = parts[0][0] if parts else np.array([], dtype=np.int64)
        need = max(k * 3 - len(chosen), 0)
        if need:
            taken = set(chosen.tolist())
            by_segment = b.segment_order.get(segment) if segment is not None else None
            if by_segment is not None and len(by_segment):
                ranked = _first_open(by_segment, eligible, taken, need)
                if len(ranked):
                    parts.append((ranked, np.full(len(ranked), np.nan), SEGMENT))
                    taken.update(ranked.tolist())
                    need -= len(ranked)
            ranked = _first_open(b.popular_order, eligible, taken, need) if need else np.array([], np.int64)
            if len(ranked):
                parts.append((ranked, np.full(len(ranked), np.nan), POPULAR))
        if len(b.fresh_ads):  # the exploration share reserves slots for them; they also fill what nothing else can
            # A fresh ad clicked since the model was trained can already be a segment's or popular candidate.
            chosen = np.concatenate([p[0] for p in parts]) if parts else np.array([], dtype=np.int64)
            if cfg.max_fresh_candidates:  # the most promising eligible ones not chosen, in the binding's fixed order
                fresh = _first_open(b.fresh_order, eligible, set(chosen.tolist()), cfg.max_fresh_candidates)
            else:
                fresh = b.fresh_ads[eligible[b.fresh_ads]]
                if len(fresh) and len(chosen):
                    fresh = fresh[~np.isin(fresh, chosen)]
            if len(fresh):
                parts.append((fresh, np.full(len(fresh), np.nan), EXPLORE))
        if not parts:
            return np.array([], dtype=np.int64), np.array([]), np.array([], dtype=np.int8)
        ids = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        source = np.concatenate([np.full(len(p[0]), p[2], dtype=np.int8) for p in parts])
        return ids, scores, source

    def _score(self, b: _Binding, req: _Request, ctx: RequestContext) -> _Scored | None:
        """pCTR, pCVR and eCPM of the request's candidates; those under the reserve dropped (None: none left)."""
        cfg = self.config
        cand, scores, source = req.cand, req.scores, req.source
        if len(cand) == 0:
            return None
        cat = b.catalog
        features: dict[int, Examples] = {}

        def predict(m: ClickModel) -> npt.NDArray[np.float64]:
            """``m``'s probabilities for the candidates, every one in the top slot (the auction compares ads, not
            the slots they happened to be shown in); models with the same feature spec share the features."""
            bits = m.spec_.hash_bits
            if bits not in features:
                features[bits] = click_features(m, b.ad_blocks[bits], cand, req.user, req.user_id, req.behaviour, ctx)
            return m.predict(features[bits], position=REFERENCE_POSITION)

        served = b.model
        if served is not None and served.click is not None:
            pctr = predict(served.click)
        else:
            calibrator = served.calibrator if served is not None else Calibrator()
            pctr = np.full(len(cand), calibrator.base_rate)
            scored = ~np.isnan(scores)
            if scored.any():
                pctr[scored] = calibrator(scores[scored])
        if req.repeats:  # the user has seen some of these ads lately: each earlier impression lowers the click chance
            seen = np.array([req.repeats.get(a, 0) for a in cat.ad_ids[cand].tolist()], dtype=np.float64)
            pctr = pctr * cfg.repeat_decay**seen
        camp = cat.ad_campaign[cand]
        pricing = cat.c_pricing[camp]
        bid = cat.c_bid[camp]
        pcvr = (
            predict(served.conversion)
            if served is not None and served.conversion is not None
            else b.campaign_pcvr[camp]
        )
        values = compute_ecpm(pricing, bid, pctr, pcvr)
        got = _Scored(cand, scores, source, camp, pctr, pcvr, pricing, bid, values)
        above = np.flatnonzero(values >= cfg.reserve_ecpm)
        if len(above) < len(cand):
            got = got.take(above)
        return got if len(got.cand) else None

    def _rank(
        self,
        b: _Binding,
        scored: _Scored,
        k: int,
        req: _Request,
        ctx: RequestContext,
        request_id: str,
        draws: str,
    ) -> list[ServedAd]:
        cfg = self.config
        cat = b.catalog
        cand, scores, source, camp = scored.cand, scored.scores, scored.source, scored.camp
        pctr, pcvr, pricing, bid, values = scored.pctr, scored.pcvr, scored.pricing, scored.bid, scored.values
        user, user_id, interests = req.user, req.user_id, req.interests
        served = b.model
        by_value = np.argsort(-values, kind="stable")
        explore = self._explore
        propensity: list[float | None]
        if explore.strategy != "none":
            # Every slot drawn by the strategy, with the probability of the served ad in it (adrec.serving.explore).
            pool = by_value[: max(k * 10, 50)]
            ads_ = cand[pool]
            per_campaign = self._explored.share < 1.0  # the campaigns' exploration caps are counted only when set
            campaign_ids = cat.c_ids[camp[pool]].tolist() if per_campaign else []
            filled = fill_slots(
                values[pool],
                cat.ad_advertiser_code[ads_],
                cat.ad_category_code[ads_],
                k,
                explore,
                np.random.default_rng(_draw_seed(draws)),
                max_per_advertiser=cfg.max_per_advertiser,
                category_decay=cfg.category_decay,
                pctr=pctr[pool],
                impressions=b.ad_impressions[ads_],
                ctr_priced=pricing[pool] != "CPM",
                explorable=self._explored.explorable(campaign_ids, ctx.now) if per_campaign else None,
            )
            picked = pool[filled.picks].tolist()
            propensity = [round(float(p), 6) for p in filled.propensity]
            if per_campaign:
                self._explored.add([campaign_ids[j] for j in filled.picks.tolist()], filled.explored.tolist(), ctx.now)
        else:
            picked = self._exploit(b, cand, values, by_value, source, k, draws, served)
            propensity = [None] * len(picked)
        sel = np.array(picked, dtype=np.int64)
        prices = self._prices(scored, sel[None, :])[0]
        out: list[ServedAd] = []
        explain = cat.explainer(user, interests, ctx)
        for rank, (i, price) in enumerate(zip(sel.tolist(), prices.tolist(), strict=True), start=1):
            a = int(cand[i])
            ad = cat.ads[a]
            campaign = cat.campaigns[int(camp[i])]
            model_ = str(pricing[i])
            delivery = Delivery(
                iid=f"{request_id}-{rank}",
                user_id=user_id,
                ad_id=ad.ad_id,
                campaign_id=campaign.campaign_id,
                advertiser_id=campaign.advertiser_id,
                pricing_model=model_,
                price=round(price, 6),
                served_ts=ctx.now,
                placement=ctx.placement,
                position=rank,
                propensity=propensity[rank - 1],
            )
            score = float(scores[i])
            out.append(
                ServedAd(
                    rank=rank,
                    ad_id=ad.ad_id,
                    campaign_id=campaign.campaign_id,
                    advertiser_id=campaign.advertiser_id,
                    title=ad.title,
                    body=ad.body,
                    image_url=ad.image_url,
                    landing_url=ad.landing_url,
                    category=ad.category,
                    brand=ad.brand,
                    product_price=ad.price,
                    pricing_model=model_,
                    bid=float(bid[i]),
                    price=delivery.price,
                    pctr=float(pctr[i]),
                    pcvr=float(pcvr[i]),
                    ecpm=float(values[i]),
                    score=None if math.isnan(score) else score,
                    source=SOURCES[source[i]],
                    rules=explain(a),
                    token=self.signer.sign(delivery),
                )
            )
        self._remember(cat, ctx.now, user_id, cand[sel], prices, pctr[sel], pcvr[sel])
        return out

    def _remember(
        self,
        cat: CatalogSnapshot,
        now: float,
        user_id: str,
        ads: npt.NDArray[np.int64],
        prices: npt.NDArray[np.float64],
        pctr: npt.NDArray[np.float64],
        pcvr: npt.NDArray[np.float64],
    ) -> None:
        """Served ads (catalogue indices) are outstanding until their events arrive: the expected cost of each (its
        price per billable event times the chance of that event: 1 for CPM, pCTR for CPC, pCTR x pCVR for CPA)
        counts against its budget, and the ads of capped campaigns against the user's caps."""
        camp = cat.ad_campaign[ads]
        pricing = cat.c_pricing[camp]
        chance = np.where(pricing == "CPM", 1.0, np.where(pricing == "CPA", pctr * pcvr, pctr))
        ids = cat.c_ids[camp].tolist()
        remember = self._repeat_window > 0  # every served ad counts as a repeat; otherwise only capped campaigns'
        ad_ids = cat.ad_ids[ads].tolist()
        capped = [(ids[j], ad_ids[j]) for j in range(len(ads)) if remember or cat.c_capped[camp[j]]]
        costs = list(zip(ids, (prices * chance).tolist(), strict=True))
        self.outstanding.add(now, user_id, costs, capped, max(cat.max_window, self._repeat_window))

    def remember_served(
        self,
        user_id: str,
        now: float,
        ad_ids: Sequence[str],
        prices: Sequence[float],
        pctr: Sequence[float],
        pcvr: Sequence[float],
    ) -> None:
        """Count ads another process served (a logged request being replayed) as this process counts its own:
        outstanding until their events arrive, each with its price and its estimated click and conversion chances
        (ads the catalogue no longer holds are left out)."""
        cat = self._binding.catalog
        keep = [j for j, a in enumerate(ad_ids) if a in cat.ad_index]
        if keep:
            ads = np.array([cat.ad_index[ad_ids[j]] for j in keep], dtype=np.int64)
            self._remember(
                cat,
                now,
                user_id,
                ads,
                np.array([prices[j] for j in keep], dtype=np.float64),
                np.array([pctr[j] for j in keep], dtype=np.float64),
                np.array([pcvr[j] for j in keep], dtype=np.float64),
            )

    def _prices(self, scored: _Scored, sel: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """GSP prices of the ads ``sel`` (``(runs, k)`` positions into the candidates, -1 where a slot is empty; NaN
        there), each run priced as the auction sets them on its served ads' eCPM order, against the best ad left
        out (an explored slot order never raises a price)."""
        values = scored.values
        runs = sel.shape[0]
        valid = sel >= 0
        at = np.maximum(sel, 0)
        v = np.where(valid, values[at], -np.inf)
        ranked = np.argsort(-v, axis=1, kind="stable")
        top = np.take_along_axis(at, ranked, axis=1)
        top_valid = np.take_along_axis(valid, ranked, axis=1)
        taken = np.zeros((runs, len(values)), dtype=bool)
        taken[np.nonzero(valid)[0], sel[valid]] = True
        left = np.where(taken, -np.inf, values[None, :]).max(axis=1, initial=-np.inf)
        next_value = np.where(np.isfinite(left), left, 0.0)
        ranked_values = np.where(top_valid, values[top], next_value[:, None])  # an empty slot: the next ad's
        prices_sorted = gsp_prices(
            ranked_values,
            next_value,
            scored.pricing[top],
            scored.bid[top],
            scored.pctr[top],
            scored.pcvr[top],
            self.config.reserve_ecpm,
        )
        prices = np.empty(sel.shape)
        np.put_along_axis(prices, ranked, prices_sorted, axis=1)
        return np.where(valid, prices, np.nan)

    def slot_distribution(
        self,
        user_id: str,
        k: int,
        *,
        now: float,
        placement: str | None = None,
        device: Device | None = None,
        region: str | None = None,
        runs: int = 200,
        seed: str = "replay",
    ) -> SlotDistribution:
        """What this pipeline would do with a request, as a distribution: the probability of each ad in each of the
        ``k`` slots and its mean price there, from ``runs`` independent selections (one where the policy is
        deterministic for the request: no exploration, no fresh ad drawn). Nothing is served: no token, nothing
        outstanding, no exploration counted. Off-policy evaluation replays logged requests through it
        (:mod:`adrec.serving.replay`)."""
        if k < 1 or runs < 1:
            raise ConfigError(f"k and runs must be >= 1 (got {k}, {runs})")
        binding = self._binding
        ctx = RequestContext(now, placement, device, region, frozenset())
        scored = self._score(binding, self._prepare(binding, user_id, k, ctx), ctx)
        if scored is None:
            return SlotDistribution.empty(k)
        sel = self._select_runs(binding, scored, k, runs, seed)
        prices = self._prices(scored, sel)
        n = len(scored.cand)
        count = np.zeros((n, k))
        total = np.zeros((n, k))
        r, j = np.nonzero(sel >= 0)
        np.add.at(count, (sel[r, j], j), 1.0)
        np.add.at(total, (sel[r, j], j), prices[r, j])
        price = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
        got = scored
        return SlotDistribution(
            binding.catalog.ad_ids[got.cand].tolist(),
            count / sel.shape[0],
            price,
            got.pctr,
            got.pcvr,
            [str(p) for p in got.pricing.tolist()],
            sel.shape[0],
        )

    def _select_runs(self, b: _Binding, scored: _Scored, k: int, runs: int, seed: str) -> npt.NDArray[np.int64]:
        """Independent selections of the slots, as :meth:`_rank` makes them: ``(runs, k)`` positions into the
        candidates (-1: empty); a single run where the selection has nothing random."""
        cat, values = b.catalog, scored.values
        by_value = np.argsort(-values, kind="stable")
        explore = self._explore
        rng = np.random.default_rng(_draw_seed(f"r:{seed}"))
        if explore.strategy != "none":
            pool = by_value[: max(k * 10, 50)]
            ads = scored.cand[pool]
            picks = slot_runs(
                values[pool],
                cat.ad_advertiser_code[ads],
                cat.ad_category_code[ads],
                k,
                explore,
                rng,
                runs,
                max_per_advertiser=self.config.max_per_advertiser,
                category_decay=self.config.category_decay,
                pctr=scored.pctr[pool],
                impressions=b.ad_impressions[ads],
                ctr_priced=scored.pricing[pool] != "CPM",
            ).picks
            return np.where(picks >= 0, pool[np.maximum(picks, 0)], -1)
        first = self._exploit(b, scored.cand, values, by_value, scored.source, k, f"r0:{seed}", b.model)
        # Only fresh ads are drawn at random: for the fresh-ad share, or to fill slots nothing else can.
        fresh = bool((scored.source == EXPLORE).any())
        n = runs if fresh and (self.config.explore_share > 0 or len(first) < k) else 1
        out = np.full((n, k), -1, dtype=np.int64)
        out[0, : len(first)] = first
        for r in range(1, n):
            picked = self._exploit(b, scored.cand, values, by_value, scored.source, k, f"r{r}:{seed}", b.model)
            out[r, : len(picked)] = picked
        return out

    def _exploit(
        self,
        b: _Binding,
        cand: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        by_value: npt.NDArray[np.intp],
        source: npt.NDArray[np.int8],
        k: int,
        draws: str,
        served: ServingModel | None,
    ) -> list[int]:
        """Exploration ``none``: the re-ranked best ads, with the fresh-ad share drawn at random; eCPM order."""
        cfg = self.config
        order = by_value
        explore = source == EXPLORE
        explore_pool = np.flatnonzero(explore)
        explore_pick = np.array([], dtype=np.int64)
        shuffled = explore_pool
        if len(explore_pool):
            rng = np.random.default_rng(_draw_seed(draws))
            # The share is met on average: k * share slots, the fraction by chance (k = 1 explores 10 % of the
            # time).
            share = k * cfg.explore_share
            n_explore = min(len(explore_pool), int(share) + int(rng.random() < share - int(share)))
            shuffled = rng.permutation(explore_pool)
            explore_pick = shuffled[:n_explore]
            if served is not None and served.click is not None:
                # The click model scores a fresh ad from its content (its id unseen): it competes on eCPM like any
                # candidate, and the exploration share adds drawn ones on top of those that win.
                order = order[~np.isin(order, explore_pick)]
            else:  # a fresh ad's pCTR is only the base rate: it is shown by the exploration share alone
                order = order[~explore[order]]
        picked = rerank(
            b.catalog,
            cand,
            values,
            order,
            k - len(explore_pick),
            max_per_advertiser=cfg.max_per_advertiser,
            category_decay=cfg.category_decay,
        )
        picked += explore_pick.tolist()
        if len(picked) < k and len(explore_pool):  # not enough exploit candidates: fill with the other fresh ads
            chosen = set(picked)
            picked += [i for i in shuffled.tolist() if i not in chosen][: k - len(picked)]
        picked.sort(key=lambda i: -values[i])
        return picked


def click_features(
    click: ClickModel,
    ads: AdBlock,
    cand: npt.NDArray[np.int64],
    user: User | None,
    user_id: str,
    behaviour: Behaviour | None,
    ctx: RequestContext,
) -> Examples:
    """The click model's features of the candidates ``cand`` (catalogue indices) for this user and request, as the
    pipeline scores them: at :data:`REFERENCE_POSITION`. A user without a stored record is known by id only."""
    spec = _feature_spec(click)
    person = user if user is not None else User.model_construct(user_id=user_id)  # the defaults, unvalidated
    users = spec.users([person], [behaviour])
    return spec.assemble(users, 0, ads, cand, spec.context([ctx.now], ctx.placement), REFERENCE_POSITION)


def _repeats(
    deliveries: Sequence[tuple[str, str, float]], pending: Sequence[tuple[str, str, float]], since: float
) -> dict[str, int]:
    """Per ad, the user's impressions since ``since``: the larger of the recorded count and the count this process
    served (the recorded impressions of its own tokens are in both)."""
    counts: dict[str, int] = {}
    for source in (deliveries, pending):
        mine: dict[str, int] = {}
        for _, ad, ts in source:
            if ts >= since:
                mine[ad] = mine.get(ad, 0) + 1
        for ad, n in mine.items():
            counts[ad] = max(counts.get(ad, 0), n)
    return counts


def rerank(
    cat: CatalogSnapshot,
    cand: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    order: npt.NDArray[np.intp],
    k: int,
    *,
    max_per_advertiser: int,
    category_decay: float,
) -> list[int]:
    """Greedy re-ranking: at most ``max_per_advertiser`` per advertiser, eCPM decayed per repeated category.

    ``cand`` are catalogue indices of the candidates, ``values`` their eCPM and ``order`` positions into them by
    eCPM, best first; returns positions, in slot order. Each slot takes the ad with the best decayed eCPM (the first
    one on ties). The decay (at most 1) only lowers values, so a slot's search stops at the first ad whose
    undecayed eCPM cannot beat the best decayed one found so far.
    """
    if k <= 0 or len(order) == 0:
        return []
    pool = order[: max(k * 10, 50)].tolist()
    ads = cand[pool]
    adv = cat.ad_advertiser_code[ads].tolist()
    category = cat.ad_category_code[ads].tolist()
    base = values[pool].tolist()
    adv_count: dict[int, int] = {}
    cat_count: dict[int, int] = {}
    open_ = list(range(len(pool)))  # positions in the pool not taken, in eCPM order
    picked: list[int] = []
    while len(picked) < k and open_:
        best, best_value = -1, -math.inf
        for j, p in enumerate(open_):
            if base[p] <= best_value:
                break
            if adv_count.get(adv[p], 0) >= max_per_advertiser:
                continue
            value = base[p] * category_decay ** cat_count.get(category[p], 0)
            if value > best_value:
                best, best_value = j, value
        if best < 0:
            break
        p = open_.pop(best)
        adv_count[adv[p]] = adv_count.get(adv[p], 0) + 1
        cat_count[category[p]] = cat_count.get(category[p], 0) + 1
        picked.append(pool[p])
    return picked


def _first_open(
    order: npt.NDArray[np.int64], eligible: Eligibility, taken: set[int], need: int
) -> npt.NDArray[np.int64]:
    """The first ``need`` ads of ``order`` that are eligible and not taken, scanning a growing prefix only."""
    width = max(need * 8, 256)
    start = 0
    out: list[int] = []
    while start < len(order) and len(out) < need:
        block = order[start : start + width]
        out += [a for a in block[eligible[block]].tolist() if a not in taken][: need - len(out)]
        start += width
        width *= 4
    return np.array(out, dtype=np.int64)


def _draw_seed(key: str) -> int:
    """The seed of a request's random draws: the number its first 8 hex digits spell (random request ids are hex),
    else a hash of the whole id, so that the same id always draws the same."""
    try:
        return int(key[:8], 16)
    except ValueError:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
