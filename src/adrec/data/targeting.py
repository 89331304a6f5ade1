"""The one definition of targeting: which requests a campaign's :class:`~adrec.data.schema.Targeting` admits.

A targeting is a conjunction of rules, one per non-empty field (an empty field restricts nothing). Each rule reads
one fact of the request (:class:`Facts`, built by :meth:`Facts.of` from the user, their targeting interests and the
request context):

=================  ===============================================  ==================================================
rule               met when                                         the fact
=================  ===============================================  ==================================================
age_min, age_max   ``age_min (0) <= age <= age_max (120)``          declared age; an unknown age meets no age rule
genders            gender is listed                                 declared gender (``unknown`` for an unknown user)
devices            device is listed                                 the request's device, else the declared one, else
                                                                    ``unknown``
regions            region is listed                                 the request's region, else the declared one; an
                                                                    unknown region meets no region rule
city_tiers         city tier is listed                              declared tier; an unknown tier meets no tier rule
interests_include  one of the user's interests is listed            :func:`targeting_interests`
interests_exclude  none of the user's interests is listed           :func:`targeting_interests` (a user without
                                                                    interests is never excluded)
hours              the request's hour (0-23, UTC) is listed         :func:`clock`
days_of_week       the request's day (0 = Monday, UTC) is listed    :func:`clock`
=================  ===============================================  ==================================================

:func:`matches` is the predicate; every other reading of targeting derives from it or is tested against it
(``tests/data/test_targeting.py`` draws targetings, users and contexts with Hypothesis):

* :func:`rules` lists the same rules one by one, each able to say in words how a request met it (the explanation
  of a served ad);
* :class:`TargetingTables` evaluates many targetings at once, vectorised: per value of each fact, which targetings
  admit it. The server asks it about one request (:meth:`TargetingTables.audience`, :meth:`TargetingTables.at`),
  the simulator about many (user, campaign) pairs (:meth:`TargetingTables.pairs`);
* :meth:`adrec.profiles.Segment.from_targeting` is the targeting's audience as a segment, which the store resolves
  in SQL. Hours and days of week are context, not audience: the segment holds the users the targeting serves in a
  request at a time its hours and days admit that does not override the device or region.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from adrec.data.schema import Device, Gender, Targeting, User

__all__ = [
    "DEVICE_ROW",
    "GENDER_ROW",
    "TOP_CATEGORIES",
    "Context",
    "ContextLike",
    "FactColumns",
    "Facts",
    "Rule",
    "TargetingTables",
    "clock",
    "clock_array",
    "matches",
    "rules",
    "targeting_interests",
    "top_categories",
]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
WordArray = npt.NDArray[np.uint64]
CodeArray = npt.NDArray[np.integer[Any]]

MAX_AGE = 120
"""The largest :attr:`User.age`."""
MAX_CITY_TIER = 6
"""The largest :attr:`User.city_tier`."""
TOP_CATEGORIES = 5
"""How many of a user's behavioural categories (the highest affinity shares) targeting may match."""

GENDER_ROW: Mapping[Gender, int] = {g: i for i, g in enumerate(Gender)}
"""Row of each gender in :attr:`TargetingTables.gender` (and its code in :class:`FactColumns`)."""
DEVICE_ROW: Mapping[Device, int] = {d: i for i, d in enumerate(Device)}
"""Row of each device in :attr:`TargetingTables.device`."""

_DAY_S = 86_400.0
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday


