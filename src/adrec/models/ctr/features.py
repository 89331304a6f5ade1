"""The click model's features: one declared spec, encoded by the same code for training and for serving.

An example is a (user, ad, context) triple and its position. :class:`FeatureSpec` encodes each part on its own
(:meth:`~FeatureSpec.users`, :meth:`~FeatureSpec.ads`, :meth:`~FeatureSpec.context`) and
:meth:`~FeatureSpec.assemble` joins them row by row, adding the cross features. A trainer encodes every distinct
user and ad once and assembles millions of rows; serving encodes one user, keeps the catalogue's ads encoded, and
assembles one row per candidate. Both call the same functions, so a triple gets the same features on both sides
(``tests/models/test_ctr_features.py`` checks it).

Fields (categorical, hashed; ``[k]`` = up to k values, their embeddings summed):

=========  ================================================================================================
user       user (the id), age_band, gender, region, city_tier, device, language, interests[5] (declared),
           top_category[3], top_brand[3], top_price[2] (the profile's affinities, only with consent)
ad         ad, campaign, advertiser, category, brand, price_band, pricing_model
context    hour, weekday (UTC), placement
=========  ================================================================================================

Dense features: ``log_impressions`` and ``ctr_logit`` (the profile's decayed activity and smoothed click rate),
``has_behaviour`` (1 when the user consents and has a profile), and the crosses of the user with the ad:

- ``affinity_category``, ``affinity_brand``, ``affinity_price``: the user's affinity share for the ad's category,
  brand and price band (decayed weights of every event, so mostly what the user was shown);
- ``click_lift_category``, ``click_lift_brand``, ``click_lift_price``: how much more (or less) often the user
  clicked ads of that value than their ads overall, ``log(((c + m·ctr) / (i + m)) / ctr)`` with ``i``
  impressions and ``c`` clicks of the value, ``ctr`` the profile's smoothed rate and ``m`` =
  :data:`LIFT_PRIOR_IMPRESSIONS` (0 without evidence: a value never shown);
- ``declared_interest``: 1 when the ad's category (or a ``brand:``/``price:`` tag, its brand or price band) is one
  of the user's declared interests, the literal match targeting makes.

Without consent to behavioural targeting a user has no interests here, declared or behavioural (empty slots, zero
crosses), as targeting gives them none.

The position is not a field: the models learn it as a separate shallow term (PAL, Guo et al., RecSys 2019), and
serving asks for :data:`REFERENCE_POSITION`.

Hashing: ``"field=value"`` → BLAKE2b → a bucket in ``[1, 2**hash_bits)``; bucket 0 is padding (an empty slot of
a multi-valued field). A missing single value is the value ``?``, which has a bucket (and a weight) of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b

import numpy as np
import numpy.typing as npt

from adrec.data.profile import Behaviour, InterestStats, price_band
from adrec.data.schema import Ad, Campaign, User
from adrec.exceptions import ValidationError

__all__ = [
    "DENSE",
    "FIELDS",
    "REFERENCE_POSITION",
    "AdBlock",
    "Examples",
    "FeatureSpec",
    "HashedSpec",
    "UserBlock",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

USER_FIELDS: tuple[tuple[str, int], ...] = (
    ("user", 1),
    ("age_band", 1),
    ("gender", 1),
    ("region", 1),
    ("city_tier", 1),
    ("device", 1),
    ("language", 1),
    ("interests", 5),
    ("top_category", 3),
    ("top_brand", 3),
    ("top_price", 2),
)
AD_FIELDS: tuple[tuple[str, int], ...] = (
    ("ad", 1),
    ("campaign", 1),
    ("advertiser", 1),
    ("category", 1),
    ("brand", 1),
    ("price_band", 1),
    ("pricing_model", 1),
)
CONTEXT_FIELDS: tuple[tuple[str, int], ...] = (("hour", 1), ("weekday", 1), ("placement", 1))
FIELDS: tuple[tuple[str, int], ...] = USER_FIELDS + AD_FIELDS + CONTEXT_FIELDS
"""Every categorical field with its number of slots, in the order of the columns of :attr:`Examples.ids`."""

USER_DENSE = ("log_impressions", "ctr_logit", "has_behaviour")
CROSS_DENSE = (
    "affinity_category",
    "affinity_brand",
    "affinity_price",
    "click_lift_category",
    "click_lift_brand",
    "click_lift_price",
    "declared_interest",
)
DENSE: tuple[str, ...] = USER_DENSE + CROSS_DENSE
"""The dense features, in the order of the columns of :attr:`Examples.dense`."""

_DIMENSIONS = ("category", "brand", "price")
"""The profile's interest dimensions the crosses compare with the ad's category, brand and price band."""

REFERENCE_POSITION = 1
"""The position serving scores every candidate at: pCTR means the click chance in the top slot."""

MISSING = "?"

LIFT_PRIOR_IMPRESSIONS = 20.0
"""Impressions' worth of the user's overall click rate a value's click lift is shrunk towards."""

