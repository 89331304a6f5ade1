"""Table definitions of the SQL store (SQLAlchemy Core), at the latest schema version.

Times are stored as seconds since the Unix epoch (double precision) so that both backends compare and index them
the same way. Structured fields (targeting, interests, extra attributes, CTR features) are JSON.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 6

metadata = MetaData()

ID = String(200)

meta = Table(
    "adrec_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("age", SmallInteger),
    Column("age_band", String(20)),
    Column("gender", String(10), nullable=False),
    Column("region", String(100)),
    Column("city", String(100)),
    Column("city_tier", SmallInteger),
    Column("device", String(10), nullable=False),
    Column("language", String(20)),
    Column("interests", JSON, nullable=False),
    Column("consent", Boolean, nullable=False),
    Column("attrs", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

advertisers = Table(
    "advertisers",
    metadata,
    Column("advertiser_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("domain", String(200)),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", ID, primary_key=True),
    Column("advertiser_id", ID, ForeignKey("advertisers.advertiser_id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("objective", String(20), nullable=False),
    Column("pricing_model", String(3), nullable=False),
    Column("bid", Float, nullable=False),
    Column("daily_budget", Float),
    Column("total_budget", Float),
    Column("start_ts", Float),
    Column("end_ts", Float),
    Column("status", String(10), nullable=False),
    Column("targeting", JSON, nullable=False),
    # Version 3 (nullable: rows written before it read back with the defaults).
    Column("frequency", JSON),
    Column("pacing", String(10)),
    Index("ix_campaigns_advertiser", "advertiser_id"),
)

ads = Table(
    "ads",
    metadata,
    Column("ad_id", ID, primary_key=True),
    Column("campaign_id", ID, ForeignKey("campaigns.campaign_id", ondelete="CASCADE"), nullable=False),
    Column("title", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("image_url", String(2000)),
    Column("landing_url", String(2000)),
    Column("category", String(200)),
    Column("brand", String(200)),
    Column("price", Float),
    Column("status", String(10), nullable=False),
    Index("ix_ads_campaign", "campaign_id"),
    Index("ix_ads_category", "category"),
)

# Events are not foreign-keyed to users and ads: the serving path must accept events for users it has not been
# told about yet (anonymous visitors), and an ad's history outlives the ad.
events = Table(
    "events",
    metadata,
    Column("event_id", ID, primary_key=True),
    Column("type", SmallInteger, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("ad_id", ID, nullable=False),
    Column("ts", Float, nullable=False),
    Column("placement", String(100)),
    Column("cost", Float, nullable=False),
    Column("request_id", String(200)),
    Column("value", Float),
    Column("propensity", Float),
    # Two secondary indexes only: each one costs ingest speed (benchmarks/bench_ingest.py). user_id serves
    # erasure, profiles and frequency caps; ts serves time-ordered scans. Per-ad reporting reads aggregates.
    Index("ix_events_user", "user_id"),
    Index("ix_events_ts", "ts"),
)

ctr_examples = Table(
    "ctr_examples",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("label", SmallInteger, nullable=False),
    Column("ts", Float),
    Column("features", JSON, nullable=False),
)

# Version 2. Derived (behavioural) profile data; declared attributes stay in ``users``. Decayed values are at
# ``ref_ts`` (see adrec.profiles.profile). Both tables cascade from the user: erasure removes them.
profiles = Table(
    "profiles",
    metadata,
    Column("user_id", ID, ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True),
    Column("ref_ts", Float),
    Column("first_ts", Float),
    Column("last_ts", Float),
    Column("impressions", Integer),
    Column("clicks", Integer),
    Column("conversions", Integer),
    Column("decayed", JSON),
    Column("ctr", Float),
    Column("hours", JSON),
    Column("embedding", JSON),
    Column("updated_at", Float, nullable=False),
)

# One row per (user, dimension, value) so that segments resolve in SQL through the (dimension, value, share) index.
profile_interests = Table(
    "profile_interests",
    metadata,
    Column("user_id", ID, ForeignKey("profiles.user_id", ondelete="CASCADE"), primary_key=True),
    Column("dimension", String(20), primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("score", Float, nullable=False),
    Column("share", Float, nullable=False),
    Column("impressions", Integer, nullable=False),
    Column("clicks", Integer, nullable=False),
    Column("conversions", Integer, nullable=False),
    Column("last_ts", Float, nullable=False),
    Index("ix_profile_interests_value", "dimension", "value", "share"),
)

# Version 3: the serving ledger. One row per served ad (impression token), created by its impression event and
# advanced by its click and conversion; it is what makes feedback idempotent per token and charges each at most once.
deliveries = Table(
    "deliveries",
    metadata,
    Column("iid", String(64), primary_key=True),
    Column("user_id", ID, nullable=False),
    Column("ad_id", ID, nullable=False),
    Column("campaign_id", ID, nullable=False),
    Column("advertiser_id", ID, nullable=False),
    Column("pricing_model", String(3), nullable=False),
    Column("price", Float, nullable=False),
    Column("placement", String(100)),
    Column("served_ts", Float, nullable=False),
    Column("impression_ts", Float, nullable=False),
    Column("click_ts", Float),
    Column("conversion_ts", Float),
    Column("cost", Float, nullable=False),
    # Version 6: the slot the ad was served in (1 = top), from its token; NULL where the token predates it.
    Column("position", SmallInteger),
    Index("ix_deliveries_user", "user_id", "impression_ts"),
)

# Per campaign and UTC day: what budgets, pacing and reports read. Updated in the transaction of the feedback.
delivery_daily = Table(
    "delivery_daily",
    metadata,
    Column("campaign_id", ID, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("impressions", Integer, nullable=False),
    Column("clicks", Integer, nullable=False),
    Column("conversions", Integer, nullable=False),
    Column("spend", Float, nullable=False),
    # Version 4: what was delivered but not billed (the budget was spent, or the campaign had ended).
    Column("unbilled", Float, nullable=False, server_default="0"),
)

# Version 5: each campaign's spend and unbilled delivery so far (the sums of its delivery_daily rows), kept in the
# same transaction: what total budgets are checked against, without summing a campaign's whole history each time.
campaign_totals = Table(
    "campaign_totals",
    metadata,
    Column("campaign_id", ID, primary_key=True),
    Column("spend", Float, nullable=False),
    Column("unbilled", Float, nullable=False),
)

# API keys of the HTTP API, stored as SHA-256 of the secret (keys are 256-bit random, so no slow hash is needed).
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("advertiser_id", ID),
    Column("name", String(200), nullable=False),
    Column("created_ts", Float, nullable=False),
    Column("revoked", Boolean, nullable=False),
)

EVENT_COLUMNS = tuple(c.name for c in events.columns)