# -- the facts of a request --------------------------------------------------------------------------------------
def clock(now: float) -> tuple[int, int]:
    """``(hour, day_of_week)`` of ``now`` (seconds since the epoch) in UTC; days count from 0 = Monday.

    >>> clock(0.0)  # 1970-01-01 00:00 UTC, a Thursday
    (0, 3)
    """
    days, seconds = divmod(now, _DAY_S)
    # min: a float remainder can round up to a whole day (divmod(-1e-20, 86400.0) leaves 86400.0).
    return min(int(seconds // 3600.0), 23), int((days + _EPOCH_WEEKDAY) % 7)


def clock_array(ts: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """:func:`clock` of every element of ``ts``: two int64 arrays of its shape."""
    days, seconds = np.divmod(np.asarray(ts, dtype=np.float64), _DAY_S)
    hour: IntArray = np.minimum(seconds // 3600.0, 23).astype(np.int64)
    day: IntArray = ((days + _EPOCH_WEEKDAY) % 7).astype(np.int64)
    return hour, day


def top_categories(affinities: Mapping[str, float], k: int = TOP_CATEGORIES) -> list[str]:
    """The ``k`` categories with the highest affinity share above 0, highest first (ties by name).

    ``affinities`` is ``category -> share``, as :meth:`adrec.profiles.Behaviour.affinities` returns it. A category
    with no weight is no interest, even when fewer than ``k`` have some.
    """
    ranked = sorted((item for item in affinities.items() if item[1] > 0), key=lambda item: (-item[1], item[0]))
    return [category for category, _ in ranked[:k]]


def targeting_interests(user: User | None, category_affinities: Mapping[str, float] | None = None) -> frozenset[str]:
    """The interest tags targeting matches for ``user``: none without consent to behavioural targeting, else their
    declared interests and their :data:`TOP_CATEGORIES` behavioural categories (:func:`top_categories` of
    ``category_affinities``; None when the user has no behaviour profile).

    Tags are matched literally: ``interests_include={"shoes"}`` matches a declared ``shoes`` or a top category
    ``shoes``; a ``brand:`` or ``price:`` tag matches only a declared interest spelt that way.
    """
    if user is None or not user.consent:
        return frozenset()
    behavioural = top_categories(category_affinities) if category_affinities else []
    return frozenset(user.interests).union(behavioural)


class ContextLike(Protocol):
    """What targeting reads of a request besides the user (:class:`Context`, the server's ``RequestContext``)."""

    @property
    def now(self) -> float: ...

    @property
    def device(self) -> Device | None: ...

    @property
    def region(self) -> str | None: ...


@dataclass(frozen=True)
class Context:
    """When a request is made, and the device and region it reports (None: the user's declared ones)."""

    now: float
    device: Device | None = None
    region: str | None = None


class Facts(NamedTuple):
    """What the rules read of one request (see the module docstring for where each fact comes from)."""

    age: int | None = None
    gender: Gender = Gender.UNKNOWN
    device: Device = Device.UNKNOWN
    region: str | None = None
    city_tier: int | None = None
    interests: frozenset[str] = frozenset()
    hour: int = 0
    day_of_week: int = 0

    @classmethod
    def of(cls, user: User | None, interests: Iterable[str], context: ContextLike) -> Facts:
        """The facts of a request by ``user`` (None: unknown) with ``interests`` (:func:`targeting_interests`)."""
        hour, day = clock(context.now)
        if user is None:
            device, region = context.device or Device.UNKNOWN, context.region or None
            return cls(None, Gender.UNKNOWN, device, region, None, frozenset(interests), hour, day)
        device, region = context.device or user.device, context.region or user.region
        return cls(user.age, user.gender, device, region, user.city_tier, frozenset(interests), hour, day)


# -- the rules ---------------------------------------------------------------------------------------------------
RuleKind = Literal["age", "gender", "device", "region", "city_tier", "include", "exclude", "hour", "day_of_week"]


@dataclass(frozen=True)
class Rule:
    """One rule of a targeting: the fact it reads (``kind``), the values that meet it and its text."""

    kind: RuleKind
    values: frozenset[Any] | range
    text: str

    def met(self, facts: Facts) -> bool:
        """Whether ``facts`` meet this rule."""
        if self.kind == "include":
            return not facts.interests.isdisjoint(self.values)
        if self.kind == "exclude":
            return facts.interests.isdisjoint(self.values)
        return getattr(facts, self.kind) in self.values

    def explain(self, facts: Facts) -> str:
        """The rule and how ``facts`` met it, in words (``"age 18-34: user is 29"``)."""
        kind = self.kind
        if kind == "include":
            return f"{self.text}: matched {sorted(facts.interests.intersection(self.values))}"
        if kind == "exclude":
            return f"{self.text}: none matched"
        if kind == "age":
            return f"{self.text}: user is {facts.age}"
        if kind == "gender":
            return f"{self.text}: user is {facts.gender.value}"
        if kind == "device":
            return f"{self.text}: {facts.device.value}"
        if kind == "hour":
            return f"{self.text}: now {facts.hour} UTC"
        if kind == "day_of_week":
            return f"{self.text}: today {facts.day_of_week}"
        return f"{self.text}: {getattr(facts, kind)}"


def rules(targeting: Targeting) -> list[Rule]:
    """The rules of ``targeting``, one per non-empty field, in the order of the module docstring's table."""
    t = targeting
    out: list[Rule] = []
    if t.age_min is not None or t.age_max is not None:
        lo, hi = t.age_min or 0, MAX_AGE if t.age_max is None else t.age_max
        text = f"age {lo}-{'any' if t.age_max is None else hi}"
        out.append(Rule("age", range(lo, hi + 1), text))
    if t.genders:
        out.append(Rule("gender", t.genders, f"gender in {sorted(g.value for g in t.genders)}"))
    if t.devices:
        out.append(Rule("device", t.devices, f"device in {sorted(d.value for d in t.devices)}"))
    if t.regions:
        out.append(Rule("region", t.regions, f"region in {sorted(t.regions)}"))
    if t.city_tiers:
        out.append(Rule("city_tier", t.city_tiers, f"city tier in {sorted(t.city_tiers)}"))
    if t.interests_include:
        out.append(Rule("include", t.interests_include, f"interests include {sorted(t.interests_include)}"))
    if t.interests_exclude:
        out.append(Rule("exclude", t.interests_exclude, f"interests exclude {sorted(t.interests_exclude)}"))
    if t.hours:
        out.append(Rule("hour", t.hours, f"hours {sorted(t.hours)}"))
    if t.days_of_week:
        out.append(Rule("day_of_week", t.days_of_week, f"days {sorted(t.days_of_week)}"))
    return out


def matches(targeting: Targeting, user: User | None, interests: Iterable[str], context: ContextLike) -> bool:
    """Whether ``targeting`` admits a request by ``user`` (None: unknown) in ``context``.

    Parameters
    ----------
    targeting
        The campaign's rules.
    user
        The user's declared record, None for a user the platform does not know.
    interests
        The user's targeting interests: :func:`targeting_interests` of the user and their behaviour.
    context
        The request's time and the device and region it reports (see :class:`Context`).
    """
    facts = Facts.of(user, interests, context)
    return all(rule.met(facts) for rule in rules(targeting))


# -- vectorised --------------------------------------------------------------------------------------------------
def _bits(values: Iterable[int]) -> int:
    out = 0
    for v in values:
        out |= 1 << int(v)
    return out


def _admitted(masks: IntArray, n_values: int) -> BoolArray:
    """``(n_values, n)``: row ``v`` says which targetings admit value ``v`` (an open targeting has mask 0)."""
    bits = np.left_shift(np.int64(1), np.arange(n_values, dtype=np.int64))[:, None]
    out: BoolArray = (masks == 0)[None, :] | ((masks[None, :] & bits) != 0)
    return out


def _by_tag(tags: Sequence[frozenset[str]], n: int) -> tuple[dict[str, BoolArray], BoolArray]:
    """Per tag, which targetings list it; and which list none (no restriction)."""
    by_tag: dict[str, BoolArray] = defaultdict(lambda: np.zeros(n, dtype=bool))
    for i, s in enumerate(tags):
        for tag in s:
            by_tag[tag][i] = True
    return dict(by_tag), np.array([not s for s in tags], dtype=bool)


@dataclass(frozen=True)
class FactColumns:
    """The facts of many requests, one element each, as the codes :meth:`TargetingTables.pairs` reads.

    Attributes
    ----------
    age : integer array
        Age in years, -1 when unknown.
    gender, device : integer arrays
        :data:`GENDER_ROW` and :data:`DEVICE_ROW` codes.
    city_tier : integer array
        City tier, 0 when unknown.
    region : integer array
        :meth:`TargetingTables.region_codes` of the region (-1: unknown, or named by no rule).
    interests : uint64 array, shape ``(..., W)``
        :meth:`TargetingTables.interest_words` of the targeting interests.
    """

    age: CodeArray
    gender: CodeArray
    device: CodeArray
    city_tier: CodeArray
    region: CodeArray
    interests: WordArray

    def take(self, index: npt.ArrayLike) -> FactColumns:
        """The facts at ``index`` (any shape; the interests keep their last axis)."""
        i = np.asarray(index, dtype=np.intp)
        return FactColumns(
            self.age[i], self.gender[i], self.device[i], self.city_tier[i], self.region[i], self.interests[i]
        )


@dataclass(frozen=True, eq=False)
class TargetingTables:
    """``n`` targetings as tables: per value of each fact, which targetings admit it (one row per value), so that
    the targeting of a request costs one gather and one AND per fact. Build with :meth:`build`.

    ``region``, ``include`` and ``exclude`` hold only the tags some rule names; any other region meets exactly the
    targetings without a region rule (``region_open``), any other interest changes nothing.
    """

    age: BoolArray
    """``(MAX_AGE + 2, n)``: row ``a`` for age ``a``; the last row (index -1) for an unknown age."""
    gender: BoolArray
    """``(len(Gender), n)``, rows by :data:`GENDER_ROW`."""
    device: BoolArray
    """``(len(Device), n)``, rows by :data:`DEVICE_ROW`."""
    city_tier: BoolArray
    """``(MAX_CITY_TIER + 1, n)``: row ``t`` for tier ``t``; row 0 for an unknown tier."""
    hour: BoolArray
    """``(24, n)``."""
    day_of_week: BoolArray
    """``(7, n)``."""
    region: dict[str, BoolArray]
    region_open: BoolArray
    include: dict[str, BoolArray]
    include_open: BoolArray
    exclude: dict[str, BoolArray]
    n: int

    @classmethod
    def build(cls, targetings: Sequence[Targeting]) -> TargetingTables:
        tg = list(targetings)
        n = len(tg)
        age_min = np.array([t.age_min or 0 for t in tg], dtype=np.int64)
        age_max = np.array([MAX_AGE if t.age_max is None else t.age_max for t in tg], dtype=np.int64)
        age_any = np.array([t.age_min is None and t.age_max is None for t in tg], dtype=bool)
        ages = np.arange(MAX_AGE + 1)[:, None]
        age = np.vstack([age_any | ((age_min <= ages) & (ages <= age_max)), age_any[None, :]])
        genders = np.array([_bits(GENDER_ROW[g] for g in t.genders) for t in tg], dtype=np.int64)
        devices = np.array([_bits(DEVICE_ROW[d] for d in t.devices) for t in tg], dtype=np.int64)
        # Bit t for tier t: no rule lists tier 0, so row 0 (unknown) meets only the targetings without a tier rule.
        tiers = np.array([_bits(t.city_tiers) for t in tg], dtype=np.int64)
        hours = np.array([_bits(t.hours) for t in tg], dtype=np.int64)
        days = np.array([_bits(t.days_of_week) for t in tg], dtype=np.int64)
        region, region_open = _by_tag([t.regions for t in tg], n)
        include, include_open = _by_tag([t.interests_include for t in tg], n)
        exclude, _ = _by_tag([t.interests_exclude for t in tg], n)
        return cls(
            age=age,
            gender=_admitted(genders, len(GENDER_ROW)),
            device=_admitted(devices, len(DEVICE_ROW)),
            city_tier=_admitted(tiers, MAX_CITY_TIER + 1),
            hour=_admitted(hours, 24),
            day_of_week=_admitted(days, 7),
            region={r: region_open | has for r, has in region.items()},
            region_open=region_open,
            include=include,
            include_open=include_open,
            exclude=exclude,
            n=n,
        )

    # -- one request against every targeting -----------------------------------------------------------------
    def at(self, hour: int, day_of_week: int) -> BoolArray:
        """``(n,)``: the targetings whose hour and day-of-week rules admit this time (see :func:`clock`)."""
        out: BoolArray = self.hour[hour] & self.day_of_week[day_of_week]
        return out

    def audience(self, facts: Facts) -> BoolArray:
        """``(n,)``: the targetings whose rules about the user (all but hours and days) admit ``facts``."""
        ok: BoolArray = self.age[facts.age if facts.age is not None else -1] & self.gender[GENDER_ROW[facts.gender]]
        ok &= self.device[DEVICE_ROW[facts.device]]
        ok &= self.city_tier[facts.city_tier or 0]
        ok &= self.region.get(facts.region, self.region_open) if facts.region is not None else self.region_open
        include_ok: BoolArray | None = None
        for tag in facts.interests:
            has = self.include.get(tag)
            if has is not None:
                if include_ok is None:
                    include_ok = self.include_open | has
                else:
                    include_ok |= has
            excluded = self.exclude.get(tag)
            if excluded is not None:
                ok &= ~excluded
        ok &= self.include_open if include_ok is None else include_ok
        return ok

    def admits(self, facts: Facts) -> BoolArray:
        """``(n,)``: :func:`matches` of every targeting and ``facts``."""
        return self.audience(facts) & self.at(facts.hour, facts.day_of_week)

    # -- many (request, targeting) pairs -----------------------------------------------------------------------
    @cached_property
    def has_time_rules(self) -> bool:
        """Whether some targeting has an hours or days-of-week rule (else :meth:`pairs` needs no times)."""
        return not (self.hour.all() and self.day_of_week.all())

    @cached_property
    def regions(self) -> tuple[str, ...]:
        """The regions some rule names, in the order of :meth:`region_codes`."""
        return tuple(sorted(self.region))

    @cached_property
    def _region_table(self) -> BoolArray:
        rows = [self.region[r] for r in self.regions]
        return np.vstack([*rows, self.region_open[None, :]]) if rows else self.region_open[None, :]

    def region_codes(self, regions: Iterable[str | None]) -> IntArray:
        """The :attr:`FactColumns.region` code of each region (-1 for None and for regions no rule names)."""
        code = {r: i for i, r in enumerate(self.regions)}
        return np.array([-1 if r is None else code.get(r, -1) for r in regions], dtype=np.int64)

    @cached_property
    def vocabulary(self) -> tuple[str, ...]:
        """The interest tags some rule names, bit ``i`` of :meth:`interest_words` standing for tag ``i``."""
        return tuple(sorted(set(self.include) | set(self.exclude)))

    def interest_words(self, tag_sets: Iterable[Iterable[str]]) -> WordArray:
        """``(m, W)`` uint64: each set of interests as a bit set over :attr:`vocabulary` (other tags dropped)."""
        code = {tag: i for i, tag in enumerate(self.vocabulary)}
        sets = list(tag_sets)
        n_words = (len(code) + 63) // 64
        out = np.zeros((len(sets), n_words), dtype=np.uint64)
        for row, tags in enumerate(sets):
            for tag in tags:
                i = code.get(tag)
                if i is not None:
                    out[row, i >> 6] |= np.uint64(1 << (i & 63))
        return out

    @cached_property
    def _interest_words(self) -> tuple[WordArray, WordArray]:
        tags: list[set[str]] = [set() for _ in range(self.n)]
        excluded: list[set[str]] = [set() for _ in range(self.n)]
        for table, sets in ((self.include, tags), (self.exclude, excluded)):
            for tag, has in table.items():
                for i in np.flatnonzero(has).tolist():
                    sets[i].add(tag)
        return self.interest_words(tags), self.interest_words(excluded)

    def encode(self, facts: Sequence[Facts]) -> FactColumns:
        """The codes of ``facts`` (their hours and days are not encoded: :meth:`pairs` takes times apart)."""
        return FactColumns(
            age=np.array([-1 if f.age is None else f.age for f in facts], dtype=np.int64),
            gender=np.array([GENDER_ROW[f.gender] for f in facts], dtype=np.int64),
            device=np.array([DEVICE_ROW[f.device] for f in facts], dtype=np.int64),
            city_tier=np.array([f.city_tier or 0 for f in facts], dtype=np.int64),
            region=self.region_codes(f.region for f in facts),
            interests=self.interest_words(f.interests for f in facts),
        )

    def pairs(
        self,
        index: npt.ArrayLike,
        facts: FactColumns,
        hour: npt.ArrayLike | None = None,
        day_of_week: npt.ArrayLike | None = None,
    ) -> BoolArray:
        """Whether targeting ``index[i]`` admits request ``i`` (the same shape as ``index`` and ``facts``).

        ``hour`` and ``day_of_week`` (see :func:`clock_array`) are the requests' times; None leaves the hour and
        day rules unchecked.
        """
        c = np.asarray(index, dtype=np.intp)
        ok: BoolArray = self.age[facts.age, c] & self.gender[facts.gender, c] & self.device[facts.device, c]
        ok &= self.city_tier[facts.city_tier, c]
        ok &= self._region_table[facts.region, c]
        include, exclude = self._interest_words
        words = facts.interests
        ok &= self.include_open[c] | (include[c] & words).any(axis=-1)
        ok &= ~(exclude[c] & words).any(axis=-1)
        if hour is not None:
            ok &= self.hour[np.asarray(hour, dtype=np.intp), c]
        if day_of_week is not None:
            ok &= self.day_of_week[np.asarray(day_of_week, dtype=np.intp), c]
        return ok
