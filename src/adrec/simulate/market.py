"""The ground truth of a simulated ad market: who the users are, what they like, and how they click.

A :class:`Market` is plain NumPy arrays indexed by ``user_idx`` (``0..n_users-1``), ``advertiser_idx``,
``campaign_idx`` and ``ad_idx``, plus the :class:`~adrec.simulate.config.SimulationConfig` it was drawn from.
It is what later work measures against: :meth:`Market.true_ctr` is the probability a user clicks an ad at a
position, :meth:`Market.true_cvr` the probability a click converts.

Click model
-----------
The probability that user ``u`` clicks ad ``a`` shown at position ``k`` (1 = top) is::

    logit P(click) = base_logit
                   + affinity_weight * affinity(u, a)      interest of u in the category of a
                   + quality[a]                            ad quality, N(0, quality_scale^2)
                   + user_bias[u]                          how click-happy u is, N(0, user_bias_scale^2)
                   + latent[u] . latent[a]                 idiosyncratic taste, about N(0, latent_scale^2)
                   - position_decay * log(k)               position bias

    affinity(u, a) = log((interest[u, category[a]] + s) / (1 / n_categories + s)),  s = 0.02

so affinity is 0 for a user with uniform interests, about +2.7 for a user interested only in the ad's
category and about -1.3 for one with no interest in it. A click converts with::

    logit P(conversion | click) = cvr_base_logit + 0.5 * affinity(u, a) + cvr_bias[a]
                                - 0.3 * log(price[a] / median price of the category)

and a conversion is worth ``price[a] * value_ratio`` of its category (1 for purchases, small for leads on
cars and homes) times a basket of ``1 + Poisson(0.25)`` items (:meth:`Market.expected_value`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.data.schema import Targeting
from adrec.data.targeting import DEVICE_ROW, GENDER_ROW, FactColumns, TargetingTables, clock_array
from adrec.exceptions import AdrecError
from adrec.simulate import vocab
from adrec.simulate.config import SimulationConfig
from adrec.simulate.vocab import (
    BODY_TEMPLATES,
    CATEGORIES,
    CITIES,
    CTAS,
    DEVICE_WEIGHTS,
    DEVICES,
    GENDER_WEIGHTS,
    GENDERS,
    GENERIC_ADJECTIVES,
    NAME_PREFIXES,
    NAME_SUFFIXES,
    PRICING_MODELS,
    REGIONS,
    TITLE_TEMPLATES,
)

__all__ = ["BASKET_MEAN", "CPA", "CPC", "CPM", "Market"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Codes of :data:`adrec.simulate.vocab.PRICING_MODELS` in ``Market.campaign_pricing``.
CPC, CPM, CPA = 0, 1, 2
#: Mean number of extra items in a converting basket (Poisson); the order value is ``price * (1 + extra)``.
BASKET_MEAN = 0.25

_AFFINITY_SMOOTHING = 0.02
_CVR_AFFINITY = 0.5
_CVR_PRICE = 0.3
_DECLARED_MIN_SHARE = 0.15
_DECLARED_MAX = 3
_EVERGREEN_SHARE = 0.1
_USER_CHUNK = 1 << 16
_FORMAT = "adrec.simulate.market"
_FORMAT_VERSION = 1
_AGE_BANDS: tuple[tuple[int, int], ...] = ((18, 24), (18, 34), (25, 44), (35, 54), (45, 120), (55, 120))
_DEVICE_SETS: tuple[tuple[int, ...], ...] = ((0,), (0, 2), (1,), (1, 2))
_TIER_SETS: tuple[tuple[int, ...], ...] = ((1,), (1, 2), (1, 2, 3))


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def _bits(codes: tuple[int, ...]) -> int:
    return sum(1 << c for c in codes)


def _bit_list(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _index(value: npt.ArrayLike) -> npt.NDArray[np.intp]:
    return np.asarray(value, dtype=np.intp)


@dataclass(frozen=True, eq=False)
class Market:
    """The simulated market and its ground-truth click and conversion models.

    Build one with :meth:`generate`; save and load it with :meth:`save` / :meth:`load`. Arrays are indexed by
    the ``*_idx`` of users, advertisers, campaigns and ads; the store ids are ``u<idx>``, ``adv<idx>``,
    ``cmp<idx>`` and ``ad<idx>`` zero-padded (see :meth:`user_ids` and friends). Shapes below use
    ``U, V, C, A`` for the numbers of users, advertisers, campaigns and ads, ``K`` for categories and ``D``
    for ``config.latent_dim``.

    Attributes
    ----------
    config
        The settings the market was drawn from.
    user_age : (U,) int16
        Age in years, 16 to 85.
    user_gender : (U,) int8
        Index into :data:`~adrec.simulate.vocab.GENDERS`.
    user_city : (U,) int16
        Index into :data:`~adrec.simulate.vocab.CITIES` (which fixes region, language and city tier).
    user_device : (U,) int8
        Index into :data:`~adrec.simulate.vocab.DEVICES`.
    user_consent : (U,) bool
        Consent to behavioural targeting; interest-targeted campaigns never reach users without it.
    user_interest : (U, K) float32
        Latent interest over categories (rows sum to 1), drawn from a Dirichlet tilted by gender and age.
    user_latent : (U, D) float32
        Latent taste vector, N(0, 1/D) per component.
    user_bias : (U,) float32
        Per-user additive click logit.
    user_activity : (U,) float64
        Share of requests that come from each user (sums to 1); lognormal, so heavy-tailed.
    advertiser_name_code : (V,) int32
        Code of the advertiser's name, see :func:`~adrec.simulate.vocab.advertiser_name`. Also the brand.
    advertiser_category : (V,) int16
        The advertiser's main category.
    campaign_advertiser : (C,) int32
        Owning advertiser.
    campaign_category : (C,) int16
        Main category of the campaign (its interest rule, when it has one, is this category).
    campaign_pricing : (C,) int8
        :data:`CPC`, :data:`CPM` or :data:`CPA`.
    campaign_bid : (C,) float64
        Bid per click, per thousand impressions or per conversion.
    campaign_daily_budget, campaign_total_budget : (C,) float64
        Budgets, NaN when there is none. The history stops serving a campaign once its total budget is spent;
        daily budgets are recorded but not enforced.
    campaign_start, campaign_end : (C,) float64
        Schedule in seconds since the epoch; ``end`` is ``inf`` for campaigns without an end date.
    campaign_age_min, campaign_age_max : (C,) int16
        Targeted ages, inclusive (0 and 120 when open).
    campaign_genders, campaign_devices, campaign_tiers, campaign_regions : (C,) int64
        Bit masks over gender, device, city tier minus one and region codes; 0 means open.
    campaign_interest : (C,) int16
        Required declared interest (a category index), -1 when open.

    The campaign arrays encode :class:`~adrec.data.schema.Targeting` records (:attr:`targetings`), which
    :meth:`eligible` reads through :mod:`adrec.data.targeting`, as the server does.
    ad_campaign : (A,) int32
        Owning campaign.
    ad_category : (A,) int16
        The ad's category.
    ad_price : (A,) float64
        Advertised price, lognormal around the category median.
    ad_quality : (A,) float32
        Additive click logit of the ad.
    ad_cvr_bias : (A,) float32
        Additive conversion logit of the ad.
    ad_latent : (A, D) float32
        Latent vector matched against ``user_latent``.
    ad_popularity : (A,) float64
        Long-tailed weight of the ad in the logging policy (sums to 1).
    ad_text : (A, 7) int16
        Creative choices: title template, body template, noun, adjective, second adjective, call to action,
        discount percent. See :meth:`creative`.
    """

    config: SimulationConfig
    user_age: npt.NDArray[np.int16]
    user_gender: npt.NDArray[np.int8]
    user_city: npt.NDArray[np.int16]
    user_device: npt.NDArray[np.int8]
    user_consent: BoolArray
    user_interest: npt.NDArray[np.float32]
    user_latent: npt.NDArray[np.float32]
    user_bias: npt.NDArray[np.float32]
    user_activity: FloatArray
    advertiser_name_code: npt.NDArray[np.int32]
    advertiser_category: npt.NDArray[np.int16]
    campaign_advertiser: npt.NDArray[np.int32]
    campaign_category: npt.NDArray[np.int16]
    campaign_pricing: npt.NDArray[np.int8]
    campaign_bid: FloatArray
    campaign_daily_budget: FloatArray
    campaign_total_budget: FloatArray
    campaign_start: FloatArray
    campaign_end: FloatArray
    campaign_age_min: npt.NDArray[np.int16]
    campaign_age_max: npt.NDArray[np.int16]
    campaign_genders: IntArray
    campaign_devices: IntArray
    campaign_tiers: IntArray
    campaign_regions: IntArray
    campaign_interest: npt.NDArray[np.int16]
    ad_campaign: npt.NDArray[np.int32]
    ad_category: npt.NDArray[np.int16]
    ad_price: FloatArray
    ad_quality: npt.NDArray[np.float32]
    ad_cvr_bias: npt.NDArray[np.float32]
    ad_latent: npt.NDArray[np.float32]
    ad_popularity: FloatArray
    ad_text: npt.NDArray[np.int16]

    # -- sizes and names -----------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_age)

    @property
    def n_advertisers(self) -> int:
        return len(self.advertiser_name_code)

    @property
    def n_campaigns(self) -> int:
        return len(self.campaign_advertiser)

    @property
    def n_ads(self) -> int:
        return len(self.ad_campaign)

    @property
    def n_categories(self) -> int:
        return int(self.user_interest.shape[1])

    @property
    def category_names(self) -> tuple[str, ...]:
        """Names of the categories in index order."""
        return tuple(c.name for c in CATEGORIES[: self.n_categories])

    @cached_property
    def ad_advertiser(self) -> npt.NDArray[np.int32]:
        """(A,) int32: the advertiser of each ad."""
        return self.campaign_advertiser[self.ad_campaign]

    @cached_property
    def advertiser_names(self) -> tuple[str, ...]:
        """(V,) readable advertiser names; each is also the brand of the advertiser's ads."""
        return tuple(vocab.advertiser_name(int(c)) for c in self.advertiser_name_code)

    @cached_property
    def declared_interests(self) -> IntArray:
        """(U,) int64 bit masks of the categories a user declares (up to 3 with an interest share >= 0.15).

        These are the ``User.interests`` written to the store and what interest-targeted campaigns match.
        """
        theta = self.user_interest
        k = theta.shape[1]
        floor = np.float32(_DECLARED_MIN_SHARE)
        if k > _DECLARED_MAX:
            kth = np.partition(theta, k - _DECLARED_MAX, axis=1)[:, k - _DECLARED_MAX]
            floor_row = np.maximum(kth, floor)[:, None]
        else:
            floor_row = np.full((len(theta), 1), floor, dtype=np.float32)
        declared = theta >= floor_row
        weights = np.left_shift(np.int64(1), np.arange(k, dtype=np.int64))
        masks: IntArray = declared.astype(np.int64) @ weights
        return masks

    def user_ids(self, user_idx: npt.ArrayLike | None = None) -> npt.NDArray[np.object_]:
        """Store ids ``u0..`` of ``user_idx`` (all users when None), as an object array of ``str``."""
        ids = self._user_ids
        return ids if user_idx is None else ids[_index(user_idx)]

    def ad_ids(self, ad_idx: npt.ArrayLike | None = None) -> npt.NDArray[np.object_]:
        """Store ids ``ad0..`` of ``ad_idx`` (all ads when None), as an object array of ``str``."""
        ids = self._ad_ids
        return ids if ad_idx is None else ids[_index(ad_idx)]

    def campaign_ids(self) -> npt.NDArray[np.object_]:
        """(C,) store ids ``cmp0..`` of every campaign."""
        return _ids("cmp", self.n_campaigns)

    def advertiser_ids(self) -> npt.NDArray[np.object_]:
        """(V,) store ids ``adv0..`` of every advertiser."""
        return _ids("adv", self.n_advertisers)

    @cached_property
    def _user_ids(self) -> npt.NDArray[np.object_]:
        return _ids("u", self.n_users)

    @cached_property
    def _ad_ids(self) -> npt.NDArray[np.object_]:
        return _ids("ad", self.n_ads)

    # -- the ground truth ----------------------------------------------------------------------------------
    def affinity(self, user_idx: npt.ArrayLike, ad_idx: npt.ArrayLike) -> FloatArray:
        """Log-ratio of the user's interest in the ad's category to a uniform interest.

        Parameters
        ----------
        user_idx, ad_idx
            Integer arrays (or scalars) broadcast against each other.

        Returns
        -------
        ndarray of float64, the broadcast shape
        """
        u, a = np.broadcast_arrays(_index(user_idx), _index(ad_idx))
        share = self.user_interest[u, self.ad_category[a]].astype(np.float64)
        uniform = 1.0 / self.n_categories
        out: FloatArray = np.log((share + _AFFINITY_SMOOTHING) / (uniform + _AFFINITY_SMOOTHING))
        return out

    def click_logit(self, user_idx: npt.ArrayLike, ad_idx: npt.ArrayLike, position: npt.ArrayLike = 1) -> FloatArray:
        """The logit of :meth:`true_ctr` (see the module docstring for the formula)."""
        u, a, k = np.broadcast_arrays(_index(user_idx), _index(ad_idx), np.asarray(position))
        if k.size and int(k.min()) < 1:
            raise ValueError(f"positions are 1-based; got {int(k.min())}")
        cfg = self.config
        latent = np.einsum("...d,...d->...", self.user_latent[u], self.ad_latent[a], dtype=np.float64)
        logit: FloatArray = (
            cfg.base_logit
            + cfg.affinity_weight * self.affinity(u, a)
            + self.ad_quality[a]
            + self.user_bias[u]
            + latent
            - cfg.position_decay * np.log(k.astype(np.float64))
        )
        return logit

    def true_ctr(self, user_idx: npt.ArrayLike, ad_idx: npt.ArrayLike, position: npt.ArrayLike = 1) -> FloatArray:
        """Probability that the user clicks the ad shown at ``position`` (1 = top).

        Parameters
        ----------
        user_idx, ad_idx, position
            Integer arrays (or scalars) broadcast against each other; positions are 1-based.

        Returns
        -------
        ndarray of float64, the broadcast shape, values in (0, 1)
        """
        return _sigmoid(self.click_logit(user_idx, ad_idx, position))

    def true_cvr(self, user_idx: npt.ArrayLike, ad_idx: npt.ArrayLike) -> FloatArray:
        """Probability that a click of the user on the ad converts.

        Returns
        -------
        ndarray of float64, the broadcast shape of ``user_idx`` and ``ad_idx``
        """
        u, a = np.broadcast_arrays(_index(user_idx), _index(ad_idx))
        medians = np.array([c.price_median for c in CATEGORIES[: self.n_categories]])
        rel_price = self.ad_price[a] / medians[self.ad_category[a]]
        logit = (
            self.config.cvr_base_logit
            + _CVR_AFFINITY * self.affinity(u, a)
            + self.ad_cvr_bias[a]
            - _CVR_PRICE * np.log(np.maximum(rel_price, 1e-6))
        )
        return _sigmoid(logit)

    def conversion_value(self, ad_idx: npt.ArrayLike) -> FloatArray:
        """Value of a one-item conversion on the ad: ``price * value_ratio`` of its category."""
        a = _index(ad_idx)
        ratio = np.array([c.value_ratio for c in CATEGORIES[: self.n_categories]])
        out: FloatArray = self.ad_price[a] * ratio[self.ad_category[a]]
        return out

    def expected_value(self, ad_idx: npt.ArrayLike) -> FloatArray:
        """Expected value of a conversion on the ad: ``conversion_value * (1 + BASKET_MEAN)``."""
        out: FloatArray = self.conversion_value(ad_idx) * (1.0 + BASKET_MEAN)
        return out

    @cached_property
    def targetings(self) -> tuple[Targeting, ...]:
        """(C,) each campaign's targeting as the record the store and the server read."""
        names = self.category_names
        out = []
        for c in range(self.n_campaigns):
            age_min, age_max = int(self.campaign_age_min[c]), int(self.campaign_age_max[c])
            interest = int(self.campaign_interest[c])
            out.append(
                Targeting(
                    age_min=age_min if age_min > 0 else None,
                    age_max=age_max if age_max < 120 else None,
                    genders=frozenset(GENDERS[i] for i in _bit_list(int(self.campaign_genders[c]))),
                    devices=frozenset(DEVICES[i] for i in _bit_list(int(self.campaign_devices[c]))),
                    city_tiers=frozenset(i + 1 for i in _bit_list(int(self.campaign_tiers[c]))),
                    regions=frozenset(REGIONS[i] for i in _bit_list(int(self.campaign_regions[c]))),
                    interests_include=frozenset([names[interest]]) if interest >= 0 else frozenset(),
                )
            )
        return tuple(out)

    @cached_property
    def _targeting(self) -> tuple[TargetingTables, FactColumns]:
        """The campaigns' targeting tables and every user's facts as their codes.

        Users have no behaviour profile while the history is drawn, so their targeting interests
        (:func:`~adrec.data.targeting.targeting_interests`) are their declared ones, none without consent.
        """
        tables = TargetingTables.build(self.targetings)
        gender = np.array([GENDER_ROW[g] for g in GENDERS], dtype=np.int8)
        device = np.array([DEVICE_ROW[d] for d in DEVICES], dtype=np.int8)
        region = tables.region_codes(REGIONS).astype(np.int16)
        interests = np.where(self.user_consent, self.declared_interests, 0)
        masks, which = np.unique(interests, return_inverse=True)
        names = self.category_names
        words = tables.interest_words([names[i] for i in _bit_list(int(m))] for m in masks.tolist())
        city = self.user_city
        facts = FactColumns(
            age=self.user_age,
            gender=gender[self.user_gender],
            device=device[self.user_device],
            city_tier=_CITY_TIER[city].astype(np.int8),
            region=region[_CITY_REGION[city]],
            interests=words[which.ravel()],
        )
        return tables, facts

    def eligible(self, user_idx: npt.ArrayLike, ad_idx: npt.ArrayLike, ts: npt.ArrayLike | None = None) -> BoolArray:
        """Whether the ad's campaign may be shown to the user: its targeting (:mod:`adrec.data.targeting`; with
        ``ts``, its hours and days too) and, with ``ts``, its schedule.

        Parameters
        ----------
        user_idx, ad_idx
            Integer arrays broadcast against each other.
        ts
            Seconds since the epoch, broadcast too; None skips the schedule, hour and day checks.

        Returns
        -------
        ndarray of bool, the broadcast shape
        """
        tables, facts = self._targeting
        if ts is None:
            u, a = np.broadcast_arrays(_index(user_idx), _index(ad_idx))
            result: BoolArray = tables.pairs(self.ad_campaign[a], facts.take(u))
            return result
        u, a, t = np.broadcast_arrays(_index(user_idx), _index(ad_idx), np.asarray(ts, dtype=np.float64))
        c = self.ad_campaign[a]
        hour, day = clock_array(t) if tables.has_time_rules else (None, None)
        ok = tables.pairs(c, facts.take(u), hour, day)
        ok &= (t >= self.campaign_start[c]) & (t < self.campaign_end[c])
        return ok

    def creative(self, ad_idx: int) -> tuple[str, str]:
        """The generated ``(title, body)`` of one ad, rebuilt from ``ad_text``, brand, category and price."""
        title_t, body_t, noun_i, adj_i, adj2_i, cta_i, pct = (int(x) for x in self.ad_text[ad_idx])
        cat = CATEGORIES[int(self.ad_category[ad_idx])]
        adjectives = cat.adjectives + GENERIC_ADJECTIVES
        price = float(self.ad_price[ad_idx])
        words = {
            "brand": self.advertiser_names[int(self.ad_advertiser[ad_idx])],
            "noun": cat.nouns[noun_i],
            "adj": adjectives[adj_i],
            "adj2": adjectives[adj2_i],
            "pct": pct,
            "cta": CTAS[cta_i],
            "price": f"From ${price:,.2f}." if price < 1000 else f"From ${price:,.0f}.",
        }
        title = TITLE_TEMPLATES[title_t].format(**words)
        body = BODY_TEMPLATES[body_t].format(**words)
        return title[:1].upper() + title[1:], body[:1].upper() + body[1:]

    # -- persistence ---------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Every array of the market by field name (no copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}

    def save(self, directory: str | Path) -> Path:
        """Write ``market.npz`` (the arrays) and ``market.json`` (config and format) into ``directory``.

        Nothing is pickled; :meth:`load` reads it back. Returns the directory.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "market.npz", allow_pickle=False, **self.arrays())
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "vocab_version": vocab.VOCAB_VERSION,
            "config": self.config.model_dump(mode="json"),
            "sizes": {
                "users": self.n_users,
                "advertisers": self.n_advertisers,
                "campaigns": self.n_campaigns,
                "ads": self.n_ads,
                "categories": self.n_categories,
            },
            "categories": list(self.category_names),
        }
        (path / "market.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Market:
        """Read a market written by :meth:`save`.

        Raises
        ------
        AdrecError
            When the files are missing or were written by an incompatible version.
        """
        path = Path(directory)
        meta_path, npz_path = path / "market.json", path / "market.npz"
        if not meta_path.is_file() or not npz_path.is_file():
            raise AdrecError(f"{path}: no simulated market here (expected market.json and market.npz)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
            raise AdrecError(
                f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                f"this adrec reads {_FORMAT!r} version {_FORMAT_VERSION}"
            )
        if meta.get("vocab_version") != vocab.VOCAB_VERSION:
            raise AdrecError(
                f"{meta_path}: written with vocabulary version {meta.get('vocab_version')}, this adrec has "
                f"{vocab.VOCAB_VERSION}; regenerate the market"
            )
        config = SimulationConfig(**meta["config"])
        names = [f.name for f in fields(cls) if f.name != "config"]
        with np.load(npz_path, allow_pickle=False) as data:
            missing = sorted(set(names) - set(data.files))
            if missing:
                raise AdrecError(f"{npz_path}: missing arrays {missing}")
            arrays = {name: data[name] for name in names}
        return cls(config=config, **arrays)

    # -- generation ----------------------------------------------------------------------------------------
    @classmethod
    def generate(cls, config: SimulationConfig) -> Market:
        """Draw a market from ``config``; the same config (seed included) gives identical arrays.

        Users, advertisers, campaigns and ads draw from separate streams of ``config.seed``, so changing
        ``n_users`` leaves the ad side unchanged and vice versa (campaign budgets aside, which scale with
        the traffic).
        """

        def stream(part: int) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0, part)))

        users = _generate_users(config, stream(0))
        advertisers = _generate_advertisers(config, stream(1))
        campaigns = _generate_campaigns(config, stream(2), advertisers["advertiser_category"])
        ads = _generate_ads(config, stream(3), campaigns)
        budgets = _generate_budgets(config, stream(4), users, campaigns, ads)
        campaigns.update(budgets)
        return cls(config=config, **users, **advertisers, **campaigns, **ads)


_CITY_TIER = np.array([c.tier for c in CITIES], dtype=np.int64)
_CITY_REGION = np.array([REGIONS.index(c.region) for c in CITIES], dtype=np.int64)


def _ids(prefix: str, n: int) -> npt.NDArray[np.object_]:
    width = len(str(max(n - 1, 0)))
    digits = np.strings.zfill(np.arange(n).astype(str), width)
    out: npt.NDArray[np.object_] = np.strings.add(prefix, digits).astype(object)
    return out


def _normalised(weights: npt.ArrayLike) -> FloatArray:
    w = np.asarray(weights, dtype=np.float64)
    out: FloatArray = w / w.sum()
    return out


def _generate_users(config: SimulationConfig, rng: np.random.Generator) -> dict[str, npt.NDArray[Any]]:
    n, k = config.n_users, config.n_categories
    cats = CATEGORIES[:k]
    log_weight = np.log(np.array([c.weight for c in cats]))
    tilt = np.array([c.female_tilt for c in cats])
    log_peak = np.log(np.array([c.age_peak for c in cats]))

    young = rng.random(n) < 0.7
    age = np.where(young, rng.normal(31, 9, n), rng.normal(52, 12, n))
    age = np.clip(np.rint(age), 16, 85).astype(np.int16)
    gender = rng.choice(len(GENDERS), size=n, p=_normalised(GENDER_WEIGHTS)).astype(np.int8)
    city = rng.choice(len(CITIES), size=n, p=_normalised([c.weight for c in CITIES])).astype(np.int16)
    device = rng.choice(len(DEVICES), size=n, p=_normalised(DEVICE_WEIGHTS)).astype(np.int8)
    consent = rng.random(n) < config.consent_rate

    # Interests: a Dirichlet whose mean leans towards the categories of the user's gender and age, drawn in
    # chunks so that a million users never hold more than one chunk of float64 temporaries.
    interest = np.empty((n, k), dtype=np.float32)
    gender_sign = np.select([gender == 0, gender == 1], [0.5, -0.5], 0.0)
    for lo in range(0, n, _USER_CHUNK):
        hi = min(lo + _USER_CHUNK, n)
        log_prior = (
            log_weight[None, :]
            + gender_sign[lo:hi, None] * tilt[None, :]
            - (np.log(age[lo:hi, None].astype(np.float64)) - log_peak[None, :]) ** 2 / 0.5
        )
        prior = np.exp(log_prior - log_prior.max(axis=1, keepdims=True))
        prior /= prior.sum(axis=1, keepdims=True)
        draw = rng.gamma(config.interest_concentration * k * prior)
        total = draw.sum(axis=1, keepdims=True)
        # A draw can underflow to all zeros for tiny concentrations; fall back to the prior then.
        interest[lo:hi] = np.where(total > 0, draw / np.where(total > 0, total, 1.0), prior)

    latent = rng.normal(0.0, 1.0 / math.sqrt(config.latent_dim), (n, config.latent_dim)).astype(np.float32)
    bias = rng.normal(0.0, config.user_bias_scale, n).astype(np.float32)
    activity = rng.lognormal(0.0, config.activity_sigma, n)
    return {
        "user_age": age,
        "user_gender": gender,
        "user_city": city,
        "user_device": device,
        "user_consent": consent,
        "user_interest": interest,
        "user_latent": latent,
        "user_bias": bias,
        "user_activity": activity / activity.sum(),
    }


def _generate_advertisers(config: SimulationConfig, rng: np.random.Generator) -> dict[str, npt.NDArray[Any]]:
    n = config.n_advertisers
    n_codes = max(n, len(NAME_PREFIXES) * len(NAME_SUFFIXES))
    codes = rng.permutation(n_codes)[:n].astype(np.int32)
    weights = _normalised([c.weight for c in CATEGORIES[: config.n_categories]])
    category = rng.choice(config.n_categories, size=n, p=weights).astype(np.int16)
    return {"advertiser_name_code": codes, "advertiser_category": category}


def _generate_campaigns(
    config: SimulationConfig, rng: np.random.Generator, advertiser_category: npt.NDArray[np.int16]
) -> dict[str, npt.NDArray[Any]]:
    n, n_adv = config.n_campaigns, config.n_advertisers
    # Every advertiser runs one campaign; the rest go to advertisers in proportion to a lognormal size.
    size = rng.lognormal(0.0, 1.0, n_adv)
    extra = rng.choice(n_adv, size=n - n_adv, p=size / size.sum())
    advertiser = rng.permutation(np.concatenate([np.arange(n_adv), extra])).astype(np.int32)
    category = advertiser_category[advertiser].astype(np.int16)
    cats = CATEGORIES[: config.n_categories]
    price_median = np.array([c.price_median for c in cats])[category]

    pricing = rng.choice(len(PRICING_MODELS), size=n, p=[0.6, 0.25, 0.15]).astype(np.int8)
    noise = rng.lognormal(0.0, 0.5, n)
    bid = np.select(
        [pricing == CPC, pricing == CPM],
        [0.6 * (price_median / 50.0) ** 0.15 * noise, 4.0 * noise],
        np.clip(0.08 * price_median, 2.0, 150.0) * noise,
    )
    bid = np.maximum(np.round(bid, 2), 0.01)

    # Evergreen campaigns (the first tenth) run open-ended with open targeting and no total budget, so the
    # logging policy always has something to show.
    n_evergreen = max(1, math.ceil(_EVERGREEN_SHARE * n))
    evergreen = np.arange(n) < n_evergreen
    t0, t1 = config.start_ts, config.end_ts
    window = t1 - t0
    before = t0 - rng.uniform(0, 30, n) * 86_400.0
    partial = ~evergreen & (rng.random(n) < 0.35)
    length = rng.uniform(0.3, 0.9, n) * window
    partial_start = t0 + rng.random(n) * (window - length)
    start = np.where(partial, partial_start, before)
    open_ended = evergreen | (rng.random(n) < 0.5)
    end = np.where(partial, partial_start + length, np.where(open_ended, np.inf, t1 + rng.uniform(1, 30, n) * 86_400.0))
    start, end = np.floor(start), np.where(np.isinf(end), end, np.floor(end))

    targeted = ~evergreen & (rng.random(n) < config.targeted_share)
    age_rule = targeted & (rng.random(n) < 0.45)
    gender_rule = targeted & (rng.random(n) < 0.25)
    device_rule = targeted & (rng.random(n) < 0.2)
    tier_rule = targeted & (rng.random(n) < 0.15)
    region_rule = targeted & (rng.random(n) < 0.2)
    interest_rule = targeted & (rng.random(n) < 0.4)
    interest_rule |= targeted & ~(age_rule | gender_rule | device_rule | tier_rule | region_rule)

    peaks = np.array([c.age_peak for c in cats])[category]
    centers = np.array([(lo + min(hi, 70)) / 2 for lo, hi in _AGE_BANDS])
    band_w = np.exp(-np.abs(centers[None, :] - peaks[:, None]) / 8.0)
    band_u = rng.random(n)[:, None] * band_w.sum(axis=1, keepdims=True)
    band = np.minimum((np.cumsum(band_w, axis=1) < band_u).sum(axis=1), len(_AGE_BANDS) - 1)
    bands = np.array(_AGE_BANDS)
    age_min = np.where(age_rule, bands[band, 0], 0).astype(np.int16)
    age_max = np.where(age_rule, bands[band, 1], 120).astype(np.int16)

    tilt = np.array([c.female_tilt for c in cats])[category]
    female = np.where(tilt > 0.3, True, np.where(tilt < -0.3, False, rng.random(n) < 0.5))
    genders = np.where(gender_rule, np.where(female, 1 << 0, 1 << 1), 0).astype(np.int64)
    device_sets = np.array([_bits(s) for s in _DEVICE_SETS])
    devices = np.where(device_rule, device_sets[rng.integers(len(_DEVICE_SETS), size=n)], 0).astype(np.int64)
    tier_sets = np.array([_bits(tuple(t - 1 for t in s)) for s in _TIER_SETS])
    tiers = np.where(tier_rule, tier_sets[rng.integers(len(_TIER_SETS), size=n)], 0).astype(np.int64)
    # 1 to 3 regions: the OR of up to three random region bits.
    region_bits = np.left_shift(1, rng.integers(len(REGIONS), size=(n, 3)))
    region_bits[:, 1:] *= rng.random((n, 2)) < 0.5
    regions = np.where(region_rule, np.bitwise_or.reduce(region_bits, axis=1), 0).astype(np.int64)
    interest = np.where(interest_rule, category, -1).astype(np.int16)

    return {
        "campaign_advertiser": advertiser,
        "campaign_category": category,
        "campaign_pricing": pricing,
        "campaign_bid": bid,
        "campaign_start": start,
        "campaign_end": end,
        "campaign_age_min": age_min,
        "campaign_age_max": age_max,
        "campaign_genders": genders,
        "campaign_devices": devices,
        "campaign_tiers": tiers,
        "campaign_regions": regions,
        "campaign_interest": interest,
    }


def _generate_ads(
    config: SimulationConfig, rng: np.random.Generator, campaigns: dict[str, npt.NDArray[Any]]
) -> dict[str, npt.NDArray[Any]]:
    n, n_cmp, k = config.n_ads, config.n_campaigns, config.n_categories
    cats = CATEGORIES[:k]
    size = rng.lognormal(0.0, 1.0, n_cmp)
    extra = rng.choice(n_cmp, size=n - n_cmp, p=size / size.sum())
    campaign = rng.permutation(np.concatenate([np.arange(n_cmp), extra])).astype(np.int32)
    own = rng.random(n) < 0.85
    other = rng.choice(k, size=n, p=_normalised([c.weight for c in cats]))
    category = np.where(own, campaigns["campaign_category"][campaign], other).astype(np.int16)

    medians = np.array([c.price_median for c in cats])[category]
    price = np.round(rng.lognormal(np.log(medians), 0.6), 2)
    quality = rng.normal(0.0, config.quality_scale, n).astype(np.float32)
    cvr_bias = rng.normal(0.0, 0.3, n).astype(np.float32)
    latent = rng.normal(0.0, config.latent_scale, (n, config.latent_dim)).astype(np.float32)

    # Popularity: a lognormal long tail, nudged by quality and by the campaign's bid relative to its peers
    # (a stand-in for winning more auctions).
    pricing = campaigns["campaign_pricing"][campaign]
    bid = campaigns["campaign_bid"][campaign]
    peer = np.array([np.median(bid[pricing == p]) if (pricing == p).any() else 1.0 for p in range(3)])
    bid_factor = np.sqrt(bid / peer[pricing])
    popularity = rng.lognormal(0.0, config.popularity_sigma, n) * np.exp(0.5 * quality) * bid_factor

    n_nouns = np.array([len(c.nouns) for c in cats])[category]
    n_adjs = np.array([len(c.adjectives) + len(GENERIC_ADJECTIVES) for c in cats])[category]
    adj = (rng.random(n) * n_adjs).astype(np.int64)
    adj2 = (adj + 1 + (rng.random(n) * (n_adjs - 1)).astype(np.int64)) % n_adjs
    text = np.stack(
        [
            rng.integers(len(TITLE_TEMPLATES), size=n),
            rng.integers(len(BODY_TEMPLATES), size=n),
            (rng.random(n) * n_nouns).astype(np.int64),
            adj,
            adj2,
            rng.integers(len(CTAS), size=n),
            5 * rng.integers(2, 11, size=n),
        ],
        axis=1,
    ).astype(np.int16)
    return {
        "ad_campaign": campaign,
        "ad_category": category,
        "ad_price": price,
        "ad_quality": quality,
        "ad_cvr_bias": cvr_bias,
        "ad_latent": latent,
        "ad_popularity": popularity / popularity.sum(),
        "ad_text": text,
    }


def _generate_budgets(
    config: SimulationConfig,
    rng: np.random.Generator,
    users: dict[str, npt.NDArray[Any]],
    campaigns: dict[str, npt.NDArray[Any]],
    ads: dict[str, npt.NDArray[Any]],
) -> dict[str, FloatArray]:
    """Budgets sized against the spend each campaign would reach under the logging policy without a budget.

    The estimate uses the policy's marginal ad shares (ignoring targeting) and rough CTR/CVR levels, scaled
    by the share of the window the campaign runs; ``budget_factor`` times a lognormal spread sets the budget.
    """
    n_cmp, k = config.n_campaigns, config.n_categories
    pop = ads["ad_popularity"]
    category = ads["ad_category"].astype(np.int64)
    cat_mass = np.bincount(category, weights=pop, minlength=k)
    mean_interest = (users["user_activity"].astype(np.float32) @ users["user_interest"]).astype(np.float64)
    lam = config.interest_share * config.consent_rate
    cat_share = lam * mean_interest + (1 - lam) * cat_mass
    ad_share = config.explore / config.n_ads + (1 - config.explore) * cat_share[category] * pop / np.maximum(
        cat_mass[category], 1e-300
    )
    share = np.bincount(ads["ad_campaign"], weights=ad_share, minlength=n_cmp)

    t0, t1 = config.start_ts, config.end_ts
    start, end = campaigns["campaign_start"], campaigns["campaign_end"]
    running = np.clip(np.minimum(end, t1) - np.maximum(start, t0), 0, None) / (t1 - t0)
    impressions = config.n_impressions * share * running
    ctr = 1 / (1 + math.exp(-(config.base_logit + 1.0)))
    cvr = 1 / (1 + math.exp(-(config.cvr_base_logit + 0.3)))
    pricing, bid = campaigns["campaign_pricing"], campaigns["campaign_bid"]
    per_impression = np.select([pricing == CPC, pricing == CPM], [bid * ctr, bid / 1000.0], bid * ctr * cvr)
    expected = impressions * per_impression

    total = np.ceil(np.maximum(expected * config.budget_factor * rng.lognormal(0.0, 0.6, n_cmp), 10.0))
    days = np.maximum(running * config.days, 1.0)
    daily = np.ceil(np.maximum(total / days * rng.uniform(1.2, 2.0, n_cmp), 5.0))
    daily = np.minimum(daily, total)
    evergreen = np.arange(n_cmp) < max(1, math.ceil(_EVERGREEN_SHARE * n_cmp))
    total = np.where(evergreen, np.nan, total)
    return {"campaign_daily_budget": daily.astype(np.float64), "campaign_total_budget": total}
