"""Segments resolve to the right users on every backend, and never include non-consenting users by interest."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from profile_helpers import T0, USERS, batch, seed_market

from adrec.data.schema import Device, EventType, Gender, Targeting, User
from adrec.exceptions import ValidationError
from adrec.profiles import Profile, ProfileBuilder, Segment, parse_interest, resolve
from adrec.profiles.profile import Behaviour, InterestStats
from adrec.simulate import SimulationConfig, simulate
from adrec.store import Store, open_store

IMP, CLK = EventType.IMPRESSION, EventType.CLICK


@pytest.fixture
def built(store: Store) -> Store:
    """ann: cosmetics (Glow, cheap); bob: shoes; cat (no consent) and dan: cosmetics too; dan's age unknown."""
    seed_market(store)
    rows = [
        ("ann", "cos1", CLK, T0),
        ("ann", "cos1", CLK, T0 + 1),
        ("ann", "shoe", IMP, T0),
        ("bob", "shoe", CLK, T0),
        ("bob", "cos2", IMP, T0),
        ("cat", "cos2", CLK, T0),
        ("dan", "cos2", CLK, T0),
    ]
    store.append_events(batch(rows))
    ProfileBuilder().rebuild(store)
    return store


def test_declared_and_interest_conditions(built: Store) -> None:
    women = Segment(genders={Gender.FEMALE})
    assert resolve(built, women) == ["ann", "cat", "dan"]  # declared-only: consent is not needed
    assert resolve(built, women.model_copy(update={"age_min": 25, "age_max": 34})) == ["ann", "cat"]
    assert resolve(built, Segment(city_tiers={2})) == ["bob"]
    assert resolve(built, Segment(regions={"es"}, devices={Device.UNKNOWN})) == ["ann", "cat", "dan"]
    assert resolve(built, Segment(devices={Device.MOBILE})) == []
    cosmetics = Segment(interests_include={"cosmetics"}, min_affinity=0.5)
    assert resolve(built, cosmetics) == ["ann", "dan"]  # bob's cosmetics share is 0.1 / 1.1
    assert resolve(built, cosmetics.model_copy(update={"min_affinity": 0.05})) == ["ann", "bob", "dan"]
    assert resolve(built, Segment(interests_include={"brand:Luxe"})) == ["dan"]
    assert resolve(built, Segment(interests_include={"brand:Luxe"}, min_affinity=0.09)) == ["bob", "dan"]
    assert resolve(built, Segment(interests_include={"price:10-25"})) == ["ann"]
    assert resolve(built, Segment(interests_include={"shoes", "brand:Glow"})) == ["ann", "bob"]
    assert resolve(built, Segment(genders={Gender.FEMALE}, interests_exclude={"brand:Luxe"})) == ["ann"]
    assert resolve(built, Segment(interests_include={"toys"})) == []


def test_interest_segments_never_include_users_without_consent(built: Store) -> None:
    assert built.get_profile("cat").behaviour is None
    # Even when behaviour is stored (consent withdrawn after the last build), interest conditions leave them out.
    built.upsert_users([USERS[0].model_copy(update={"consent": False})])
    assert built.get_profile("ann").behaviour is not None
    assert resolve(built, Segment(interests_include={"cosmetics"})) == ["dan"]
    assert resolve(built, Segment(interests_exclude={"toys"})) == ["bob", "dan"]
    assert "ann" in resolve(built, Segment(genders={Gender.FEMALE}))


def test_segment_validation_and_targeting() -> None:
    with pytest.raises(ValidationError, match="age_min"):
        Segment(age_min=40, age_max=30)
    with pytest.raises(ValidationError, match="both included and excluded"):
        Segment(interests_include={"x"}, interests_exclude={"x"})
    with pytest.raises(ValidationError, match="min_affinity"):
        Segment(min_affinity=0)
    targeting = Targeting(age_min=18, genders={Gender.MALE}, interests_include={"shoes"}, hours={9})
    seg = Segment.from_targeting(targeting, name="runners")
    assert (seg.age_min, seg.genders, seg.interests_include, seg.name) == (18, {Gender.MALE}, {"shoes"}, "runners")
    assert seg.interest_match == "targeting" and Segment().interest_match == "affinity"
    assert seg.behavioural and not Segment(age_min=3).behavioural
    assert parse_interest("brand:Acme") == ("brand", "Acme")
    assert parse_interest("price:50-100") == ("price", "50-100")
    assert parse_interest("home:garden") == ("category", "home:garden")


