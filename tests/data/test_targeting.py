"""Every reading of targeting agrees with the one definition, :func:`adrec.data.targeting.matches`.

The property test draws targetings (every field), users (known or not, with or without consent, declared
interests and behaviour) and request contexts, and checks the server's vectorised eligibility, the explanation of a
served ad, the segment a targeting resolves to in the store, and the vectorised pairs the simulator evaluates.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adrec.data.schema import Ad, Campaign, Device, Gender, Targeting, User
from adrec.data.targeting import (
    TOP_CATEGORIES,
    Context,
    Facts,
    TargetingTables,
    clock,
    clock_array,
    matches,
    targeting_interests,
)
from adrec.profiles import Profile, Segment
from adrec.profiles.profile import Behaviour, InterestStats
from adrec.serving.catalog import CatalogSnapshot, RequestContext
from adrec.simulate import SimulationConfig
from adrec.simulate.market import Market
from adrec.simulate.records import campaign_records, user_records
from adrec.store import Store, open_store

CATEGORIES = ("shoes", "travel", "games", "food", "pets", "tea", "kites", "yarn")  # more than TOP_CATEGORIES
REGIONS = ("north", "south", "east")
T_MIN, T_MAX = 1_700_000_000, 1_900_000_000  # whole seconds (see test_clock_agrees_with_datetime)


RULES = ("age", "genders", "regions", "city_tiers", "devices", "include", "exclude", "hours", "days_of_week")


def _some(draw: st.DrawFn, values: tuple[object, ...], max_size: int | None = None) -> frozenset:  # type: ignore[type-arg]
    return draw(st.frozensets(st.sampled_from(values), min_size=1, max_size=max_size))


@st.composite
def targetings(draw: st.DrawFn) -> Targeting:
    """A few rules (so that users often meet them all), each field as likely as any other."""
    ruled = draw(st.sets(st.sampled_from(RULES), max_size=3))
    fields: dict[str, object] = {}
    if "age" in ruled:
        fields["age_min"] = draw(st.one_of(st.none(), st.integers(0, 120)))
        fields["age_max"] = draw(st.one_of(st.none(), st.integers(fields["age_min"] or 0, 120)))  # type: ignore[arg-type]
    for name, values in (
        ("genders", tuple(Gender)),
        ("regions", REGIONS),
        ("city_tiers", (1, 2, 3, 4, 5, 6)),
        ("devices", tuple(Device)),
        ("hours", tuple(range(24))),
        ("days_of_week", tuple(range(7))),
    ):
        if name in ruled:
            fields[name] = _some(draw, values)
    include: frozenset[str] = _some(draw, CATEGORIES, 3) if "include" in ruled else frozenset()
    rest = tuple(t for t in CATEGORIES if t not in include)
    if "exclude" in ruled:
        fields["interests_exclude"] = _some(draw, rest, 3)
    return Targeting(interests_include=include, **fields)


@st.composite
def people(draw: st.DrawFn) -> tuple[User, dict[str, float] | None]:
    """A user's declared record and their category scores (None: no behaviour profile)."""
    user = User(
        user_id="tbd",
        age=draw(st.one_of(st.none(), st.integers(0, 120))),
        gender=draw(st.sampled_from(Gender)),
        region=draw(st.sampled_from((None, "", "west", *REGIONS))),
        city_tier=draw(st.one_of(st.none(), st.integers(1, 6))),
        device=draw(st.sampled_from(Device)),
        interests=tuple(draw(st.frozensets(st.sampled_from(CATEGORIES), max_size=2))),
        consent=draw(st.booleans()),
    )
    if draw(st.booleans()):
        return user, None
    # Few distinct scores: ties (broken by name) and zero weights happen; often more categories than the top.
    scores = draw(st.tuples(*[st.sampled_from((None, 0.0, 0.5, 1.0, 2.0))] * len(CATEGORIES)))
    return user, {c: x for c, x in zip(CATEGORIES, scores, strict=True) if x is not None}


