"""A version-1 store (before profiles and the serving ledger) is migrated to the latest version on open, keeping
its data."""

from __future__ import annotations

import pytest
from profile_helpers import T0
from sqlalchemy import Column, MetaData, Table, create_engine, inspect, select

from adrec.data.schema import EventType, FrequencyCap, Pacing
from adrec.profiles import ProfileBuilder
from adrec.store import open_store
from adrec.store import tables as t
from adrec.store.migrations import MIGRATIONS

V2_TABLES = {t.profiles.name, t.profile_interests.name}
V3_TABLES = {t.deliveries.name, t.delivery_daily.name, t.api_keys.name}


def _make_v1(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        t.metadata.create_all(conn, tables=[x for x in t.metadata.sorted_tables if x.name not in V2_TABLES | V3_TABLES])
        conn.execute(t.meta.insert().values(key="schema_version", value="1"))
        conn.execute(
            t.users.insert().values(
                user_id="ann",
                age=29,
                gender="female",
                device="mobile",
                interests=["cosmetics"],
                consent=True,
                attrs={},
                updated_at=T0,
            )
        )
        conn.execute(t.advertisers.insert().values(advertiser_id="adv", name="Acme"))
        conn.execute(
            t.campaigns.insert().values(
                campaign_id="c1",
                advertiser_id="adv",
                name="Old",
                objective="traffic",
                pricing_model="CPC",
                bid=0.5,
                status="active",
                targeting={},
            )
        )
        conn.execute(
            t.events.insert().values(event_id="e1", type=int(EventType.CLICK), user_id="ann", ad_id="a1", ts=T0, cost=0)
        )
    engine.dispose()


def test_version_1_store_gains_the_profile_tables_and_keeps_its_data(store_url: str) -> None:
    _make_v1(store_url)
    engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    assert not (V2_TABLES | V3_TABLES) & set(inspect(engine).get_table_names())
    with open_store(store_url) as store:
        assert store.schema_version() == t.SCHEMA_VERSION == 6
        campaign = store.get_campaign("c1")  # written before version 3: caps and pacing read as the defaults
        assert campaign.frequency == FrequencyCap() and campaign.pacing == Pacing.EVEN
        user = store.get_user("ann")
        assert (user.age, user.interests) == (29, ("cosmetics",))
        assert store.count_events(user_id="ann") == 1
        ProfileBuilder().rebuild(store)
        behaviour = store.get_profile("ann").behaviour
        assert behaviour is not None and behaviour.clicks == 1
    assert set(inspect(engine).get_table_names()) >= V2_TABLES | V3_TABLES
    with engine.connect() as conn:
        stamp = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version")).scalar_one()
    engine.dispose()
    assert stamp == "6"
    with open_store(store_url) as store:  # reopening at the latest version runs nothing more
        assert store.get_profile("ann").behaviour is not None


def test_every_version_above_1_has_a_migration() -> None:
    assert sorted(MIGRATIONS) == list(range(2, t.SCHEMA_VERSION + 1))


@pytest.mark.parametrize("name", sorted(V2_TABLES))
def test_profile_tables_cascade_from_users(name: str) -> None:
    table = t.metadata.tables[name]
    (fk,) = [fk for fk in table.foreign_keys if fk.parent.name == "user_id"]
    assert fk.ondelete == "CASCADE"


def test_version_5_deliveries_gain_the_slot_column_and_keep_their_rows(store_url: str) -> None:
    engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    # The version-5 schema: deliveries without the position column.
    old = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in t.deliveries.columns]
    deliveries = Table("deliveries", MetaData(), *(c for c in old if c.name != "position"))
    with engine.begin() as conn:
        t.metadata.create_all(conn, tables=[x for x in t.metadata.sorted_tables if x is not t.deliveries])
        deliveries.create(conn)
        conn.execute(t.meta.insert().values(key="schema_version", value="5"))
        conn.execute(
            deliveries.insert().values(
                iid="r1-1",
                user_id="ann",
                ad_id="a1",
                campaign_id="c1",
                advertiser_id="adv",
                pricing_model="CPC",
                price=0.5,
                served_ts=T0,
                impression_ts=T0,
                cost=0.0,
            )
        )
    assert "position" not in {c["name"] for c in inspect(engine).get_columns("deliveries")}
    with open_store(store_url) as store:
        assert store.schema_version() == 6
        (batch,) = store.iter_served()
        assert batch.iid.tolist() == ["r1-1"] and batch.position.tolist() == [0]
    assert "position" in {c["name"] for c in inspect(engine).get_columns("deliveries")}
    engine.dispose()
