"""The SQL store: every role in one object over one engine, registered for ``sqlite://`` and ``postgresql://``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    cast,
    func,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from adrec.data.schema import (
    EventType,
)
from adrec.exceptions import NotFoundError, StoreError
from adrec.store import tables as t
from adrec.store.base import (
    ErasureReport,
    MarketStats,
    register_backend,
)
from adrec.store.sql.engine import shown_url
from adrec.store.sql.events import SqlEventLog
from adrec.store.sql.keys import SqlKeyStore
from adrec.store.sql.ledger import SqlLedger
from adrec.store.sql.market import SqlMarketStore
from adrec.store.sql.profiles import SqlProfileStore

__all__ = ["SqlStore"]


class SqlStore(SqlMarketStore, SqlEventLog, SqlLedger, SqlProfileStore, SqlKeyStore):
    """A :class:`~adrec.store.base.Store` over a SQLAlchemy engine (SQLite or PostgreSQL).

    Parameters
    ----------
    url
        ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite://`` (in memory) or
        ``postgresql://user@host:port/db``.
    create
        Create the store when the URL holds none; else raise :class:`StoreError` (see
        :func:`~adrec.store.base.open_store`).
    """

    def delete_user(self, user_id: str) -> ErasureReport:
        """Right to erasure: remove the user's record, profile and every event about them, in one transaction."""
        with self._write_lock, self._engine.begin() as conn:
            conn.execute(t.profile_interests.delete().where(t.profile_interests.c.user_id == user_id))
            n_profiles = conn.execute(t.profiles.delete().where(t.profiles.c.user_id == user_id)).rowcount
            n_events = conn.execute(t.events.delete().where(t.events.c.user_id == user_id)).rowcount
            conn.execute(t.deliveries.delete().where(t.deliveries.c.user_id == user_id))
            n_users = conn.execute(t.users.delete().where(t.users.c.user_id == user_id)).rowcount
        if n_users == 0 and n_events == 0:
            raise NotFoundError(f"no user with id {user_id!r}")
        return ErasureReport(user_id=user_id, users=n_users, events=n_events, profiles=n_profiles)

    # -- whole store -----------------------------------------------------------------------------------------
    def stats(self, top: int = 10) -> MarketStats:
        e = t.events
        with self._engine.connect() as conn:

            def count(table: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

            by_type: dict[int, int] = {
                int(k): int(v) for k, v in conn.execute(select(e.c.type, func.count()).group_by(e.c.type)).all()
            }
            spend = conn.execute(select(func.coalesce(func.sum(e.c.cost), 0.0))).scalar_one()
            unbilled = conn.execute(select(func.coalesce(func.sum(t.campaign_totals.c.unbilled), 0.0))).scalar_one()
            imp = func.sum(cast(e.c.type == int(EventType.IMPRESSION), Integer))
            clk = func.sum(cast(e.c.type == int(EventType.CLICK), Integer))
            cat_query = (
                select(t.ads.c.category, imp.label("imps"), clk.label("clicks"))
                .select_from(e.join(t.ads, t.ads.c.ad_id == e.c.ad_id))
                .where(t.ads.c.category.is_not(None))
                .group_by(t.ads.c.category)
                .order_by(imp.desc(), t.ads.c.category)
                .limit(top)
            )
            cats = [(str(r[0]), int(r[1] or 0), int(r[2] or 0)) for r in conn.execute(cat_query)]
            return MarketStats(
                users=count(t.users),
                advertisers=count(t.advertisers),
                campaigns=count(t.campaigns),
                ads=count(t.ads),
                events={et.name.lower(): int(by_type.get(int(et), 0)) for et in EventType},
                spend=float(spend),
                ctr_examples=count(t.ctr_examples),
                top_categories=cats,
                unbilled=float(unbilled),
            )


def _open(url: str, *, create: bool) -> SqlStore:
    try:
        return SqlStore(url, create=create)
    except SQLAlchemyError as err:
        raise StoreError(f"cannot open store {shown_url(url)}: {err}") from None


register_backend("sqlite", _open)
register_backend("postgresql", _open)
