"""The user profile: declared attributes (the :class:`~adrec.data.schema.User` record) plus behaviour derived
from events, and a slot for a model's user vector.

A record below the store, which keeps profiles, and the profile builder (:mod:`adrec.profiles`), which derives
them; both, and serving, share it.

Decay
-----
Every decayed quantity is a sum over the user's events ``e`` with weight ``w_e`` at time ``t_e`` (seconds),
valued at a reference time ``T`` stored next to it (:attr:`Behaviour.ref_ts`)::

    value(T) = Σ_e w_e · 2 ** (-(T - t_e) / half_life)

so an event counts half as much one half-life later. Moving a value to a later reference time ``T'`` multiplies
it by ``2 ** (-(T' - T) / half_life)``; adding new events to it is then exact (up to rounding), which is what
makes incremental updates equal to a rebuild. The builder uses the user's last event time as ``T``.

Affinities are *shares*: the decayed weight of one value of a dimension (a category, brand or price band) over the
decayed weight of every value of that dimension. A share does not depend on the reference time, so profiles with
different ``ref_ts`` compare directly.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from adrec.data.schema import User
from adrec.exceptions import ValidationError

__all__ = [
    "DIMENSIONS",
    "HOURS",
    "PRICE_BAND_EDGES",
    "Behaviour",
    "InterestStats",
    "Profile",
    "price_band",
]

DIMENSIONS: tuple[str, ...] = ("category", "brand", "price")
"""What an interest is about: the ad's ``category``, its ``brand`` and the band of its ``price``."""

PRICE_BAND_EDGES: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
"""Fixed price bands (currency units): ``0-10``, ``10-25``, ..., ``500-1000``, ``1000+``. Fixed rather than
quantiles so that a band means the same thing before and after the catalogue changes."""

HOURS = 24
"""Hours of the day in :attr:`Behaviour.hours`."""


def price_band(price: float | None) -> str | None:
    """The band label of ``price`` (lower edge inclusive), or None for an unknown price.

    >>> price_band(9.99), price_band(10.0), price_band(1500.0)
    ('0-10', '10-25', '1000+')
    """
    if price is None:
        return None
    i = bisect_right(PRICE_BAND_EDGES, price)
    lo = 0.0 if i == 0 else PRICE_BAND_EDGES[i - 1]
    if i == len(PRICE_BAND_EDGES):
        return f"{lo:g}+"
    return f"{lo:g}-{PRICE_BAND_EDGES[i]:g}"


class InterestStats(NamedTuple):
    """The evidence behind one interest: its decayed ``score`` at the profile's ``ref_ts`` and raw counts."""

    score: float
    impressions: int
    clicks: int
    conversions: int
    last_ts: float


@dataclass(frozen=True)
class Behaviour:
    """What a user's events say about them, with decayed values at ``ref_ts`` (see the module docstring).

    Attributes
    ----------
    ref_ts
        Reference time of every decayed value (seconds since the epoch).
    first_ts, last_ts
        Time of the first and the latest event.
    impressions, clicks, conversions
        Raw event counts (no decay).
    decayed
        ``(impressions, clicks, conversions)`` counts decayed to ``ref_ts``: recent frequency.
    ctr
        Click-through rate smoothed towards a prior (see :class:`~adrec.profiles.ProfileBuilder`).
    hours
        ``(24,)`` decayed weighted activity per hour of day (UTC).
    interests
        ``dimension -> value -> InterestStats`` for the dimensions in :data:`DIMENSIONS`.
    """

    ref_ts: float
    first_ts: float
    last_ts: float
    impressions: int
    clicks: int
    conversions: int
    decayed: tuple[float, float, float]
    ctr: float
    hours: tuple[float, ...]
    interests: Mapping[str, Mapping[str, InterestStats]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.hours) != HOURS:
            raise ValidationError("behaviour.hours", f"has {len(self.hours)} values; expected {HOURS}")
        unknown = set(self.interests) - set(DIMENSIONS)
        if unknown:
            raise ValidationError("behaviour.interests", f"unknown dimensions {sorted(unknown)}; use {DIMENSIONS}")

    def affinities(self, dimension: str = "category") -> dict[str, float]:
        """Share of the decayed weight per value of ``dimension``, highest first (ties by name)."""
        stats = self.interests.get(dimension, {})
        total = math.fsum(s.score for s in stats.values())
        if total <= 0:
            return {}
        pairs = sorted(((v, s.score / total) for v, s in stats.items()), key=lambda p: (-p[1], p[0]))
        return dict(pairs)

    def top_interests(self, dimension: str = "category", k: int = 5) -> list[tuple[str, float, InterestStats]]:
        """The ``k`` values of ``dimension`` with the highest affinity, each with the evidence behind it."""
        stats = self.interests.get(dimension, {})
        return [(v, share, stats[v]) for v, share in list(self.affinities(dimension).items())[:k]]

    def active_hours(self) -> list[float]:
        """``(24,)`` share of the decayed activity per UTC hour (zeros when there is none)."""
        total = math.fsum(self.hours)
        return [h / total if total > 0 else 0.0 for h in self.hours]


@dataclass(frozen=True)
class Profile:
    """A user's profile: declared attributes, behaviour (None without consent or events) and an embedding slot.

    ``embedding`` holds a trained model's user vector; it is behavioural data too, so it stays None for a user who
    has not consented to behavioural targeting.
    """

    user: User
    behaviour: Behaviour | None = None
    embedding: tuple[float, ...] | None = None
    updated_at: float | None = None

    def __post_init__(self) -> None:
        if self.embedding is not None and not all(math.isfinite(x) for x in self.embedding):
            raise ValidationError("profile.embedding", "must hold finite numbers only")

    @property
    def user_id(self) -> str:
        return self.user.user_id

    def with_embedding(self, vector: tuple[float, ...] | list[float] | None) -> Profile:
        """This profile with the model's user vector set (or cleared with None)."""
        return replace(self, embedding=None if vector is None else tuple(float(x) for x in vector))
