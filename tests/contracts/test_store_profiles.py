"""The ProfileStore contract (behaviour, interests, embeddings, segments), on every backend."""

from __future__ import annotations

import pytest
from store_records import make_behaviour

from adrec.data.schema import (
    Gender,
    User,
)
from adrec.exceptions import NotFoundError, StoreError
from adrec.profiles import InterestStats, Profile, Segment
from adrec.store import Store


def test_profiles_round_trip(store: Store) -> None:
    user = User(user_id="u1", age=30, gender=Gender.FEMALE, city_tier=1, interests=("books",))
    store.upsert_users([user, User(user_id="u2")])
    behaviour = make_behaviour(category={"cosmetics": 0.75, "shoes": 0.25}, brand={"Acme": 1.0}, price={"10-25": 0.5})
    assert store.upsert_profiles([Profile(user, behaviour, (0.5, -1.25))]) == 1
    got = store.get_profile("u1")
    assert got.user == user
    assert got.behaviour == behaviour
    assert got.embedding == (0.5, -1.25)
    assert got.updated_at is not None
    assert store.get_profile("u2") == Profile(User(user_id="u2"))  # declared attributes only
    assert got.behaviour is not None and got.behaviour.affinities() == {"cosmetics": 0.75, "shoes": 0.25}


def test_upserting_a_profile_replaces_behaviour_and_interests(store: Store) -> None:
    user = User(user_id="u1")
    store.upsert_users([user])
    store.upsert_profiles([Profile(user, make_behaviour(category={"a": 1.0, "b": 2.0}), (1.0,))])
    store.upsert_profiles([Profile(user, make_behaviour(category={"c": 1.0}))])
    got = store.get_profile("u1")
    assert got.behaviour is not None and set(got.behaviour.interests["category"]) == {"c"}
    assert got.embedding is None
    store.upsert_profiles([Profile(user), Profile(user, make_behaviour(brand={"x": 1.0}))])  # the last one wins
    got = store.get_profile("u1")
    assert got.behaviour is not None and dict(got.behaviour.interests) == {
        "brand": {"x": InterestStats(1.0, 3, 1, 0, 999.0)}
    }
    store.upsert_profiles([Profile(user)])
    assert store.get_profile("u1") == Profile(user, updated_at=store.get_profile("u1").updated_at)


def test_profiles_of_unknown_users(store: Store) -> None:
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    with pytest.raises(StoreError):
        store.upsert_profiles([Profile(User(user_id="ghost"), make_behaviour(category={"a": 1.0}))])
    with pytest.raises(NotFoundError):
        store.get_profile("ghost")
    assert list(store.get_profiles(["u2", "ghost", "u1", "u2"])) == ["u2", "u1"]
    assert store.get_profiles([]) == {}
    assert store.upsert_profiles([]) == 0


def test_iter_profiles_pages_cover_everything_once(store: Store) -> None:
    users = [User(user_id=f"u{i:03d}") for i in range(25)]
    store.upsert_users(users)
    store.upsert_profiles([Profile(u, make_behaviour(category={"a": 1.0, u.user_id: 1.0})) for u in users[::2]])
    pages = list(store.iter_profiles(batch_size=7))
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    profiles = [p for page in pages for p in page]
    assert [p.user_id for p in profiles] == [u.user_id for u in users]
    assert [p.behaviour is not None for p in profiles] == [i % 2 == 0 for i in range(25)]
    assert all(p.behaviour is None or set(p.behaviour.interests["category"]) == {"a", p.user_id} for p in profiles)


def test_resolve_segment(store: Store) -> None:
    users = [
        User(user_id="f25", age=25, gender=Gender.FEMALE, city_tier=1),
        User(user_id="f40", age=40, gender=Gender.FEMALE, city_tier=1),
        User(user_id="m30", age=30, gender=Gender.MALE, city_tier=2),
        User(user_id="f30-no", age=30, gender=Gender.FEMALE, city_tier=1, consent=False),
    ]
    store.upsert_users(users)
    store.upsert_profiles([Profile(u, make_behaviour(category={"cosmetics": 3.0, "shoes": 1.0})) for u in users])
    assert store.resolve_segment(Segment(genders={Gender.FEMALE}, age_min=20, age_max=34)) == ["f25", "f30-no"]
    assert store.resolve_segment(Segment(interests_include={"cosmetics"}, min_affinity=0.75)) == ["f25", "f40", "m30"]
    assert store.resolve_segment(Segment(interests_include={"cosmetics"}, min_affinity=0.76)) == []
    assert store.resolve_segment(Segment(city_tiers={1}, interests_exclude={"shoes"}, min_affinity=0.5)) == [
        "f25",
        "f40",
    ]
    assert store.resolve_segment(Segment(city_tiers={1}, interests_exclude={"shoes"})) == []
