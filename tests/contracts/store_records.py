"""Records the store contract suites share: a small market and batches of events."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from adrec.data.schema import (
    Ad,
    Advertiser,
    Campaign,
    EventBatch,
    EventType,
    Gender,
    PricingModel,
    Targeting,
)
from adrec.profiles import Behaviour, InterestStats
from adrec.store import Delivery, Feedback, Store


def add_market(store: Store) -> None:
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


def make_events(n: int, *, prefix: str = "e", user: str = "u1", ad: str = "a1", type_: int = 0) -> EventBatch:
    return EventBatch(
        event_id=np.array([f"{prefix}{i}" for i in range(n)], dtype=object),
        type=np.full(n, type_, dtype=np.int8),
        user_id=np.full(n, user, dtype=object),
        ad_id=np.full(n, ad, dtype=object),
        ts=np.arange(n, dtype=np.float64) + 1000.0,
    )


def make_behaviour(**interests: dict[str, float]) -> Behaviour:
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


def make_delivery(iid: str, pricing: str = "CPC", price: float = 0.4, user: str = "u1", ts: float = 1.7e9) -> Delivery:
    return Delivery(iid, user, "a1", "c1", "adv1", pricing, price, ts, "feed")


def make_feedback(event_id: str, kind: EventType, d: Delivery, dt: float = 0.0) -> Feedback:
    return Feedback(event_id, kind, d.served_ts + dt, d)