def _scores(**category: float) -> Behaviour:
    """Behaviour with the given category scores (and one brand, which targeting never reads)."""
    interests = {"category": category, "brand": {"pets": 5.0}}
    return Behaviour(
        ref_ts=T0,
        first_ts=T0,
        last_ts=T0,
        impressions=1,
        clicks=0,
        conversions=0,
        decayed=(1.0, 0.0, 0.0),
        ctr=0.01,
        hours=(0.0,) * 24,
        interests={d: {v: InterestStats(x, 1, 0, 0, T0) for v, x in vs.items()} for d, vs in interests.items()},
    )


def test_a_segment_from_targeting_reads_interests_as_ad_serving_does(store: Store) -> None:
    """Declared interests and the top five categories (ties by name, zero weight left out), none without consent;
    an excluded interest never removes a user without consent."""
    users = [
        User(user_id="decl", interests=("pets",)),
        User(user_id="top", interests=()),
        User(user_id="no-consent", interests=("pets",), consent=False),
        User(user_id="zero"),
    ]
    store.upsert_users(users)
    # "F" and "e" tie for fifth: "F" comes first in code-point order (as Python sorts), whatever the collation.
    six = {"a": 3.0, "b": 2.0, "c": 2.0, "d": 2.0, "e": 1.0, "F": 1.0}
    store.upsert_profiles(
        [
            Profile(users[1], _scores(**six)),
            Profile(users[2], _scores(**six)),  # consent withdrawn after the build: stored behaviour is not read
            Profile(users[3], _scores(a=1.0, z=0.0)),
        ]
    )

    def served(**targeting: object) -> list[str]:
        return resolve(store, Segment.from_targeting(Targeting(**targeting)))  # type: ignore[arg-type]

    assert served(interests_include={"pets"}) == ["decl"]  # a declared interest; the brand "pets" does not count
    assert served(interests_include={"F"}) == ["top"]
    assert served(interests_include={"e"}) == []
    assert served(interests_include={"z"}) == []  # no weight, no interest
    assert served(interests_include={"a"}) == ["top", "zero"]
    assert served(interests_include={"e", "pets"}) == ["decl"]
    assert served(interests_exclude={"a"}) == ["decl", "no-consent"]
    assert served(interests_exclude={"e", "z"}) == ["decl", "no-consent", "top", "zero"]
    assert served(interests_exclude={"pets"}, interests_include={"a"}) == ["top", "zero"]
    # The affinity reading of the same tags differs: shares and min_affinity, consent needed for any interest rule.
    assert resolve(store, Segment(interests_include={"e"}, min_affinity=0.05)) == ["top"]
    assert resolve(store, Segment(interests_exclude={"a"})) == ["decl"]


def _brute_force(profiles: list[Profile], seg: Segment) -> list[str]:
    """The segment's definition applied profile by profile."""
    out = []
    for p in profiles:
        u, b = p.user, p.behaviour
        if seg.age_min is not None and (u.age is None or u.age < seg.age_min):
            continue
        if seg.age_max is not None and (u.age is None or u.age > seg.age_max):
            continue
        if (seg.genders and u.gender not in seg.genders) or (seg.city_tiers and u.city_tier not in seg.city_tiers):
            continue
        if seg.behavioural:
            aff = {dim: b.affinities(dim) for dim in ("category", "brand", "price")} if b else {}
            has = [aff.get(d, {}).get(v, 0.0) >= seg.min_affinity for d, v in seg.include_keys()]
            if not u.consent or (has and not any(has)):
                continue
        out.append(u.user_id)
    return sorted(out)


def test_resolution_matches_the_definition_on_a_simulated_market(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/sim.db") as store:
        simulate(
            SimulationConfig(seed=3, n_users=400, n_advertisers=10, n_campaigns=20, n_ads=60, n_impressions=8_000),
            store,
            progress=False,
        )
        ProfileBuilder().rebuild(store)
        profiles = [p for page in store.iter_profiles() for p in page]
        assert sum(p.behaviour is not None for p in profiles) > 200
        assert all(p.behaviour is None for p in profiles if not p.user.consent)
        top = profiles[0].behaviour
        assert top is not None
        category = next(iter(top.affinities("category")))
        segments = [
            Segment(genders={Gender.FEMALE}, age_min=25, age_max=34, city_tiers={1}),
            Segment(interests_include={category}, min_affinity=0.2),
            Segment(genders={Gender.MALE}, interests_include={category, "brand:nope"}, min_affinity=0.1),
        ]
        for seg in segments:
            start = time.perf_counter()
            got = resolve(store, seg)
            assert time.perf_counter() - start < 2.0
            assert got == _brute_force(profiles, seg)
            assert got  # each segment is non-empty, so the comparison means something
