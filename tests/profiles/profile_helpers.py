"""A tiny hand-made market with known answers for the profile tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adrec.data.schema import Ad, Advertiser, Campaign, EventBatch, EventType, Gender, User
from adrec.store import Store

T0 = 1_736_000_000.0  # 2025-01-04 14:13 UTC
DAY = 86_400.0

ADS = [
    Ad(ad_id="cos1", campaign_id="c1", title="Glow serum", category="cosmetics", brand="Glow", price=19.0),
    Ad(ad_id="cos2", campaign_id="c1", title="Luxe cream", category="cosmetics", brand="Luxe", price=120.0),
    Ad(ad_id="shoe", campaign_id="c1", title="Runner", category="shoes", brand="Stride", price=59.0),
    Ad(ad_id="bare", campaign_id="c1", title="Mystery"),  # no category, brand or price
]

USERS = [
    User(user_id="ann", age=29, gender=Gender.FEMALE, city_tier=1, region="es", consent=True),
    User(user_id="bob", age=40, gender=Gender.MALE, city_tier=2, region="fr", consent=True),
    User(user_id="cat", age=31, gender=Gender.FEMALE, city_tier=1, region="es", consent=False),
    User(user_id="dan", gender=Gender.FEMALE, city_tier=1, region="es", consent=True),  # age unknown
]

Row = tuple[str, str, EventType, float]


def seed_market(store: Store, users: Sequence[User] = USERS) -> None:
    store.upsert_advertisers([Advertiser(advertiser_id="adv", name="Acme")])
    store.upsert_campaigns([Campaign(campaign_id="c1", advertiser_id="adv", name="All", bid=1.0)])
    store.upsert_ads(ADS)
    store.upsert_users(users)


def batch(rows: Sequence[Row], prefix: str = "e") -> EventBatch:
    """Events from ``(user_id, ad_id, type, ts)`` rows, with ids ``{prefix}{i}``."""
    return EventBatch(
        event_id=np.array([f"{prefix}{i}" for i in range(len(rows))], dtype=object),
        type=np.array([int(r[2]) for r in rows], dtype=np.int8),
        user_id=np.array([r[0] for r in rows], dtype=object),
        ad_id=np.array([r[1] for r in rows], dtype=object),
        ts=np.array([r[3] for r in rows], dtype=np.float64),
    )
