"""What spans the store's roles (erasure, stats, versions, reopening), on every backend."""

from __future__ import annotations

import pytest
from store_records import add_market, make_behaviour, make_delivery, make_events, make_feedback

from adrec.data.schema import (
    EventType,
    User,
)
from adrec.exceptions import NotFoundError
from adrec.profiles import Profile
from adrec.store import Store, open_store


def test_delete_user_erases_profile_and_events_only_of_that_user(store: Store) -> None:
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    store.append_events(make_events(10, prefix="a", user="u1"))
    store.append_events(make_events(7, prefix="b", user="u2"))
    report = store.delete_user("u1")
    assert (report.users, report.events) == (1, 10)
    with pytest.raises(NotFoundError):
        store.get_user("u1")
    assert store.count_events(user_id="u1") == 0
    assert store.count_events(user_id="u2") == 7
    assert store.get_user("u2").user_id == "u2"
    with pytest.raises(NotFoundError):
        store.delete_user("u1")


def test_stats_count_ctr_spend_and_categories(store: Store) -> None:
    add_market(store)
    store.upsert_users([User(user_id="u1")])
    store.append_events(make_events(40, prefix="i1", ad="a1"))
    store.append_events(make_events(10, prefix="i2", ad="a2"))
    served = [make_delivery(f"r{n}", "CPC", 0.5) for n in range(4)]  # served ads, clicked: charged by the ledger
    store.apply_feedback([make_feedback(f"s{n}", EventType.IMPRESSION, d) for n, d in enumerate(served)])
    store.apply_feedback([make_feedback(f"k{n}", EventType.CLICK, d, 1) for n, d in enumerate(served)])
    stats = store.stats()
    assert (stats.users, stats.advertisers, stats.campaigns, stats.ads) == (1, 1, 1, 2)
    assert stats.events == {"impression": 54, "click": 4, "conversion": 0}
    assert stats.ctr == pytest.approx(4 / 54)
    assert (stats.spend, stats.unbilled) == (pytest.approx(2.0), 0.0)
    assert stats.top_categories == [("shoes", 44, 4), ("bags", 10, 0)]
    # The campaign report reads the same events.
    report = store.delivery_report()
    assert sum(r.impressions for r in report) == 54 and sum(r.clicks for r in report) == 4
    assert sum(r.spend for r in report) == pytest.approx(stats.spend)


def test_reopen_keeps_data_and_schema_version(store_url: str) -> None:
    with open_store(store_url) as s:
        s.append_events(make_events(3))
        version = s.schema_version()
    with open_store(store_url) as s:
        assert s.count_events() == 3
        assert s.schema_version() == version >= 1


def test_delete_user_removes_the_profile(store: Store) -> None:
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    store.upsert_profiles([Profile(User(user_id=u), make_behaviour(category={"a": 1.0}), (1.0,)) for u in ("u1", "u2")])
    report = store.delete_user("u1")
    assert (report.users, report.events, report.profiles) == (1, 0, 1)
    store.upsert_users([User(user_id="u1")])
    assert store.get_profile("u1") == Profile(User(user_id="u1"))
    assert store.get_profile("u2").behaviour is not None
    assert store.delete_user("u1").profiles == 0


def test_delivery_times_and_erasure_of_deliveries(store: Store) -> None:
    add_market(store)  # the ledger bills only ads of the library
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    store.apply_feedback(
        [
            make_feedback("i1", EventType.IMPRESSION, make_delivery("r3-1", user="u1", ts=100.0)),
            make_feedback("i2", EventType.IMPRESSION, make_delivery("r3-2", user="u1", ts=200.0)),
            make_feedback("i3", EventType.IMPRESSION, make_delivery("r3-3", user="u2", ts=200.0)),
        ]
    )
    assert sorted(ts for _, _, ts in store.delivery_times("u1", since=150.0)) == [200.0]
    assert len(store.delivery_times("u1", since=0.0)) == 2
    store.delete_user("u1")
    assert store.delivery_times("u1", since=0.0) == []
    assert len(store.delivery_times("u2", since=0.0)) == 1


def test_writes_of_the_library_raise_the_catalog_version(store: Store) -> None:
    assert store.versions() == {}
    add_market(store)  # one write of campaigns, one of ads
    assert store.versions() == {"catalog": 2}
    store.upsert_ads([])  # nothing written: no change
    store.upsert_users([User(user_id="u9")])  # not the library
    assert store.versions() == {"catalog": 2}
    assert store.bump_version("model") == 1 and store.bump_version("model") == 2
    assert store.versions() == {"catalog": 2, "model": 2}


def test_one_handle_offers_every_role(store: Store) -> None:
    from adrec.store import EventLog, KeyStore, Ledger, MarketStore, ProfileStore

    for role in (MarketStore, EventLog, Ledger, ProfileStore, KeyStore):
        assert isinstance(store, role), role.__name__