contexts = st.builds(
    Context,
    now=st.integers(T_MIN, T_MAX).map(float),
    device=st.one_of(st.none(), st.sampled_from(Device)),
    region=st.sampled_from((None, "west", *REGIONS)),
)


def _behaviour(scores: dict[str, float]) -> Behaviour:
    # A brand spelt like a category must not count: targeting reads the category dimension only.
    interests = {"category": scores, "brand": {"shoes": 9.0}}
    return Behaviour(
        ref_ts=1000.0,
        first_ts=900.0,
        last_ts=1000.0,
        impressions=7,
        clicks=2,
        conversions=1,
        decayed=(6.5, 1.5, 0.25),
        ctr=0.03,
        hours=(0.0,) * 24,
        interests={d: {v: InterestStats(s, 3, 1, 0, 999.0) for v, s in vs.items()} for d, vs in interests.items()},
    )


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    """One in-memory store for every example; each example's users have their own id prefix."""
    with open_store("sqlite://") as s:
        yield s


# -- independent readings the definition is checked against ------------------------------------------------------
def literal_interests(user: User, scores: dict[str, float] | None) -> frozenset[str]:
    """Declared interests and the top categories by share (ties by name, zero weight excluded); none without
    consent."""
    if not user.consent:
        return frozenset()
    total = math.fsum(scores.values()) if scores else 0.0
    ranked = sorted((v for v, s in (scores or {}).items() if s > 0), key=lambda v: (-scores[v] / total, v))  # type: ignore[index]
    return frozenset(user.interests) | frozenset(ranked[:TOP_CATEGORIES])


def literal_open_at(t: Targeting, now: float) -> bool:
    """The hours and days rules, read with :mod:`datetime`."""
    utc = datetime.fromtimestamp(now, UTC)
    return (not t.hours or utc.hour in t.hours) and (not t.days_of_week or utc.weekday() in t.days_of_week)


def literal_matches(t: Targeting, user: User | None, interests: frozenset[str], ctx: Context) -> bool:
    """The rules of one targeting, read literally."""
    age = user.age if user else None
    age_max = 120 if t.age_max is None else t.age_max
    device = ctx.device or (user.device if user else Device.UNKNOWN)
    region = ctx.region or (user.region if user else None)
    return (
        ((t.age_min is None and t.age_max is None) or (age is not None and (t.age_min or 0) <= age <= age_max))
        and (not t.genders or (user.gender if user else Gender.UNKNOWN) in t.genders)
        and (not t.devices or device in t.devices)
        and (not t.regions or region in t.regions)
        and (not t.city_tiers or (user.city_tier if user else None) in t.city_tiers)
        and (not t.interests_include or bool(t.interests_include & interests))
        and not t.interests_exclude & interests
        and literal_open_at(t, ctx.now)
    )


_LINE = re.compile(r"^(?P<rule>.+?)(?P<values> \[.*?\])?: (?P<fact>.*)$")


