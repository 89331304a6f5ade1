"""Incremental updates equal a rebuild; updates read only what new events touch; consent is honoured."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profile_helpers import DAY, T0, USERS, Row, batch, seed_market

from adrec.data.schema import EventType
from adrec.profiles import Behaviour, Profile, ProfileBuilder
from adrec.store import Store, open_store

IMP, CLK, CONV = EventType.IMPRESSION, EventType.CLICK, EventType.CONVERSION


def _profiles(store: Store) -> dict[str, Profile]:
    return {p.user_id: p for page in store.iter_profiles() for p in page}


def assert_same_behaviour(a: Behaviour | None, b: Behaviour | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert (a.impressions, a.clicks, a.conversions) == (b.impressions, b.clicks, b.conversions)
    assert (a.ref_ts, a.first_ts, a.last_ts) == (b.ref_ts, b.first_ts, b.last_ts)
    assert a.ctr == pytest.approx(b.ctr, rel=1e-12)
    assert a.decayed == pytest.approx(b.decayed, rel=1e-9, abs=1e-300)
    assert a.hours == pytest.approx(b.hours, rel=1e-9, abs=1e-300)
    assert a.interests.keys() == b.interests.keys()
    for dim in a.interests:
        assert a.interests[dim].keys() == b.interests[dim].keys()
        for value, x in a.interests[dim].items():
            y = b.interests[dim][value]
            assert (x.impressions, x.clicks, x.conversions, x.last_ts) == (
                y.impressions,
                y.clicks,
                y.conversions,
                y.last_ts,
            )
            assert x.score == pytest.approx(y.score, rel=1e-9, abs=1e-300)
        assert a.affinities(dim) == pytest.approx(b.affinities(dim), rel=1e-9)


streams = st.lists(
    st.tuples(
        st.sampled_from(["ann", "bob", "cat", "dan", "anonymous"]),
        st.sampled_from(["cos1", "cos2", "shoe", "bare", "gone"]),
        st.sampled_from([IMP, IMP, IMP, CLK, CONV]),
        st.floats(T0, T0 + 120 * DAY),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=30, deadline=None)
@given(rows=streams, cuts=st.lists(st.integers(0, 80), max_size=6), half_life_days=st.floats(0.25, 60))
def test_incremental_updates_equal_a_rebuild(rows: list[Row], cuts: list[int], half_life_days: float) -> None:
    """Events in arrival order (not time order: late events happen), split at random points into increments."""
    builder = ProfileBuilder(half_life_days=half_life_days)
    all_events = batch(rows)
    bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
    with open_store("sqlite://") as inc, open_store("sqlite://") as full:
        for s in (inc, full):
            seed_market(s)
        for lo, hi in itertools.pairwise(bounds):
            piece = all_events.take(slice(lo, hi))
            inc.append_events(piece)
            builder.update(inc, piece)
        full.append_events(all_events)
        builder.rebuild(full)
        got, want = _profiles(inc), _profiles(full)
    assert got.keys() == want.keys() == {u.user_id for u in USERS}
    for user_id in want:
        assert_same_behaviour(got[user_id].behaviour, want[user_id].behaviour)
    assert want["ann"].behaviour is not None or "ann" not in {r[0] for r in rows}
    assert want["cat"].behaviour is None  # no consent


class Spy:
    """A store that records which reads an update makes."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args[0] if args else kwargs))
            return attr(*args, **kwargs)

        return spy


def test_an_update_reads_only_the_new_events_users_and_ads(sqlite_store: Store) -> None:
    seed_market(sqlite_store)
    builder = ProfileBuilder()
    old = batch([(u.user_id, "shoe", IMP, T0 + i) for i, u in enumerate(USERS)] * 3, prefix="old")
    sqlite_store.append_events(old)
    builder.rebuild(sqlite_store)
    spy = Spy(sqlite_store)
    new = batch([("ann", "cos1", CLK, T0 + DAY), ("ann", "cos1", IMP, T0 + DAY)], prefix="new")
    report = builder.update(spy, new)  # type: ignore[arg-type]
    names = [n for n, _ in spy.calls]
    assert "iter_events" not in names and "iter_profiles" not in names and "iter_users" not in names
    assert ("get_profiles", ["ann"]) in spy.calls
    assert [a for n, a in spy.calls if n == "get_ads"] == [["cos1"]]
    upserted = [list(a) for n, a in spy.calls if n == "upsert_profiles"]
    assert [[p.user_id for p in call] for call in upserted] == [["ann"]]
    assert (report.events, report.used, report.profiles) == (2, 2, 1)
    ann = sqlite_store.get_profile("ann").behaviour
    assert ann is not None
    assert (ann.impressions, ann.clicks) == (4, 1)


