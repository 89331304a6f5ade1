"""The store contract, run against every backend (SQLite always, PostgreSQL against the real server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adrec.data.schema import (
    Ad,
    Advertiser,
    Campaign,
    Event,
    EventBatch,
    EventType,
    FrequencyCap,
    Gender,
    Pacing,
    PricingModel,
    Targeting,
    User,
)
from adrec.exceptions import NotFoundError, StoreError, ValidationError
from adrec.profiles import Behaviour, InterestStats, Profile, Segment
from adrec.store import ApiKeyRecord, CtrExample, Delivery, Feedback, Store, open_store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


def _market(store: Store) -> None:
    store.upsert_advertisers([Advertiser(advertiser_id="adv1", name="Acme")])
    store.upsert_campaigns(
        [
            Campaign(
                campaign_id="c1",
                advertiser_id="adv1",
                name="Spring",
                pricing_model=PricingModel.CPM,
                bid=2.5,
                daily_budget=10.0,
                total_budget=100.0,
                start=datetime(2026, 1, 1, tzinfo=UTC),
                end=datetime(2026, 2, 1, tzinfo=UTC),
                targeting=Targeting(age_min=18, age_max=34, genders=frozenset({Gender.FEMALE}), hours={9, 10}),
            )
        ]
    )
    store.upsert_ads(
        [
            Ad(ad_id="a1", campaign_id="c1", title="Red shoes", category="shoes", brand="Acme", price=59.0),
            Ad(
                ad_id="a2",
                campaign_id="c1",
                title="Blue bag",
                category="bags",
                image_url="https://x.test/b.png",
            ),
        ]
    )


def _events(n: int, *, prefix: str = "e", user: str = "u1", ad: str = "a1", type_: int = 0) -> EventBatch:
    return EventBatch(
        event_id=np.array([f"{prefix}{i}" for i in range(n)], dtype=object),
        type=np.full(n, type_, dtype=np.int8),
        user_id=np.full(n, user, dtype=object),
        ad_id=np.full(n, ad, dtype=object),
        ts=np.arange(n, dtype=np.float64) + 1000.0,
    )


def test_records_round_trip(store: Store) -> None:
    _market(store)
    user = User(
        user_id="u1",
        age=29,
        gender=Gender.FEMALE,
        city_tier=1,
        interests=("beauty", "travel"),
        language="en",
        attrs={"occupation": "writer"},
    )
    store.upsert_users([user])
    assert store.get_user("u1") == user
    assert store.get_advertiser("adv1") == Advertiser(advertiser_id="adv1", name="Acme")
    campaign = store.get_campaign("c1")
    assert campaign.targeting.genders == frozenset({Gender.FEMALE})
    assert campaign.targeting.hours == frozenset({9, 10})
    assert campaign.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert campaign.bid == 2.5
    assert store.get_ad("a2").image_url == "https://x.test/b.png"
    assert [a.ad_id for batch in store.iter_ads() for a in batch] == ["a1", "a2"]
    assert [c.campaign_id for batch in store.iter_campaigns() for c in batch] == ["c1"]


def test_upsert_replaces(store: Store) -> None:
    store.upsert_users([User(user_id="u1", age=20)])
    store.upsert_users([User(user_id="u1", age=21)])
    assert store.get_user("u1").age == 21
    assert sum(len(b) for b in store.iter_users()) == 1


def test_missing_records_raise_not_found(store: Store) -> None:
    for getter in (store.get_user, store.get_ad, store.get_campaign, store.get_advertiser):
        with pytest.raises(NotFoundError, match="nope"):
            getter("nope")


def test_campaign_of_unknown_advertiser_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.upsert_campaigns([Campaign(campaign_id="c9", advertiser_id="ghost", name="x", bid=1.0)])
    with pytest.raises(NotFoundError):
        store.get_campaign("c9")


def test_iter_users_pages_cover_everything_once(store: Store) -> None:
    store.upsert_users(User(user_id=f"u{i:03d}") for i in range(25))
    pages = list(store.iter_users(batch_size=7))
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert sorted(u.user_id for p in pages for u in p) == [f"u{i:03d}" for i in range(25)]


def test_events_are_idempotent_by_id(store: Store) -> None:
    first = store.append_events(_events(100))
    assert (first.inserted, first.duplicates) == (100, 0)
    again = store.append_events(_events(100))
    assert (again.inserted, again.duplicates) == (0, 100)
    overlap = store.append_events(_events(150))  # 100 old + 50 new
    assert (overlap.inserted, overlap.duplicates) == (50, 100)
    assert store.count_events() == 150


def test_event_records_and_batches_are_interchangeable(store: Store) -> None:
    events = [
        Event(
            event_id="x1",
            type="impression",
            user_id="u1",
            ad_id="a1",
            ts=datetime(2026, 1, 1, tzinfo=UTC),
            placement="feed",
            request_id="r1",
        ),
        Event(
            event_id="x2",
            type=EventType.CLICK,
            user_id="u1",
            ad_id="a1",
            ts=1.7e9,
            cost=0.4,
            value=3.0,
            propensity=0.25,
        ),
    ]
    assert store.append_events(events).inserted == 2
    (batch,) = list(store.iter_events())
    assert batch.event_id.tolist() == ["x2", "x1"] or batch.event_id.tolist() == ["x1", "x2"]
    got = {eid: i for i, eid in enumerate(batch.event_id.tolist())}
    i2 = got["x2"]
    assert batch.cost[i2] == pytest.approx(0.4)
    assert batch.value[i2] == 3.0
    assert batch.propensity[i2] == 0.25
    i1 = got["x1"]
    assert np.isnan(batch.value[i1])
    assert batch.placement[i1] == "feed"
    assert batch.ts[i1] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_invalid_batch_writes_nothing_and_keeps_earlier_data(store: Store) -> None:
    store.append_events(_events(10))
    bad = _events(5, prefix="new")
    bad.cost[3] = -1.0
    with pytest.raises(ValidationError, match=r"events\[3\]\.cost"):
        store.append_events(bad)
    dup = EventBatch.concat([_events(2, prefix="d"), _events(1, prefix="d")])
    with pytest.raises(ValidationError, match="appears twice"):
        store.append_events(dup)
    assert store.count_events() == 10


def test_iter_events_filters_and_pages(store: Store) -> None:
    store.append_events(_events(30, prefix="a", user="u1"))
    store.append_events(_events(20, prefix="b", user="u2", type_=1))
    pages = list(store.iter_events(batch_size=8))
    ts = np.concatenate([p.ts for p in pages])
    assert len(ts) == 50
    assert (np.diff(ts) >= 0).all()
    assert len({eid for p in pages for eid in p.event_id.tolist()}) == 50
    u2 = EventBatch.concat(list(store.iter_events(user_id="u2")))
    assert set(u2.user_id.tolist()) == {"u2"} and len(u2) == 20
    clicks = EventBatch.concat(list(store.iter_events(types=[EventType.CLICK])))
    assert len(clicks) == 20
    window = EventBatch.concat(list(store.iter_events(since=1005.0, until=1010.0)))
    assert len(window) == 10 and window.ts.min() >= 1005.0 and window.ts.max() < 1010.0
    assert store.count_events(user_id="u1") == 30
    assert store.count_events(type=EventType.CLICK) == 20


def test_delete_user_erases_profile_and_events_only_of_that_user(store: Store) -> None:
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    store.append_events(_events(10, prefix="a", user="u1"))
    store.append_events(_events(7, prefix="b", user="u2"))
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
    _market(store)
    store.upsert_users([User(user_id="u1")])
    store.append_events(_events(40, prefix="i1", ad="a1"))
    store.append_events(_events(10, prefix="i2", ad="a2"))
    clicks = _events(4, prefix="c", ad="a1", type_=1)
    clicks.cost[:] = 0.5
    store.append_events(clicks)
    stats = store.stats()
    assert (stats.users, stats.advertisers, stats.campaigns, stats.ads) == (1, 1, 1, 2)
    assert stats.events == {"impression": 50, "click": 4, "conversion": 0}
    assert stats.ctr == pytest.approx(4 / 50)
    assert stats.spend == pytest.approx(2.0)
    assert stats.top_categories == [("shoes", 40, 4), ("bags", 10, 0)]


def test_ctr_examples_round_trip_and_replace(store: Store) -> None:
    rows = [CtrExample("criteo.txt", i, i % 2, {"I1": float(i), "C1": "ab"}) for i in range(1, 6)]
    assert store.append_ctr_examples(rows) == 5
    store.append_ctr_examples(rows[:2])
    back = [x for batch in store.iter_ctr_examples("criteo.txt", batch_size=2) for x in batch]
    assert back == rows
    assert store.stats().ctr_examples == 5


def test_reopen_keeps_data_and_schema_version(store_url: str) -> None:
    with open_store(store_url) as s:
        s.append_events(_events(3))
        version = s.schema_version()
    with open_store(store_url) as s:
        assert s.count_events() == 3
        assert s.schema_version() == version >= 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, 40), max_size=30, unique=True), min_size=1, max_size=5))
def test_any_sequence_of_resends_stores_each_id_once(store: Store, batches: list[list[int]]) -> None:
    offset = store.count_events()
    seen: set[int] = set()
    tag = f"h{offset}-"  # a fresh id space per example; the store outlives examples
    for ids in batches:
        batch = EventBatch(
            event_id=np.array([f"{tag}{i}" for i in ids], dtype=object),
            type=np.zeros(len(ids), dtype=np.int8),
            user_id=np.full(len(ids), "u", dtype=object),
            ad_id=np.full(len(ids), "a", dtype=object),
            ts=np.zeros(len(ids)),
        )
        result = store.append_events(batch)
        assert result.inserted == len(set(ids) - seen)
        seen |= set(ids)
    assert store.count_events() - offset == len(seen)


def test_naive_campaign_times_are_utc(store: Store) -> None:
    store.upsert_advertisers([Advertiser(advertiser_id="adv1", name="Acme")])
    naive = datetime(2026, 5, 1, 12, 0)
    store.upsert_campaigns(
        [Campaign(campaign_id="c1", advertiser_id="adv1", name="n", bid=1.0, start=naive, end=datetime(2026, 6, 1))]
    )
    assert store.get_campaign("c1").start == naive.replace(tzinfo=UTC)


# -- profiles (schema version 2) -----------------------------------------------------------------------------
def _behaviour(**interests: dict[str, float]) -> Behaviour:
    """Behaviour with the given ``dimension -> {value: score}``; one click per value, at ts 1000."""
    return Behaviour(
        ref_ts=1000.0,
        first_ts=900.0,
        last_ts=1000.0,
        impressions=7,
        clicks=2,
        conversions=1,
        decayed=(6.5, 1.5, 0.25),
        ctr=0.03,
        hours=tuple(float(h) for h in range(24)),
        interests={
            dim: {v: InterestStats(s, 3, 1, 0, 1000.0 - s) for v, s in values.items()}
            for dim, values in interests.items()
        },
    )


def test_profiles_round_trip(store: Store) -> None:
    user = User(user_id="u1", age=30, gender=Gender.FEMALE, city_tier=1, interests=("books",))
    store.upsert_users([user, User(user_id="u2")])
    behaviour = _behaviour(category={"cosmetics": 0.75, "shoes": 0.25}, brand={"Acme": 1.0}, price={"10-25": 0.5})
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
    store.upsert_profiles([Profile(user, _behaviour(category={"a": 1.0, "b": 2.0}), (1.0,))])
    store.upsert_profiles([Profile(user, _behaviour(category={"c": 1.0}))])
    got = store.get_profile("u1")
    assert got.behaviour is not None and set(got.behaviour.interests["category"]) == {"c"}
    assert got.embedding is None
    store.upsert_profiles([Profile(user), Profile(user, _behaviour(brand={"x": 1.0}))])  # the last one wins
    got = store.get_profile("u1")
    assert got.behaviour is not None and dict(got.behaviour.interests) == {
        "brand": {"x": InterestStats(1.0, 3, 1, 0, 999.0)}
    }
    store.upsert_profiles([Profile(user)])
    assert store.get_profile("u1") == Profile(user, updated_at=store.get_profile("u1").updated_at)


def test_profiles_of_unknown_users(store: Store) -> None:
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    with pytest.raises(StoreError):
        store.upsert_profiles([Profile(User(user_id="ghost"), _behaviour(category={"a": 1.0}))])
    with pytest.raises(NotFoundError):
        store.get_profile("ghost")
    assert list(store.get_profiles(["u2", "ghost", "u1", "u2"])) == ["u2", "u1"]
    assert store.get_profiles([]) == {}
    assert store.upsert_profiles([]) == 0


def test_iter_profiles_pages_cover_everything_once(store: Store) -> None:
    users = [User(user_id=f"u{i:03d}") for i in range(25)]
    store.upsert_users(users)
    store.upsert_profiles([Profile(u, _behaviour(category={"a": 1.0, u.user_id: 1.0})) for u in users[::2]])
    pages = list(store.iter_profiles(batch_size=7))
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    profiles = [p for page in pages for p in page]
    assert [p.user_id for p in profiles] == [u.user_id for u in users]
    assert [p.behaviour is not None for p in profiles] == [i % 2 == 0 for i in range(25)]
    assert all(p.behaviour is None or set(p.behaviour.interests["category"]) == {"a", p.user_id} for p in profiles)


def test_delete_user_removes_the_profile(store: Store) -> None:
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    store.upsert_profiles([Profile(User(user_id=u), _behaviour(category={"a": 1.0}), (1.0,)) for u in ("u1", "u2")])
    report = store.delete_user("u1")
    assert (report.users, report.events, report.profiles) == (1, 0, 1)
    store.upsert_users([User(user_id="u1")])
    assert store.get_profile("u1") == Profile(User(user_id="u1"))
    assert store.get_profile("u2").behaviour is not None
    assert store.delete_user("u1").profiles == 0


def test_get_ads_in_order_leaving_out_unknown_ids(store: Store) -> None:
    _market(store)
    assert [a.ad_id for a in store.get_ads(["a2", "nope", "a1", "a2"])] == ["a2", "a1"]
    assert store.get_ads(["a1"])[0] == store.get_ad("a1")
    assert store.get_ads([]) == []


def test_resolve_segment(store: Store) -> None:
    users = [
        User(user_id="f25", age=25, gender=Gender.FEMALE, city_tier=1),
        User(user_id="f40", age=40, gender=Gender.FEMALE, city_tier=1),
        User(user_id="m30", age=30, gender=Gender.MALE, city_tier=2),
        User(user_id="f30-no", age=30, gender=Gender.FEMALE, city_tier=1, consent=False),
    ]
    store.upsert_users(users)
    store.upsert_profiles([Profile(u, _behaviour(category={"cosmetics": 3.0, "shoes": 1.0})) for u in users])
    assert store.resolve_segment(Segment(genders={Gender.FEMALE}, age_min=20, age_max=34)) == ["f25", "f30-no"]
    assert store.resolve_segment(Segment(interests_include={"cosmetics"}, min_affinity=0.75)) == ["f25", "f40", "m30"]
    assert store.resolve_segment(Segment(interests_include={"cosmetics"}, min_affinity=0.76)) == []
    assert store.resolve_segment(Segment(city_tiers={1}, interests_exclude={"shoes"}, min_affinity=0.5)) == [
        "f25",
        "f40",
    ]
    assert store.resolve_segment(Segment(city_tiers={1}, interests_exclude={"shoes"})) == []


# -- serving ledger (schema version 3) -----------------------------------------------------------------------
def _delivery(iid: str, pricing: str = "CPC", price: float = 0.4, user: str = "u1", ts: float = 1.7e9) -> Delivery:
    return Delivery(iid, user, "a1", "c1", "adv1", pricing, price, ts, "feed")


def _fb(event_id: str, kind: EventType, d: Delivery, dt: float = 0.0) -> Feedback:
    return Feedback(event_id, kind, d.served_ts + dt, d)


def test_feedback_charges_each_billable_event_once(store: Store) -> None:
    _market(store)  # the ledger bills only ads of the library
    cpc, cpm, cpa = _delivery("r1-1", "CPC", 0.4), _delivery("r1-2", "CPM", 0.002), _delivery("r1-3", "CPA", 5.0)
    batch = [
        _fb("i1", EventType.IMPRESSION, cpc),
        _fb("c1", EventType.CLICK, cpc, 5),
        _fb("v1", EventType.CONVERSION, cpc, 50),
        _fb("i2", EventType.IMPRESSION, cpm),
        _fb("i3", EventType.IMPRESSION, cpa),
        _fb("c3", EventType.CLICK, cpa, 3),
        _fb("v3", EventType.CONVERSION, cpa, 30),
    ]
    result = store.apply_feedback(batch)
    assert (result.received, result.accepted, result.duplicates, result.rejected) == (7, 7, 0, [])
    assert result.spend == pytest.approx(0.4 + 0.002 + 5.0)
    (row,) = store.delivery_report()
    assert (row.impressions, row.clicks, row.conversions) == (3, 2, 2)
    assert row.spend == pytest.approx(5.402)
    assert row.ctr == pytest.approx(2 / 3)
    day = row.day
    assert store.campaign_spend(day) == {"c1": (pytest.approx(5.402), pytest.approx(5.402))}
    assert store.count_events() == 7
    # The resend is acknowledged and changes nothing.
    again = store.apply_feedback(batch)
    assert (again.accepted, again.duplicates, again.spend) == (0, 7, 0.0)
    assert store.delivery_report()[0].spend == pytest.approx(5.402)


def test_feedback_rejects_what_the_ledger_does_not_allow_and_keeps_the_rest(store: Store) -> None:
    _market(store)  # the ledger bills only ads of the library
    d = _delivery("r2-1")
    other = _delivery("r2-2")
    result = store.apply_feedback(
        [
            _fb("c0", EventType.CLICK, other),  # click before any impression of its token
            _fb("i1", EventType.IMPRESSION, d),
            _fb("i1b", EventType.IMPRESSION, d, 1),  # a second impression of the same token
            _fb("c1", EventType.CLICK, d, 2),
            _fb("c1b", EventType.CLICK, d, 3),  # a second click
            _fb("v0", EventType.CONVERSION, other, 4),  # conversion without click
        ]
    )
    assert result.accepted == 2
    reasons = dict(result.rejected)
    assert set(reasons) == {0, 2, 4, 5}
    assert "without a recorded impression" in reasons[0]
    assert "already recorded" in reasons[2]
    assert "already clicked" in reasons[4]
    assert "without a recorded click" in reasons[5]
    (row,) = store.delivery_report()
    assert (row.impressions, row.clicks, row.spend) == (1, 1, pytest.approx(0.4))
    # A later batch can click a token whose impression came earlier, once.
    later = store.apply_feedback([_fb("c2", EventType.CLICK, other, 9), _fb("i2", EventType.IMPRESSION, other, 1)])
    assert later.accepted == 2 and later.rejected == []


def test_feedback_event_ids_count_once_within_and_across_batches(store: Store) -> None:
    _market(store)  # the ledger bills only ads of the library
    d, other = _delivery("r4-1", "CPM", 0.5), _delivery("r4-2", "CPC", 0.4)
    batch = [
        _fb("i1", EventType.IMPRESSION, d),
        _fb("i1", EventType.IMPRESSION, d),  # the same event sent twice in one batch
        _fb("i2", EventType.IMPRESSION, other),
        _fb("i2", EventType.CLICK, other, 1),  # a click reusing an event id: a duplicate, not a click
    ]
    result = store.apply_feedback(batch)
    assert (result.accepted, result.duplicates, result.rejected) == (2, 2, [])
    assert result.spend == pytest.approx(0.5)
    again = store.apply_feedback([*batch, _fb("c2", EventType.CLICK, other, 2)])
    assert (again.accepted, again.duplicates, again.rejected, again.spend) == (1, 4, [], pytest.approx(0.4))
    (row,) = store.delivery_report()
    assert (row.impressions, row.clicks, row.spend) == (2, 1, pytest.approx(0.9))
    assert store.count_events() == 3


def test_feedback_applies_a_batch_in_time_order_and_the_ledger_remembers_it(store: Store) -> None:
    _market(store)  # the ledger bills only ads of the library
    a, b = _delivery("r5-1", "CPA", 2.0), _delivery("r5-2", "CPC", 0.3)
    placed = Delivery("r5-3", "u2", "a1", "c1", "adv1", "CPM", 0.01, 1.7e9, None)
    first = store.apply_feedback(
        [
            _fb("ca", EventType.CLICK, a, 5),  # listed before its impression, but later in time
            _fb("ia", EventType.IMPRESSION, a),
            _fb("ib", EventType.IMPRESSION, b),
            _fb("ip", EventType.IMPRESSION, placed),
        ]
    )
    assert (first.accepted, first.rejected) == (4, [])
    # The ledger rows of the first batch: a was clicked, b was not; neither converted.
    later = store.apply_feedback(
        [
            _fb("ca2", EventType.CLICK, a, 6),
            _fb("vb", EventType.CONVERSION, b, 8),
            _fb("cb", EventType.CLICK, b, 7),
            Feedback("va", EventType.CONVERSION, a.served_ts + 9, a, 42.0),
        ]
    )
    assert later.accepted == 3 and later.rejected == [(0, "this token was already clicked")]
    assert later.spend == pytest.approx(2.0 + 0.3)
    # NULLs and values of one column mixed in a batch are each stored as sent.
    stored = {
        str(e): (p, v, r)
        for batch in store.iter_events()
        for e, p, v, r in zip(batch.event_id, batch.placement, batch.value, batch.request_id, strict=True)
    }
    assert set(stored) == {"ca", "ia", "ib", "ip", "vb", "cb", "va"}
    assert stored["va"][:2] == ("feed", 42.0) and stored["ip"][0] is None
    assert all(np.isnan(v) for e, (_, v, _) in stored.items() if e != "va")
    assert all(p == "feed" for e, (p, _, _) in stored.items() if e != "ip")
    assert stored["ca"][2] == "r5-1" and stored["ip"][2] == "r5-3"
    report = {r.campaign_id: r for r in store.delivery_report()}
    assert (report["c1"].impressions, report["c1"].clicks, report["c1"].conversions) == (3, 2, 2)
    assert report["c1"].spend == pytest.approx(2.0 + 0.3 + 0.01)
    assert store.apply_feedback([_fb("va2", EventType.CONVERSION, a, 10)]).rejected == [
        (0, "this token already converted")
    ]


def test_delivery_times_and_erasure_of_deliveries(store: Store) -> None:
    _market(store)  # the ledger bills only ads of the library
    store.upsert_users([User(user_id="u1"), User(user_id="u2")])
    store.apply_feedback(
        [
            _fb("i1", EventType.IMPRESSION, _delivery("r3-1", user="u1", ts=100.0)),
            _fb("i2", EventType.IMPRESSION, _delivery("r3-2", user="u1", ts=200.0)),
            _fb("i3", EventType.IMPRESSION, _delivery("r3-3", user="u2", ts=200.0)),
        ]
    )
    assert sorted(ts for _, _, ts in store.delivery_times("u1", since=150.0)) == [200.0]
    assert len(store.delivery_times("u1", since=0.0)) == 2
    store.delete_user("u1")
    assert store.delivery_times("u1", since=0.0) == []
    assert len(store.delivery_times("u2", since=0.0)) == 1


def test_api_keys_are_stored_by_hash_and_revocable(store: Store) -> None:
    key = ApiKeyRecord("k1", "ab" * 32, "serving", "edge", 1.0)
    store.put_api_key(key)
    assert store.find_api_key("ab" * 32) == key
    assert store.find_api_key("cd" * 32) is None
    store.revoke_api_key("k1")
    found = store.find_api_key("ab" * 32)
    assert found is not None and found.revoked
    assert [k.key_id for k in store.list_api_keys()] == ["k1"]
    with pytest.raises(NotFoundError):
        store.revoke_api_key("nope")


def test_campaign_frequency_caps_and_pacing_round_trip(store: Store) -> None:
    _market(store)
    c = store.get_campaign("c1").model_copy(
        update={"frequency": FrequencyCap(per_ad=2, per_campaign=5, window_s=3600.0), "pacing": Pacing.ASAP}
    )
    store.upsert_campaigns([c])
    assert store.get_campaign("c1") == c


def test_segment_click_counts_by_gender_and_age_band(store: Store) -> None:
    store.upsert_users(
        [
            User(user_id="f30", gender=Gender.FEMALE, age=30),
            User(user_id="f33", gender=Gender.FEMALE, age=33),
            User(user_id="m50", gender=Gender.MALE, age=50),
        ]
    )
    clicks = [("f30", "a1"), ("f33", "a1"), ("f33", "a2"), ("m50", "a2"), ("anon", "a3")]
    store.append_events(
        [Event(event_id=f"k{i}", type=EventType.CLICK, user_id=u, ad_id=a, ts=1.0) for i, (u, a) in enumerate(clicks)]
        + [Event(event_id="imp", type=EventType.IMPRESSION, user_id="f30", ad_id="a3", ts=1.0)]
    )
    assert store.segment_click_counts() == {"female|25-34": [("a1", 2), ("a2", 1)], "male|45-54": [("a2", 1)]}
    assert store.segment_click_counts(limit=1)["female|25-34"] == [("a1", 2)]


def test_writes_of_the_library_raise_the_catalog_version(store: Store) -> None:
    assert store.versions() == {}
    _market(store)  # one write of campaigns, one of ads
    assert store.versions() == {"catalog": 2}
    store.upsert_ads([])  # nothing written: no change
    store.upsert_users([User(user_id="u9")])  # not the library
    assert store.versions() == {"catalog": 2}
    assert store.bump_version("model") == 1 and store.bump_version("model") == 2
    assert store.versions() == {"catalog": 2, "model": 2}
