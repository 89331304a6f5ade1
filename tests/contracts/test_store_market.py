"""The MarketStore contract (users, advertisers, campaigns, ads), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from store_records import add_market

from adrec.data.schema import (
    Advertiser,
    Campaign,
    FrequencyCap,
    Gender,
    Pacing,
    User,
)
from adrec.exceptions import NotFoundError, StoreError
from adrec.store import Store


def test_records_round_trip(store: Store) -> None:
    add_market(store)
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


def test_naive_campaign_times_are_utc(store: Store) -> None:
    store.upsert_advertisers([Advertiser(advertiser_id="adv1", name="Acme")])
    naive = datetime(2026, 5, 1, 12, 0)
    store.upsert_campaigns(
        [Campaign(campaign_id="c1", advertiser_id="adv1", name="n", bid=1.0, start=naive, end=datetime(2026, 6, 1))]
    )
    assert store.get_campaign("c1").start == naive.replace(tzinfo=UTC)


def test_get_ads_in_order_leaving_out_unknown_ids(store: Store) -> None:
    add_market(store)
    assert [a.ad_id for a in store.get_ads(["a2", "nope", "a1", "a2"])] == ["a2", "a1"]
    assert store.get_ads(["a1"])[0] == store.get_ad("a1")
    assert store.get_ads([]) == []


def test_campaign_frequency_caps_and_pacing_round_trip(store: Store) -> None:
    add_market(store)
    c = store.get_campaign("c1").model_copy(
        update={"frequency": FrequencyCap(per_ad=2, per_campaign=5, window_s=3600.0), "pacing": Pacing.ASAP}
    )
    store.upsert_campaigns([c])
    assert store.get_campaign("c1") == c