def check_explanation(
    t: Targeting, lines: list[str], user: User | None, interests: frozenset[str], ctx: Context
) -> None:
    """Every targeting rule is listed once, and what each line says about the request is true and meets it."""
    utc = datetime.fromtimestamp(ctx.now, UTC)
    device = (ctx.device or (user.device if user else Device.UNKNOWN)).value
    region = ctx.region or (user.region if user else None)
    listed = []
    for line in lines:
        if line == "open targeting (no rules)":
            listed.append("open")
            continue
        m = _LINE.match(line)
        assert m is not None, line
        rule, fact = m["rule"], m["fact"]
        values = ast.literal_eval(m["values"].strip()) if m["values"] else None
        listed.append(rule.split(" ")[0] if not rule.startswith("age") else "age")
        if rule.startswith("age "):
            lo, _, hi = rule[4:].partition("-")
            assert (int(lo), None if hi == "any" else int(hi)) == (t.age_min or 0, t.age_max), line
            assert user is not None and fact == f"user is {user.age}", line
            assert user.age is not None and int(lo) <= user.age <= (120 if hi == "any" else int(hi)), line
        elif rule == "gender in":
            gender = (user.gender if user else Gender.UNKNOWN).value
            assert set(values) == {g.value for g in t.genders} and fact == f"user is {gender}" and gender in values
        elif rule == "device in":
            assert set(values) == {d.value for d in t.devices} and fact == device and device in values, line
        elif rule == "region in":
            assert set(values) == t.regions and fact == str(region) and region in values, line
        elif rule == "city tier in":
            tier = user.city_tier if user else None
            assert set(values) == t.city_tiers and fact == str(tier) and tier in values, line
        elif rule == "interests include":
            matched = ast.literal_eval(fact.removeprefix("matched "))
            assert set(values) == t.interests_include and matched, line
            assert set(matched) == t.interests_include & interests, line
        elif rule == "interests exclude":
            assert set(values) == t.interests_exclude and fact == "none matched", line
            assert not t.interests_exclude & interests, line
        elif rule == "hours":
            assert set(values) == t.hours and fact == f"now {utc.hour} UTC" and utc.hour in values, line
        elif rule == "days":
            assert set(values) == t.days_of_week and fact == f"today {utc.weekday()}" and utc.weekday() in values
        else:
            raise AssertionError(f"not a targeting rule: {line!r}")
    fields = [
        ("age", t.age_min is not None or t.age_max is not None),
        ("gender", t.genders),
        ("device", t.devices),
        ("region", t.regions),
        ("city", t.city_tiers),
        ("interests", t.interests_include),
        ("interests", t.interests_exclude),
        ("hours", t.hours),
        ("days", t.days_of_week),
    ]
    want = [name for name, rule in fields if rule] or ["open"]
    assert listed == want, (lines, t)


# -- the property ------------------------------------------------------------------------------------------------
_examples = itertools.count()


@settings(max_examples=80, deadline=None)
@given(
    targeting_list=st.lists(targetings(), min_size=1, max_size=6),
    population=st.lists(people(), min_size=1, max_size=4),
    context_list=st.lists(contexts, min_size=1, max_size=3),
)
def test_every_reading_of_targeting_agrees_with_the_definition(
    store: Store,
    targeting_list: list[Targeting],
    population: list[tuple[User, dict[str, float] | None]],
    context_list: list[Context],
) -> None:
    prefix = f"x{next(_examples)}-"
    users = [u.model_copy(update={"user_id": f"{prefix}{i}"}) for i, (u, _) in enumerate(population)]
    store.upsert_users(users)
    # Behaviour is stored whatever the consent: consent withdrawn after the last profile build.
    store.upsert_profiles([Profile(u, _behaviour(s)) for u, (_, s) in zip(users, population, strict=True) if s])
    interests: dict[str | None, frozenset[str]] = {None: frozenset()}
    for u, (_, scores) in zip(users, population, strict=True):
        profile = store.get_profile(u.user_id)  # what the server reads
        b = profile.behaviour
        interests[u.user_id] = targeting_interests(profile.user, b.affinities("category") if b else None)
        assert interests[u.user_id] == literal_interests(u, scores)

    campaigns = [
        Campaign(campaign_id=f"c{j}", advertiser_id="adv", name="c", bid=1.0, targeting=t)
        for j, t in enumerate(targeting_list)
    ]
    cat = CatalogSnapshot.build(campaigns, [Ad(ad_id=f"a{j}", campaign_id=f"c{j}") for j in range(len(campaigns))])
    tables = TargetingTables.build(targeting_list)  # what the simulator evaluates pairs with
    segments = [set(store.resolve_segment(Segment.from_targeting(t))) for t in targeting_list]
    requesters: list[User | None] = [None, *users]
    # The store reads every user's targeting interests as the server does (declared, the cut at the top
    # categories, ties), one tag and two at a time.
    for tags in [{c} for c in CATEGORIES] + [set(CATEGORIES[i : i + 2]) for i in range(0, len(CATEGORIES), 2)]:
        having = {u.user_id for u in users if tags & interests[u.user_id]}
        resolved = store.resolve_segment(Segment.from_targeting(Targeting(interests_include=tags)))
        assert {r for r in resolved if r.startswith(prefix)} == having, tags
        resolved = store.resolve_segment(Segment.from_targeting(Targeting(interests_exclude=tags)))
        assert {r for r in resolved if r.startswith(prefix)} == {u.user_id for u in users} - having, tags

    for ctx in context_list:
        request = RequestContext(ctx.now, device=ctx.device, region=ctx.region)
        timed = cat.timed_campaigns(ctx.now, cat.spend_array({}))
        facts = [Facts.of(u, interests[u.user_id if u else None], ctx) for u in requesters]
        hour, day = clock_array(np.full(len(requesters), ctx.now))
        codes = tables.encode(facts)
        for r, user in enumerate(requesters):
            tags = interests[user.user_id if user else None]
            want = np.array([matches(t, user, tags, ctx) for t in targeting_list])
            literal = np.array([literal_matches(t, user, tags, ctx) for t in targeting_list])
            assert (want == literal).all(), (user, ctx)
            served = cat.eligible_campaigns(user, tags, request, timed)
            assert (served == want).all(), (user, ctx, served, want)
            assert (tables.admits(facts[r]) == want).all()
            for j in np.flatnonzero(want):
                check_explanation(targeting_list[j], cat.explain(int(j), user, tags, request), user, tags, ctx)
            at = np.arange(len(targeting_list))
            pairs = tables.pairs(at, codes.take(np.full(len(at), r)), hour[r].repeat(len(at)), day[r].repeat(len(at)))
            assert (pairs == want).all(), (user, ctx)
            if user is None:
                continue
            # A segment is an audience: the users served by a request at a time the hours and days admit, with
            # the users' own devices and regions.
            reference = Context(ctx.now)
            in_segment = [
                user.user_id in s and literal_open_at(t, ctx.now) for s, t in zip(segments, targeting_list, strict=True)
            ]
            expected = [matches(t, user, tags, reference) for t in targeting_list]
            assert in_segment == expected, (user, tags, ctx)