_TOP = {"top_category": "category", "top_brand": "brand", "top_price": "price"}


@lru_cache(maxsize=1 << 17)
def _hash64(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little")


def _slots(fields: Sequence[tuple[str, int]]) -> int:
    return sum(n for _, n in fields)


@dataclass(frozen=True)
class UserBlock:
    """Encoded users: ``ids (n, user slots)``, ``dense (n, 3)``, and what the crosses compare with the ads: per
    dimension, sorted keys ``row << 32 | value code`` with their ``(k, 2)`` affinity shares and click lifts; and the
    sorted keys of the users' declared interests."""

    ids: IntArray
    dense: FloatArray
    shares: tuple[tuple[IntArray, FloatArray], ...]
    declared: IntArray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class AdBlock:
    """Encoded ads: ``ids (n, ad slots)`` and the value codes of their category, brand and price band
    ``(n, 3)`` (-1 when unknown) for the crosses."""

    ids: IntArray
    codes: IntArray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Examples:
    """Rows ready for a click model.

    ids : (n, n_slots) int64 — hashed buckets, 0 = empty slot; columns follow :data:`FIELDS`
    dense : (n, len(DENSE)) float32
    position : (n,) int64 — 1-based slot
    label : (n,) float32 or None — 1 clicked, 0 not
    """

    ids: IntArray
    dense: FloatArray
    position: IntArray
    label: FloatArray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.dense) != n or len(self.position) != n or (self.label is not None and len(self.label) != n):
            raise ValidationError("examples", "ids, dense, position and label must have the same length")
        if n and int(self.position.min()) < 1:
            raise ValidationError("position", f"positions are 1-based; got {int(self.position.min())}")
        if self.label is not None and n and not np.isin(self.label, (0.0, 1.0)).all():
            bad = int(np.flatnonzero(~np.isin(self.label, (0.0, 1.0)))[0])
            raise ValidationError("label", f"must be 0 or 1; row {bad} has {self.label[bad]!r}")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: npt.NDArray[np.intp] | slice) -> Examples:
        label = None if self.label is None else self.label[rows]
        return Examples(self.ids[rows], self.dense[rows], self.position[rows], label)

    @staticmethod
    def concat(parts: Sequence[Examples]) -> Examples:
        """The rows of ``parts`` one after the other (labelled only if all are)."""
        labels = [p.label for p in parts if p.label is not None]
        label = np.concatenate(labels) if len(labels) == len(parts) else None
        return Examples(
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.dense for p in parts]),
            np.concatenate([p.position for p in parts]),
            label,
        )

    @property
    def labels(self) -> FloatArray:
        """The labels; a clear error where there are none."""
        if self.label is None:
            raise ValidationError("examples", "have no labels (clicked or not) to learn from or score against")
        return self.label


