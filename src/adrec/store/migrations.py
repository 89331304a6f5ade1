"""Versioned schema migrations.

A new database is created at the latest version from :mod:`adrec.store.tables` and stamped with it. An existing
one is brought forward by running, in order, every migration above its stamped version. A migration is a
function of a SQLAlchemy connection that issues explicit DDL; add one here (and bump
:data:`adrec.store.tables.SCHEMA_VERSION`) whenever a table changes.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from adrec.exceptions import StoreError
from adrec.store import tables

Migration = Callable[[Connection], None]


def _add_profiles(conn: Connection) -> None:
    tables.profiles.create(conn, checkfirst=True)
    tables.profile_interests.create(conn, checkfirst=True)


def _add_serving(conn: Connection) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(tables.campaigns.name)}
    if "frequency" not in have:
        conn.execute(text("ALTER TABLE campaigns ADD COLUMN frequency JSON"))
    if "pacing" not in have:
        conn.execute(text("ALTER TABLE campaigns ADD COLUMN pacing VARCHAR(10)"))
    for table in (tables.deliveries, tables.delivery_daily, tables.api_keys):
        table.create(conn, checkfirst=True)


def _add_unbilled(conn: Connection) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(tables.delivery_daily.name)}
    if "unbilled" not in have:
        conn.execute(text("ALTER TABLE delivery_daily ADD COLUMN unbilled FLOAT NOT NULL DEFAULT 0"))


def _add_campaign_totals(conn: Connection) -> None:
    tables.campaign_totals.create(conn, checkfirst=True)
    conn.execute(
        text(
            "INSERT INTO campaign_totals (campaign_id, spend, unbilled) "
            "SELECT campaign_id, SUM(spend), SUM(unbilled) FROM delivery_daily GROUP BY campaign_id"
        )
    )


def _add_delivery_position(conn: Connection) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(tables.deliveries.name)}
    if "position" not in have:
        conn.execute(text("ALTER TABLE deliveries ADD COLUMN position SMALLINT"))


# version -> (description, function). Version 1 is the initial schema, created from the table definitions.
MIGRATIONS: dict[int, tuple[str, Migration]] = {
    2: ("profiles and profile_interests: behaviour derived from events", _add_profiles),
    3: ("serving: campaign frequency caps and pacing, deliveries ledger, daily delivery, API keys", _add_serving),
    4: ("daily delivery: unbilled delivery (budget spent, campaign ended)", _add_unbilled),
    5: ("campaign_totals: each campaign's running spend and unbilled delivery", _add_campaign_totals),
    6: ("deliveries: the slot each ad was served in", _add_delivery_position),
}


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table(tables.meta.name):
        return 0
    row = conn.execute(select(tables.meta.c.value).where(tables.meta.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def _stamp(conn: Connection, version: int) -> None:
    conn.execute(tables.meta.delete().where(tables.meta.c.key == "schema_version"))
    conn.execute(tables.meta.insert().values(key="schema_version", value=str(version)))


def migrate(conn: Connection) -> int:
    """Create or upgrade the schema inside the caller's transaction; return the resulting version."""
    version = current_version(conn)
    if version == 0:
        tables.metadata.create_all(conn)
        _stamp(conn, tables.SCHEMA_VERSION)
        return tables.SCHEMA_VERSION
    if version > tables.SCHEMA_VERSION:
        raise StoreError(
            f"the store is at schema version {version}, newer than this adrec knows ({tables.SCHEMA_VERSION}); "
            "upgrade adrec"
        )
    for target in range(version + 1, tables.SCHEMA_VERSION + 1):
        if target not in MIGRATIONS:
            raise StoreError(f"no migration to schema version {target}")
        MIGRATIONS[target][1](conn)
        _stamp(conn, target)
    return tables.SCHEMA_VERSION