# -- the clock and the simulator ---------------------------------------------------------------------------------
@given(st.integers(-(10**10), 10**10))
def test_clock_agrees_with_datetime(now: int) -> None:
    utc = datetime.fromtimestamp(now, UTC)
    assert clock(float(now)) == (utc.hour, utc.weekday())


@given(st.lists(st.floats(-1e11, 1e11), min_size=1, max_size=20))
def test_clock_array_is_clock_elementwise(ts: list[float]) -> None:
    hour, day = clock_array(ts)
    assert list(zip(hour.tolist(), day.tolist(), strict=True)) == [clock(t) for t in ts]


def test_the_simulator_targets_as_the_definition_on_its_records() -> None:
    market = Market.generate(
        SimulationConfig(seed=5, n_users=300, n_advertisers=8, n_campaigns=40, n_ads=80, n_impressions=1_000)
    )
    users = list(user_records(market))
    campaigns = list(campaign_records(market))
    assert sum(not c.targeting.is_open() for c in campaigns) > 10
    rng = np.random.default_rng(0)
    u = rng.integers(market.n_users, size=3000)
    a = rng.integers(market.n_ads, size=3000)
    ts = rng.uniform(market.config.start_ts - 40 * 86_400, market.config.end_ts, size=3000)
    got = market.eligible(u, a, ts)
    want = []
    for ui, ai, t in zip(u.tolist(), a.tolist(), ts.tolist(), strict=True):
        c = campaigns[int(market.ad_campaign[ai])]
        user = users[ui]
        start = c.start.timestamp() if c.start else -math.inf
        end = c.end.timestamp() if c.end else math.inf
        want.append(matches(c.targeting, user, targeting_interests(user), Context(t)) and start <= t < end)
    assert (got == np.array(want)).all()
    assert 0.1 < got.mean() < 0.95  # both outcomes are common: the comparison means something
    without_time = market.eligible(u, a)
    assert (without_time >= got).all()