class HashedSpec:
    """What a click model needs of a feature spec: its hashed fields (name and number of slots, the columns of
    :attr:`Examples.ids`), its dense features (the columns of :attr:`Examples.dense`) and the hashing.

    :class:`FeatureSpec` is adrec's (users, ads and requests, what serving scores); a
    :class:`~adrec.models.ctr.tabular.TabularSpec` names the columns of an outside CTR log (Criteo, Avazu), for
    benchmarking the models on it.

    Parameters
    ----------
    hash_bits
        Buckets of the hashing trick: ``2**hash_bits`` (bucket 0 is padding).
    """

    kind: str = ""
    field_slots: tuple[tuple[str, int], ...] = ()
    dense_names: tuple[str, ...] = ()

    def __init__(self, hash_bits: int = 18) -> None:
        if not 8 <= hash_bits <= 30:
            raise ValidationError("hash_bits", f"must be in [8, 30] (got {hash_bits})")
        self.hash_bits = hash_bits
        self.n_buckets = 1 << hash_bits

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hash_bits={self.hash_bits})"

    @property
    def slot_fields(self) -> tuple[str, ...]:
        """The field of each column of :attr:`Examples.ids`."""
        return tuple(name for name, n in self.field_slots for _ in range(n))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.field_slots)

    def bucket(self, field: str, value: object) -> int:
        """The bucket of ``field=value`` (``None`` or ``""`` is the missing value ``?``)."""
        text = MISSING if value is None or value == "" else str(value)
        return 1 + _hash64(f"{field}={text}") % (self.n_buckets - 1)

    def unknown_bucket(self, field: str) -> int:
        """Where a value the model never learned about goes (:meth:`~adrec.models.ctr.ClickModel.fit` maps rare
        values here, so it has a trained weight)."""
        return 1 + _hash64(f"{field}\x00unknown") % (self.n_buckets - 1)

    def describe(self) -> dict[str, object]:
        """What a saved model records of its spec (:func:`~adrec.models.ctr.load_click_model` rebuilds it)."""
        return {
            "spec": self.kind,
            "hash_bits": self.hash_bits,
            "fields": [list(f) for f in self.field_slots],
            "dense": list(self.dense_names),
        }