def test_users_without_consent_get_no_behaviour_and_are_purged_on_withdrawal(sqlite_store: Store) -> None:
    seed_market(sqlite_store)
    builder = ProfileBuilder()
    events = batch([("cat", "cos1", CLK, T0), ("ann", "cos1", CLK, T0), ("anonymous", "cos1", CLK, T0)])
    sqlite_store.append_events(events)
    report = builder.update(sqlite_store, events)
    assert (report.used, report.skipped_no_consent, report.skipped_unknown_users) == (1, 1, 1)
    assert sqlite_store.get_profile("cat").behaviour is None
    # Nothing behavioural was stored for cat: granting consent later reveals nothing until events are processed.
    sqlite_store.upsert_users([USERS[2].model_copy(update={"consent": True})])
    assert sqlite_store.get_profile("cat").behaviour is None
    assert sqlite_store.get_profile("cat").embedding is None

    # ann has behaviour and an embedding; withdrawing consent purges both at the next event.
    sqlite_store.upsert_profiles([sqlite_store.get_profile("ann").with_embedding([0.5, -0.5])])
    assert sqlite_store.get_profile("ann").behaviour is not None
    sqlite_store.upsert_users([USERS[0].model_copy(update={"consent": False})])
    builder.update(sqlite_store, batch([("ann", "shoe", IMP, T0 + DAY)], prefix="late"))
    ann = sqlite_store.get_profile("ann")
    assert (ann.behaviour, ann.embedding) == (None, None)
    assert ann.user.age == 29  # declared attributes stay


def test_rebuild_purges_withdrawn_consent_and_keeps_embeddings_of_consenting_users(sqlite_store: Store) -> None:
    seed_market(sqlite_store)
    builder = ProfileBuilder()
    sqlite_store.append_events(batch([("ann", "cos1", CLK, T0), ("bob", "shoe", CLK, T0)]))
    builder.rebuild(sqlite_store)
    sqlite_store.upsert_profiles([sqlite_store.get_profile(u).with_embedding([1.0, 2.0]) for u in ("ann", "bob")])
    sqlite_store.upsert_users([USERS[1].model_copy(update={"consent": False})])
    report = builder.rebuild(sqlite_store)
    assert report.profiles == len(USERS)
    ann, bob = sqlite_store.get_profile("ann"), sqlite_store.get_profile("bob")
    assert ann.embedding == (1.0, 2.0) and ann.behaviour is not None
    assert (bob.behaviour, bob.embedding) == (None, None)


def test_rebuild_of_some_users_and_update_window(sqlite_store: Store) -> None:
    seed_market(sqlite_store)
    builder = ProfileBuilder()
    rows: Sequence[Row] = [("ann", "cos1", CLK, T0), ("bob", "shoe", IMP, T0), ("ann", "shoe", CLK, T0 + 2 * DAY)]
    sqlite_store.append_events(batch(rows))
    builder.rebuild(sqlite_store, ["bob"])
    assert sqlite_store.get_profile("ann").behaviour is None
    assert sqlite_store.get_profile("bob").behaviour is not None
    report = builder.update_window(sqlite_store, T0, T0 + DAY)  # ann's first click and bob's impression
    assert (report.events, report.profiles) == (2, 2)
    ann = sqlite_store.get_profile("ann").behaviour
    bob = sqlite_store.get_profile("bob").behaviour
    assert ann is not None and bob is not None
    assert (ann.clicks, bob.impressions) == (1, 2)  # bob counted twice: windows must not overlap a rebuild
    builder.update_window(sqlite_store, T0 + DAY)
    ann = sqlite_store.get_profile("ann").behaviour
    assert ann is not None and ann.clicks == 2
    assert list(ann.affinities("category")) == ["shoes", "cosmetics"]  # the later click weighs more


def test_empty_updates_write_nothing(sqlite_store: Store) -> None:
    seed_market(sqlite_store)
    report = ProfileBuilder().update(sqlite_store, batch([]))
    assert (report.events, report.profiles) == (0, 0)
    assert sqlite_store.get_profile("ann").behaviour is None