class FeatureSpec(HashedSpec):
    """Encodes users, ads and contexts into the hashed and dense features of :data:`FIELDS` and :data:`DENSE`.

    Parameters
    ----------
    hash_bits
        Buckets of the hashing trick: ``2**hash_bits`` (bucket 0 is padding).
    """

    kind = "adrec"
    field_slots = FIELDS
    dense_names = DENSE

    def __init__(self, hash_bits: int = 18) -> None:
        super().__init__(hash_bits)
        # Every request needs its hour's and weekday's buckets: hashed once here.
        self._hours = np.array([self.bucket("hour", h) for h in range(24)], dtype=np.int64)
        self._weekdays = np.array([self.bucket("weekday", d) for d in range(7)], dtype=np.int64)

    # -- the parts -----------------------------------------------------------------------------------------------
    def users(self, users: Sequence[User], behaviours: Sequence[Behaviour | None]) -> UserBlock:
        """Encode users and their behaviour. Without consent a user's interests, declared or behavioural, are
        ignored, as targeting ignores them (:func:`~adrec.data.targeting.targeting_interests`)."""
        if len(users) != len(behaviours):
            raise ValidationError("behaviours", f"{len(behaviours)} for {len(users)} users")
        ids = np.zeros((len(users), _slots(USER_FIELDS)), dtype=np.int64)
        dense = np.zeros((len(users), len(USER_DENSE)), dtype=np.float32)
        keys: list[list[int]] = [[] for _ in _DIMENSIONS]
        values: list[list[tuple[float, float]]] = [[] for _ in _DIMENSIONS]
        declared: list[int] = []
        b = self.bucket
        for row, (user, behaviour) in enumerate(zip(users, behaviours, strict=True)):
            if not user.consent:
                behaviour = None
            col = 0
            for name, value in (
                ("user", user.user_id),
                ("age_band", user.age_band),
                ("gender", user.gender.value),
                ("region", user.region),
                ("city_tier", user.city_tier),
                ("device", user.device.value),
                ("language", user.language),
            ):
                ids[row, col] = b(name, value)
                col += 1
            if user.consent:  # no interest personalisation without consent, declared or behavioural (as targeting)
                for j, tag in enumerate(sorted(user.interests)[:5]):
                    ids[row, col + j] = b("interests", tag)
                declared.extend(row << 32 | _declared_code(tag) for tag in user.interests)
            col += 5
            if behaviour is not None:
                # Each dimension's shares once (highest first, as top_interests ranks them): the top slots and the
                # crosses both read them.
                affinities = {dimension: behaviour.affinities(dimension) for dimension in _DIMENSIONS}
                for name, n in (("top_category", 3), ("top_brand", 3), ("top_price", 2)):
                    for j, value in enumerate(list(affinities[_TOP[name]])[:n]):
                        ids[row, col + j] = b(name, value)
                    col += n
                ctr = min(max(behaviour.ctr, 1e-6), 1 - 1e-6)
                dense[row] = (math.log1p(behaviour.impressions), math.log(ctr / (1 - ctr)), 1.0)
                for d, dimension in enumerate(_DIMENSIONS):
                    stats = behaviour.interests.get(dimension, {})
                    for value, share in affinities[dimension].items():
                        keys[d].append(row << 32 | _code(dimension, value))
                        values[d].append((share, _click_lift(stats[value], ctr)))
        shares = []
        for d in range(len(_DIMENSIONS)):
            k = np.array(keys[d], dtype=np.int64)
            order = np.argsort(k, kind="stable")
            shares.append((k[order], np.array(values[d], dtype=np.float32).reshape(-1, 2)[order]))
        return UserBlock(ids, dense, tuple(shares), np.unique(np.array(declared, dtype=np.int64)))

    def ads(self, ads: Sequence[Ad], campaigns: Mapping[str, Campaign]) -> AdBlock:
        """Encode ads with their campaigns (``campaign_id`` → campaign; an ad whose campaign is missing gets the
        missing value for its advertiser and pricing model)."""
        ids = np.zeros((len(ads), _slots(AD_FIELDS)), dtype=np.int64)
        codes = np.full((len(ads), len(_DIMENSIONS)), -1, dtype=np.int64)
        b = self.bucket
        for row, ad in enumerate(ads):
            campaign = campaigns.get(ad.campaign_id)
            band = price_band(ad.price)
            ids[row] = (
                b("ad", ad.ad_id),
                b("campaign", ad.campaign_id),
                b("advertiser", campaign.advertiser_id if campaign is not None else None),
                b("category", ad.category),
                b("brand", ad.brand),
                b("price_band", band),
                b("pricing_model", campaign.pricing_model.value if campaign is not None else None),
            )
            for d, value in enumerate((ad.category, ad.brand, band)):
                if value:
                    codes[row, d] = _code(_DIMENSIONS[d], value)
        return AdBlock(ids, codes)

    def context(self, ts: npt.ArrayLike, placement: Sequence[str | None] | str | None) -> IntArray:
        """Encode request times (seconds since the epoch; hour and weekday in UTC) and placements:
        ``(n, 3)``. A single placement applies to every time."""
        t = np.atleast_1d(np.asarray(ts, dtype=np.float64))
        places = None if placement is None or isinstance(placement, str) else list(placement)
        if places is not None and len(places) != len(t):
            raise ValidationError("placement", f"{len(places)} placements for {len(t)} times")
        seconds = np.floor(t).astype(np.int64)
        hour = (seconds // 3600) % 24
        weekday = (seconds // 86_400 + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
        out = np.empty((len(t), len(CONTEXT_FIELDS)), dtype=np.int64)
        out[:, 0] = self._hours[hour]
        out[:, 1] = self._weekdays[weekday]
        if places is None:  # a request's context: one placement
            out[:, 2] = self.bucket("placement", placement)
            return out
        names, which = np.unique(np.array(["" if p is None else p for p in places], dtype=str), return_inverse=True)
        out[:, 2] = np.array([self.bucket("placement", p) for p in names.tolist()], dtype=np.int64)[which]
        return out

    def assemble(
        self,
        users: UserBlock,
        user_rows: npt.ArrayLike,
        ads: AdBlock,
        ad_rows: npt.ArrayLike,
        context: IntArray,
        position: npt.ArrayLike,
        label: npt.ArrayLike | None = None,
    ) -> Examples:
        """Rows ``(users[user_rows[i]], ads[ad_rows[i]], context[i], position[i])``; a single context or position
        row applies to every row."""
        u = np.asarray(user_rows, dtype=np.int64)
        a = np.asarray(ad_rows, dtype=np.int64)
        u, a = np.broadcast_arrays(u, a)
        n = len(u)
        ctx = np.broadcast_to(context, (n, context.shape[1])) if len(context) == 1 else context
        if len(ctx) != n:
            raise ValidationError("context", f"{len(ctx)} rows for {n} examples")
        ids = np.concatenate([users.ids[u], ads.ids[a], ctx], axis=1)
        cross = np.zeros((n, len(CROSS_DENSE)), dtype=np.float32)
        dims = len(_DIMENSIONS)
        for d, (keys, values) in enumerate(users.shares):
            hit, at = _lookup(keys, u, ads.codes[a, d])
            cross[hit, d] = values[at[hit], 0]
            cross[hit, dims + d] = values[at[hit], 1]
        for d in range(dims):
            hit, _ = _lookup(users.declared, u, ads.codes[a, d])
            cross[hit, 2 * dims] = 1.0
        dense = np.concatenate([users.dense[u], cross], axis=1)
        pos = np.broadcast_to(np.asarray(position, dtype=np.int64), (n,)).copy()
        y = None if label is None else np.asarray(label, dtype=np.float32)
        return Examples(ids, dense, pos, y)


def _lookup(keys: IntArray, rows: IntArray, codes: IntArray) -> tuple[npt.NDArray[np.bool_], IntArray]:
    """Where each ``rows[i] << 32 | codes[i]`` is in the sorted ``keys`` (never for a code of -1, unknown), and at
    which index."""
    wanted = rows << 32 | np.maximum(codes, 0)
    if len(keys) == 0:
        return np.zeros(len(wanted), dtype=bool), np.zeros(len(wanted), dtype=np.int64)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return (keys[at] == wanted) & (codes >= 0), at


def _click_lift(stats: InterestStats, ctr: float) -> float:
    """``log(((clicks + m·ctr) / (impressions + m)) / ctr)``: the user's click rate on a value against their
    overall ``ctr``, shrunk towards it by ``m`` = :data:`LIFT_PRIOR_IMPRESSIONS` impressions."""
    m = LIFT_PRIOR_IMPRESSIONS
    rate = (stats.clicks + m * ctr) / (stats.impressions + m)
    return math.log(min(max(rate, 1e-6), 1.0) / ctr)


def _declared_code(tag: str) -> int:
    """The value code a declared interest tag names: ``brand:X`` a brand, ``price:X`` a price band, else a
    category (spelt as targeting matches them, :func:`~adrec.data.targeting.targeting_interests`)."""
    dimension, _, value = tag.partition(":")
    if value and dimension in ("brand", "price"):
        return _code(dimension, value)
    return _code("category", tag)


def _code(dimension: str, value: str) -> int:
    """A 32-bit code of an interest value, shared by the user's shares and the ad's value (for the crosses)."""
    return _hash64(f"{dimension}:{value}") & 0xFFFFFFFF
