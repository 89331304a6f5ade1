"""The SQL store: one implementation over SQLAlchemy Core for SQLite (embedded) and PostgreSQL (scale-out).

SQLite runs in WAL mode with ``synchronous=FULL``: a write that returned survives a crash of the process (and of
the machine). PostgreSQL commits are durable by default. Bulk paths (events, users) use the driver's
``executemany`` with ``INSERT ... ON CONFLICT``, which both engines understand.
"""

from __future__ import annotations

import functools
import json
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import numpy as np
from sqlalchemy import (
    JSON,
    Engine,
    Integer,
    and_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from adrec.data.profile import Behaviour, InterestStats, Profile
from adrec.data.schema import (
    Ad,
    Advertiser,
    Campaign,
    Event,
    EventBatch,
    EventType,
    FrequencyCap,
    Pacing,
    Targeting,
    User,
    day_name,
    to_epoch,
)
from adrec.data.segment import Segment
from adrec.exceptions import NotFoundError, StoreError
from adrec.store import tables as t
from adrec.store.base import (
    ApiKeyRecord,
    CtrExample,
    DailyDelivery,
    ErasureReport,
    Feedback,
    FeedbackResult,
    IngestResult,
    MarketStats,
    OnBadRow,
    demographic_segment,
    register_backend,
)
from adrec.store.migrations import current_version, migrate

__all__ = ["SqlStore"]

_R = TypeVar("_R")

# Rows per executemany call: large enough to amortise round trips, small enough to bound memory.
CHUNK = 20_000
# Ids per ``IN (...)`` list: well under SQLite's limit of bound parameters per statement.
IN_CHUNK = 5_000


# The event a pricing model bills.
_BILLABLE = {"CPM": EventType.IMPRESSION, "CPC": EventType.CLICK, "CPA": EventType.CONVERSION}


@dataclass
class _LedgerChanges:
    """What a batch of feedback adds to the serving ledger: decided by :func:`_apply_to_ledger`, then written.

    Kept as scalars in a few dicts and lists rather than as an object per event or per served ad: every object
    that lives through a request of thousands of events brings the garbage collector's next pass over the whole
    process (model and catalogue included) sooner.
    """

    accepted: list[Feedback] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    """What each accepted event is charged."""
    impressions: dict[str, Feedback] = field(default_factory=dict)
    """iid → the impression that creates its ledger row."""
    clicks: dict[str, float] = field(default_factory=dict)
    """iid → the time of its click."""
    conversions: dict[str, float] = field(default_factory=dict)
    """iid → the time of its conversion."""
    charged: dict[str, float] = field(default_factory=dict)
    """iid → the cost added to its ledger row (every served ad an accepted event is about)."""
    daily: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    """(campaign, UTC day number) → impressions, clicks, conversions, spend and unbilled delivery to add."""

    def event_rows(self) -> Iterator[tuple[Any, ...]]:
        """The accepted events as ``events`` rows, made one at a time as the driver binds them."""
        for f, cost in zip(self.accepted, self.costs, strict=True):
            d = f.delivery
            yield f.event_id, int(f.type), d.user_id, d.ad_id, f.ts, d.placement, cost, d.iid, f.value, None

    def created_rows(self) -> Iterator[tuple[Any, ...]]:
        """The ``deliveries`` rows the batch creates, in column order."""
        for iid, f in self.impressions.items():
            d = f.delivery
            yield (
                iid,
                d.user_id,
                d.ad_id,
                d.campaign_id,
                d.advertiser_id,
                d.pricing_model,
                d.price,
                d.placement,
                d.served_ts,
                f.ts,
                self.clicks.get(iid),
                self.conversions.get(iid),
                self.charged[iid],
            )

    def advanced_rows(self, stored: dict[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """``(click_ts, conversion_ts, cost, iid)`` of the stored ledger rows the batch advances."""
        return [
            (self.clicks.get(iid, click_ts), self.conversions.get(iid, conversion_ts), cost + self.charged[iid], iid)
            for iid, (click_ts, conversion_ts, cost) in stored.items()
            if iid in self.charged
        ]


@dataclass(frozen=True)
class _Terms:
    """What the ledger needs of a campaign to bill it: whether it still bills, its budgets and frequency caps."""

    ended: bool
    end_ts: float | None
    daily_budget: float | None
    total_budget: float | None
    cap_ad: int
    cap_campaign: int
    window_s: float

    @classmethod
    def of_row(cls, status: str, end_ts: float | None, daily: Any, total: Any, frequency: Any) -> _Terms:
        # PostgreSQL's driver hands JSON over parsed, SQLite's as text.
        caps = _caps(frequency if isinstance(frequency, str) else json.dumps(frequency or {}, sort_keys=True))
        return cls(
            status == "ended",
            end_ts,
            None if daily is None else float(daily),
            None if total is None else float(total),
            *caps,
        )

    @property
    def capped(self) -> bool:
        return self.cap_ad > 0 or self.cap_campaign > 0

    def bills_at(self, ts: float) -> bool:
        return not self.ended and (self.end_ts is None or ts < self.end_ts)


@functools.lru_cache(maxsize=1024)
def _caps(frequency: str) -> tuple[int, int, float]:
    """``(per ad, per campaign, window)`` of a stored frequency cap (a few distinct texts: parsed once each)."""
    cap = json.loads(frequency) or {}
    return int(cap.get("per_ad") or 0), int(cap.get("per_campaign") or 0), float(cap.get("window_s") or 86_400.0)


@dataclass
class _LedgerState:
    """What is stored that decides a batch, read under the write lock (see :meth:`SqlStore.apply_feedback`)."""

    recorded: dict[str, str | None]
    """Event id → the iid (token) it was recorded for (None: an event not from a token, e.g. imported)."""
    stored: dict[str, tuple[Any, ...]]
    """iid → ``(click_ts, conversion_ts, cost)`` of the ledger rows stored before the batch."""
    ads: dict[str, str] = field(default_factory=dict)
    """Ad id → its campaign, for the ads the batch's tokens name."""
    terms: dict[str, _Terms] = field(default_factory=dict)
    """Campaign id → its billing terms."""
    spent_total: dict[str, float] = field(default_factory=dict)
    """Campaign id → its spend so far (campaigns with a budget only)."""
    spent_day: dict[tuple[str, int], float] = field(default_factory=dict)
    """(campaign id, UTC day number) → its spend that day (campaigns with a daily budget only)."""
    shown: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict)
    """(user, campaign) → ``(ad, impression_ts)`` of its recorded impressions (capped campaigns only)."""


def _apply_to_ledger(feedback: Sequence[Feedback], state: _LedgerState) -> tuple[FeedbackResult, _LedgerChanges]:
    """Decide each event of a batch against what is stored (``state``, updated in place).

    Events apply in time order (an impression before its click, whatever their order in the batch), then by type;
    ties keep the batch order. An event is rejected when its token names an ad that is not in the library (or not of
    the token's campaign), when its event id was already used for another token, when it breaks the order of one
    impression, then one click, then one conversion per token, and (impressions) when the user already had as many
    impressions of the campaign or ad within its frequency-cap window as the cap allows. An accepted billable event
    is charged the token's price, but never more than what is left of its campaign's daily and total budgets, and
    nothing once the campaign has ended; the rest is recorded as unbilled delivery.
    """
    changes = _LedgerChanges()
    rejected: list[tuple[int, str]] = []
    duplicates = 0
    unbilled = 0.0
    recorded, stored = state.recorded, state.stored
    by_type = sorted(range(len(feedback)), key=[int(f.type) for f in feedback].__getitem__)
    for i in sorted(by_type, key=[f.ts for f in feedback].__getitem__):  # stable: ties in ts stay by type
        f = feedback[i]
        dv = f.delivery
        iid = dv.iid
        if f.event_id in recorded:
            if recorded[f.event_id] == iid:
                duplicates += 1
            else:
                rejected.append((i, f"event id {f.event_id!r} was already used for another served ad"))
            continue
        if state.ads.get(dv.ad_id) != dv.campaign_id:
            rejected.append((i, f"the token's ad {dv.ad_id!r} is not an ad of campaign {dv.campaign_id!r}"))
            continue
        terms = state.terms.get(dv.campaign_id)
        kind = f.type
        row = stored.get(iid)
        if kind == EventType.IMPRESSION:
            if row is not None or iid in changes.impressions:
                rejected.append((i, "an impression of this token is already recorded"))
                continue
            if terms is not None and terms.capped:
                reason = _cap_reached(terms, state.shown.get((dv.user_id, dv.campaign_id), []), dv.ad_id, f.ts)
                if reason:
                    rejected.append((i, reason))
                    continue
                state.shown.setdefault((dv.user_id, dv.campaign_id), []).append((dv.ad_id, f.ts))
            changes.impressions[iid] = f
        elif kind == EventType.CLICK:
            if row is None and iid not in changes.impressions:
                rejected.append((i, "click without a recorded impression of this token"))
                continue
            if iid in changes.clicks or (row is not None and row[0] is not None):
                rejected.append((i, "this token was already clicked"))
                continue
            changes.clicks[iid] = f.ts
        else:
            if iid not in changes.clicks and (row is None or row[0] is None):
                rejected.append((i, "conversion without a recorded click of this token"))
                continue
            if iid in changes.conversions or (row is not None and row[1] is not None):
                rejected.append((i, "this token already converted"))
                continue
            changes.conversions[iid] = f.ts
        day_number = int(f.ts // 86_400)
        price = dv.price if _BILLABLE[dv.pricing_model] == kind else 0.0
        cost = _charge(state, terms, dv.campaign_id, day_number, f.ts, price) if price > 0 else 0.0
        changes.charged[iid] = changes.charged.get(iid, 0.0) + cost
        recorded[f.event_id] = iid
        changes.accepted.append(f)
        changes.costs.append(cost)
        key = (dv.campaign_id, day_number)
        day = changes.daily.get(key)
        if day is None:
            day = changes.daily[key] = [0, 0, 0, 0.0, 0.0]
        day[kind] += 1
        day[3] += cost
        day[4] += price - cost
        unbilled += price - cost
    result = FeedbackResult(
        len(feedback), len(changes.accepted), duplicates, sorted(rejected), sum(changes.costs), unbilled
    )
    return result, changes


def _cap_reached(terms: _Terms, shown: list[tuple[str, float]], ad_id: str, ts: float) -> str:
    """Why one more impression at ``ts`` breaks the campaign's frequency caps, given the user's recorded
    impressions of the campaign (``(ad, time)``); empty when it does not. The window is ``[ts - window_s, ts]``,
    as serving counts it."""
    since = ts - terms.window_s
    recent = [a for a, t_ in shown if since <= t_ <= ts]
    if terms.cap_campaign and len(recent) >= terms.cap_campaign:
        return f"frequency cap reached: {len(recent)} impressions of the campaign within {terms.window_s:g} s"
    if terms.cap_ad and recent.count(ad_id) >= terms.cap_ad:
        return f"frequency cap reached: {recent.count(ad_id)} impressions of the ad within {terms.window_s:g} s"
    return ""


def _charge(state: _LedgerState, terms: _Terms | None, campaign: str, day: int, ts: float, price: float) -> float:
    """What a billable event of ``price`` is charged: the price, capped at what is left of the campaign's daily and
    total budgets (updated), and nothing once the campaign has ended."""
    if terms is None:  # a campaign the library no longer has: its ads are rejected before this
        return price
    if not terms.bills_at(ts):
        return 0.0
    if terms.daily_budget is None and terms.total_budget is None:
        return price
    key = (campaign, day)
    today = state.spent_day.get(key, 0.0)
    total = state.spent_total.get(campaign, 0.0)
    cost = price
    if terms.daily_budget is not None:
        cost = min(cost, max(terms.daily_budget - today, 0.0))
    if terms.total_budget is not None:
        cost = min(cost, max(terms.total_budget - total, 0.0))
    if cost > 0:
        state.spent_day[key] = today + cost
        state.spent_total[campaign] = total + cost
    return cost


# How to make a store where there is none: said by every "no store" error.
_CREATE_HINT = "create one with `adrec simulate`, `adrec import` or `adrec serve --create`, or check the URL"


def _shown(url: str) -> str:
    """The URL as error messages show it: without its password."""
    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return repr(url)


def _engine_for(url: str, *, create: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise StoreError(f"malformed store URL {url!r}: {err}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        # psycopg 3 is the driver adrec installs (extra "postgres").
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        database = parsed.database or ""
        memory = database in ("", ":memory:")
        if not memory:
            from pathlib import Path

            path = Path(database).expanduser().resolve()
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.is_file():
                # Checked before connecting: SQLite creates a missing file on connect.
                raise StoreError(f"no adrec store at {_shown(url)}: {path} does not exist; {_CREATE_HINT}")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 60, "check_same_thread": False}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as err:
        raise StoreError(
            f"the driver for {parsed.drivername} is not installed ({err.name}); pip install 'adrec[postgres]'"
        ) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    # 64 MiB page cache: index pages of a growing event log stay in memory during bulk ingest.
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def _dump_targeting(targeting: Targeting) -> dict[str, Any]:
    return {k: sorted(v) if isinstance(v, frozenset) else v for k, v in targeting.model_dump().items()}


def _user_row(u: User, now: float) -> dict[str, Any]:
    row = u.model_dump()
    row["gender"] = u.gender.value
    row["device"] = u.device.value
    row["interests"] = list(u.interests)
    row["updated_at"] = now
    return row


def _campaign_row(c: Campaign) -> dict[str, Any]:
    return {
        "campaign_id": c.campaign_id,
        "advertiser_id": c.advertiser_id,
        "name": c.name,
        "objective": c.objective.value,
        "pricing_model": c.pricing_model.value,
        "bid": c.bid,
        "daily_budget": c.daily_budget,
        "total_budget": c.total_budget,
        "start_ts": to_epoch(c.start) if c.start else None,
        "end_ts": to_epoch(c.end) if c.end else None,
        "status": c.status.value,
        "targeting": _dump_targeting(c.targeting),
        "frequency": c.frequency.model_dump(),
        "pacing": c.pacing.value,
    }


def _ad_row(a: Ad) -> dict[str, Any]:
    row = a.model_dump()
    row["status"] = a.status.value
    return row


_PROFILE_FIELDS = tuple(c.name for c in t.profiles.columns if c.name != "user_id")


def _profile_row(p: Profile, now: float) -> dict[str, Any]:
    b = p.behaviour
    row: dict[str, Any] = {"user_id": p.user_id, "updated_at": now}
    row["embedding"] = None if p.embedding is None else list(p.embedding)
    if b is None:
        row.update(dict.fromkeys(("ref_ts", "first_ts", "last_ts", "impressions", "clicks", "conversions", "ctr")))
        row.update(decayed=None, hours=None)
        return row
    row.update(
        ref_ts=b.ref_ts,
        first_ts=b.first_ts,
        last_ts=b.last_ts,
        impressions=b.impressions,
        clicks=b.clicks,
        conversions=b.conversions,
        decayed=list(b.decayed),
        ctr=b.ctr,
        hours=list(b.hours),
    )
    return row


def _interest_rows(p: Profile) -> list[tuple[Any, ...]]:
    b = p.behaviour
    if b is None:
        return []
    rows = []
    for dimension, stats in b.interests.items():
        shares = b.affinities(dimension)
        for value, s in stats.items():
            rows.append((p.user_id, dimension, value, s.score, shares.get(value, 0.0), *s[1:]))
    return rows


class _DriverQuery:
    """A fixed SELECT run on a pooled DBAPI connection: compiled once for the engine's dialect, its rows converted
    by the same result processors SQLAlchemy would apply.

    For one-row lookups on the serving path, where SQLAlchemy's per-execution bookkeeping costs several times the
    query itself.
    """

    def __init__(self, engine: Any, query: Any) -> None:
        compiled = query.compile(dialect=engine.dialect)
        self._engine = engine
        self._sql = str(compiled)
        self._order = list(compiled.positiontup or []) if compiled.positional else None
        self._columns = list(query.selected_columns)
        self._names = [c.name for c in self._columns]
        self._processors: list[Any] | None = None  # from the first result's column types (the DBAPI's type codes)

    def first(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict by column name (None when there is none)."""
        args: Any = tuple(params[name] for name in self._order) if self._order is not None else params
        conn = self._engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self._sql, args)
                row = cursor.fetchone()
                if self._processors is None:
                    dialect = self._engine.dialect
                    self._processors = [
                        c.type.dialect_impl(dialect).result_processor(dialect, d[1])
                        for c, d in zip(self._columns, cursor.description, strict=True)
                    ]
            finally:
                cursor.close()
        finally:
            conn.close()  # back to the pool (rolled back there, as SQLAlchemy does)
        if row is None:
            return None
        return {
            name: value if process is None or value is None else process(value)
            for name, process, value in zip(self._names, self._processors or [], row, strict=True)
        }


def _profile(row: dict[str, Any], interests: dict[str, dict[str, Any]]) -> Profile:
    fields = {c: row.pop(f"p_{c}") for c in _PROFILE_FIELDS}
    user = SqlStore._user(row)
    behaviour = None
    if fields["ref_ts"] is not None:
        behaviour = Behaviour(
            ref_ts=fields["ref_ts"],
            first_ts=fields["first_ts"],
            last_ts=fields["last_ts"],
            impressions=fields["impressions"],
            clicks=fields["clicks"],
            conversions=fields["conversions"],
            decayed=tuple(fields["decayed"]),
            ctr=fields["ctr"],
            hours=tuple(fields["hours"]),
            interests=interests,
        )
    embedding = fields["embedding"]
    return Profile(user, behaviour, None if embedding is None else tuple(embedding), updated_at=fields["updated_at"])


class SqlStore:
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

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self._engine = _engine_for(url, create=create)
        self._dialect = self._engine.dialect.name
        self._ph = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        # SQLite allows one writer; serialising writers in-process avoids busy waits between threads.
        self._write_lock = threading.Lock()
        # (catalog version, ad → campaign, campaign → billing terms), read by the ledger (see _library).
        self._library_cache: tuple[int, dict[str, str], dict[str, _Terms]] = (-1, {}, {})
        self._one_profile: Any = None
        # Idempotent by event id, for the append path. The serving ledger inserts plainly (_insert_rows): it reads
        # the stored ids under its write lock, so a conflict there would be an error, not a duplicate.
        self._insert_events = (
            f"INSERT INTO events ({', '.join(t.EVENT_COLUMNS)}) "
            f"VALUES ({', '.join([self._ph] * len(t.EVENT_COLUMNS))}) ON CONFLICT (event_id) DO NOTHING"
        )
        try:
            with self._engine.begin() as conn:
                if not create and current_version(conn) == 0:
                    raise StoreError(
                        f"no adrec store at {_shown(url)}: the database has no adrec schema (no table "
                        f"{t.meta.name}); {_CREATE_HINT}"
                    )
                self._version = migrate(conn)
        except OperationalError as err:
            self._engine.dispose()
            raise StoreError(f"cannot open store {_shown(url)}: {err.orig}") from None
        except StoreError:
            self._engine.dispose()
            raise

    # -- plumbing --------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"SqlStore({self.url!r})"

    def schema_version(self) -> int:
        return self._version

    def _insert(self, table: Any) -> Any:
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _upsert_sql(self, table: Any, key: str) -> tuple[str, list[str], list[bool]]:
        """The driver-level ``INSERT ... ON CONFLICT DO UPDATE`` of ``table``, its columns and which are JSON."""
        columns = [c.name for c in table.columns]
        is_json = [isinstance(c.type, JSON) for c in table.columns]
        cast = "::json" if self._dialect == "postgresql" else ""
        marks = ", ".join(f"{self._ph}{cast}" if j else self._ph for j in is_json)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )
        return sql, columns, is_json

    def _upsert(self, table: Any, key: str, rows: Iterable[dict[str, Any]], *, bump: str | None = None) -> int:
        """Insert or replace rows by primary key, through the driver's ``executemany`` (JSON pre-serialised);
        ``bump`` names a version (see :meth:`versions`) raised in the same transaction when any row was written.

        SQLAlchemy's dict-per-row executemany costs about ten times the driver's own on wide tables.
        """
        sql, columns, is_json = self._upsert_sql(table, key)
        n = 0
        with self._write_lock, self._engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            try:
                batch: list[tuple[Any, ...]] = []
                for row in rows:
                    batch.append(
                        tuple(json.dumps(row[c]) if j else row[c] for c, j in zip(columns, is_json, strict=True))
                    )
                    if len(batch) >= CHUNK:
                        n += self._executemany(cur, sql, batch, table.name)
                        batch = []
                if batch:
                    n += self._executemany(cur, sql, batch, table.name)
                if bump is not None and n:
                    self._bump(cur, bump)
            finally:
                cur.close()
        return n

    # -- versions: what serving processes poll to learn that the library or the model changed ------------------
    def _bump(self, cur: Any, name: str) -> None:
        cur.execute(
            f"INSERT INTO {t.meta.name} (key, value) VALUES ({self._ph}, '1') ON CONFLICT (key) DO UPDATE SET "
            f"value = CAST(CAST({t.meta.name}.value AS INTEGER) + 1 AS TEXT)",
            (f"version:{name}",),
        )

    def bump_version(self, name: str) -> int:
        """Raise the version ``name`` by one (from 0) and return it; durable when it returns."""
        with self._write_lock, self._engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            try:
                self._bump(cur, name)
            finally:
                cur.close()
            row = conn.execute(select(t.meta.c.value).where(t.meta.c.key == f"version:{name}")).scalar_one()
        return int(row)

    def versions(self) -> dict[str, int]:
        """Counters raised by every change of what serving caches: ``catalog`` (each write of campaigns or ads,
        by any writer) and whatever :meth:`bump_version` raised (``model`` on a model reload). Missing = 0."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.meta.c.key, t.meta.c.value).where(t.meta.c.key.like("version:%"))).all()
        return {str(k).partition(":")[2]: int(v) for k, v in rows}

    @staticmethod
    def _executemany(cur: Any, sql: str, batch: list[tuple[Any, ...]], what: str) -> int:
        try:
            cur.executemany(sql, batch)
        except Exception as err:  # the driver's IntegrityError (sqlite3 / psycopg); both name the constraint
            if "constraint" in str(err).lower() or "foreign key" in str(err).lower():
                raise StoreError(f"cannot write {what}: {err}") from None
            raise
        return len(batch)

    def _get(self, table: Any, key: str, value: str, kind: str) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(table.c[key] == value)).mappings().first()
        if row is None:
            raise NotFoundError(f"no {kind} with id {value!r}")
        return dict(row)

    def _iter(self, table: Any, key: str, batch_size: int) -> Iterator[list[dict[str, Any]]]:
        # Keyset pagination: bounded memory and no long-lived cursor across yields.
        last: str | None = None
        while True:
            query = select(table).order_by(table.c[key]).limit(batch_size)
            if last is not None:
                query = query.where(table.c[key] > last)
            with self._engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(query).mappings()]
            if not rows:
                return
            yield rows
            last = rows[-1][key]

    # -- users -----------------------------------------------------------------------------------------------
    def upsert_users(self, users: Iterable[User]) -> int:
        now = time.time()
        return self._upsert(t.users, "user_id", (_user_row(u, now) for u in users))

    @staticmethod
    def _user(row: dict[str, Any]) -> User:
        row.pop("updated_at", None)
        row["interests"] = tuple(row["interests"])
        return User(**row)

    def get_user(self, user_id: str) -> User:
        return self._user(self._get(t.users, "user_id", user_id, "user"))

    def iter_users(self, batch_size: int = 10_000) -> Iterator[list[User]]:
        for rows in self._iter(t.users, "user_id", batch_size):
            yield [self._user(r) for r in rows]

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

    # -- ad library ------------------------------------------------------------------------------------------
    def upsert_advertisers(self, advertisers: Iterable[Advertiser]) -> int:
        return self._upsert(t.advertisers, "advertiser_id", (a.model_dump() for a in advertisers))

    def upsert_campaigns(self, campaigns: Iterable[Campaign]) -> int:
        return self._upsert(t.campaigns, "campaign_id", (_campaign_row(c) for c in campaigns), bump="catalog")

    def upsert_ads(self, ads: Iterable[Ad]) -> int:
        return self._upsert(t.ads, "ad_id", (_ad_row(a) for a in ads), bump="catalog")

    def get_advertiser(self, advertiser_id: str) -> Advertiser:
        return Advertiser(**self._get(t.advertisers, "advertiser_id", advertiser_id, "advertiser"))

    @staticmethod
    def _campaign(row: dict[str, Any]) -> Campaign:
        start, end = row.pop("start_ts"), row.pop("end_ts")
        row["start"] = datetime.fromtimestamp(start, UTC) if start is not None else None
        row["end"] = datetime.fromtimestamp(end, UTC) if end is not None else None
        row["targeting"] = Targeting(**row["targeting"])
        row["frequency"] = FrequencyCap(**(row["frequency"] or {}))
        row["pacing"] = row["pacing"] or Pacing.EVEN
        return Campaign(**row)

    def get_campaign(self, campaign_id: str) -> Campaign:
        return self._campaign(self._get(t.campaigns, "campaign_id", campaign_id, "campaign"))

    def get_ad(self, ad_id: str) -> Ad:
        return Ad(**self._get(t.ads, "ad_id", ad_id, "ad"))

    def get_ads(self, ad_ids: Sequence[str]) -> list[Ad]:
        """The stored ads among ``ad_ids``, in that order; unknown ids are left out."""
        wanted = list(dict.fromkeys(ad_ids))
        found: dict[str, Ad] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                query = select(t.ads).where(t.ads.c.ad_id.in_(wanted[start : start + IN_CHUNK]))
                found.update((r["ad_id"], Ad(**r)) for r in conn.execute(query).mappings())
        return [found[a] for a in wanted if a in found]

    def iter_campaigns(self, batch_size: int = 10_000, *, on_error: OnBadRow | None = None) -> Iterator[list[Campaign]]:
        yield from self._records(t.campaigns, "campaign_id", batch_size, self._campaign, on_error)

    def iter_ads(self, batch_size: int = 10_000, *, on_error: OnBadRow | None = None) -> Iterator[list[Ad]]:
        yield from self._records(t.ads, "ad_id", batch_size, lambda r: Ad(**r), on_error)

    def _records(
        self,
        table: Any,
        key: str,
        batch_size: int,
        convert: Callable[[dict[str, Any]], _R],
        on_error: OnBadRow | None,
    ) -> Iterator[list[_R]]:
        """Stored rows as records; a row that no longer makes a valid record raises, or goes to ``on_error``
        (``(id, error)``) and is skipped when one is given."""
        for rows in self._iter(table, key, batch_size):
            if on_error is None:
                yield [convert(r) for r in rows]
                continue
            out: list[_R] = []
            for r in rows:
                rid = str(r[key])
                try:
                    out.append(convert(r))
                except (ValueError, TypeError, KeyError, OverflowError) as err:  # ValidationError is a ValueError
                    on_error(rid, err)
            yield out

    # -- events ----------------------------------------------------------------------------------------------
    def append_events(self, events: EventBatch | Sequence[Event]) -> IngestResult:
        """Append events atomically: the whole call is one transaction, durable when it returns.

        Events whose ``event_id`` is already stored are skipped (idempotent resend) and counted as duplicates.
        """
        batch = events if isinstance(events, EventBatch) else EventBatch.from_events(list(events))
        batch.validate()
        if len(batch) == 0:
            return IngestResult(0, 0)
        sql = self._insert_events
        rows = batch.rows()
        inserted = 0
        with self._write_lock, self._engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            try:
                for start in range(0, len(rows), CHUNK):
                    cur.executemany(sql, rows[start : start + CHUNK])
                    inserted += max(cur.rowcount, 0)
            finally:
                cur.close()
        return IngestResult(received=len(batch), inserted=inserted)

    def iter_events(
        self,
        *,
        user_id: str | None = None,
        ad_id: str | None = None,
        types: Sequence[EventType] | None = None,
        since: float | None = None,
        until: float | None = None,
        batch_size: int = 100_000,
    ) -> Iterator[EventBatch]:
        """Stream matching events in (ts, event_id) order, ``batch_size`` at a time."""
        e = t.events
        conds: list[Any] = []
        if user_id is not None:
            conds.append(e.c.user_id == user_id)
        if ad_id is not None:
            conds.append(e.c.ad_id == ad_id)
        if types is not None:
            conds.append(e.c.type.in_([int(x) for x in types]))
        if since is not None:
            conds.append(e.c.ts >= since)
        if until is not None:
            conds.append(e.c.ts < until)
        last: tuple[float, str] | None = None
        while True:
            query = select(*[e.c[name] for name in t.EVENT_COLUMNS]).where(*conds)
            if last is not None:
                query = query.where((e.c.ts > last[0]) | ((e.c.ts == last[0]) & (e.c.event_id > last[1])))
            query = query.order_by(e.c.ts, e.c.event_id).limit(batch_size)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            cols = list(zip(*rows, strict=True))
            yield EventBatch(
                event_id=np.array(cols[0], dtype=object),
                type=np.array(cols[1], dtype=np.int8),
                user_id=np.array(cols[2], dtype=object),
                ad_id=np.array(cols[3], dtype=object),
                ts=np.array(cols[4], dtype=np.float64),
                placement=np.array(cols[5], dtype=object),
                cost=np.array(cols[6], dtype=np.float64),
                request_id=np.array(cols[7], dtype=object),
                value=np.array([np.nan if v is None else v for v in cols[8]], dtype=np.float64),
                propensity=np.array([np.nan if v is None else v for v in cols[9]], dtype=np.float64),
            )
            last = (float(rows[-1][4]), str(rows[-1][0]))

    def count_events(self, *, user_id: str | None = None, type: EventType | None = None) -> int:
        e = t.events
        query = select(func.count()).select_from(e)
        if user_id is not None:
            query = query.where(e.c.user_id == user_id)
        if type is not None:
            query = query.where(e.c.type == int(type))
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # -- profiles --------------------------------------------------------------------------------------------
    def upsert_profiles(self, profiles: Iterable[Profile]) -> int:
        """Store each profile's behaviour and embedding (declared attributes live in ``users``), replacing the
        stored ones; the last of repeated user ids wins. A profile of a user without a record is refused."""
        latest = {p.user_id: p for p in profiles}
        if not latest:
            return 0
        now = time.time()
        sql, columns, is_json = self._upsert_sql(t.profiles, "user_id")
        pi_cols = [c.name for c in t.profile_interests.columns]
        marks = ", ".join([self._ph] * len(pi_cols))
        insert_interests = f"INSERT INTO {t.profile_interests.name} ({', '.join(pi_cols)}) VALUES ({marks})"
        delete_interests = f"DELETE FROM {t.profile_interests.name} WHERE user_id = {self._ph}"
        items = list(latest.values())
        with self._write_lock, self._engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            try:
                for start in range(0, len(items), CHUNK):
                    chunk = items[start : start + CHUNK]
                    rows, interests = [], []
                    for p in chunk:
                        row = _profile_row(p, now)
                        rows.append(
                            tuple(json.dumps(row[c]) if j else row[c] for c, j in zip(columns, is_json, strict=True))
                        )
                        interests += _interest_rows(p)
                    self._executemany(cur, sql, rows, t.profiles.name)
                    cur.executemany(delete_interests, [(p.user_id,) for p in chunk])
                    if interests:
                        self._executemany(cur, insert_interests, interests, t.profile_interests.name)
            finally:
                cur.close()
        return len(items)

    def _profile_query(self) -> Any:
        u, p = t.users, t.profiles
        extra = [p.c[c].label(f"p_{c}") for c in _PROFILE_FIELDS]
        return select(u, *extra).select_from(u.outerjoin(p, p.c.user_id == u.c.user_id))

    def _assemble(self, conn: Any, rows: list[dict[str, Any]]) -> list[Profile]:
        pi = t.profile_interests
        with_behaviour = [r["user_id"] for r in rows if r["p_ref_ts"] is not None]
        interests: dict[str, dict[str, dict[str, InterestStats]]] = {}
        for start in range(0, len(with_behaviour), IN_CHUNK):
            query = (
                select(pi)
                .where(pi.c.user_id.in_(with_behaviour[start : start + IN_CHUNK]))
                .order_by(pi.c.user_id, pi.c.dimension, pi.c.value)
            )
            # Plain tuples in table column order: user_id, dimension, value, score, share, then the evidence.
            for user_id, dimension, value, score, _share, *evidence in conn.execute(query).all():
                interests.setdefault(user_id, {}).setdefault(dimension, {})[value] = InterestStats(score, *evidence)
        return [_profile(r, interests.get(r["user_id"], {})) for r in rows]

    def get_profiles(self, user_ids: Sequence[str]) -> dict[str, Profile]:
        """Profiles of the users among ``user_ids`` that have a record, by user id (unknown ids are left out)."""
        wanted = list(dict.fromkeys(user_ids))
        out: dict[str, Profile] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                query = self._profile_query().where(t.users.c.user_id.in_(wanted[start : start + IN_CHUNK]))
                rows = [dict(r) for r in conn.execute(query).mappings()]
                out.update((p.user_id, p) for p in self._assemble(conn, rows))
        return {u: out[u] for u in wanted if u in out}

    def get_profile(self, user_id: str) -> Profile:
        """The user's profile: declared attributes always, behaviour and embedding where stored.

        On the serving path (once per ad request): the statement is built once and reused.
        """
        query = self._one_profile
        if query is None:
            query = self._one_profile = _DriverQuery(
                self._engine, self._profile_query().where(t.users.c.user_id == bindparam("uid"))
            )
        row = query.first({"uid": user_id})
        if row is None:
            raise NotFoundError(f"no user with id {user_id!r}")
        if row["p_ref_ts"] is None:  # no behaviour: no interest rows to read
            return _profile(row, {})
        with self._engine.connect() as conn:
            return self._assemble(conn, [row])[0]

    def iter_profiles(self, batch_size: int = 10_000) -> Iterator[list[Profile]]:
        """Every user's profile, ``batch_size`` at a time, in user-id order."""
        last: str | None = None
        while True:
            query = self._profile_query().order_by(t.users.c.user_id).limit(batch_size)
            if last is not None:
                query = query.where(t.users.c.user_id > last)
            with self._engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(query).mappings()]
                if not rows:
                    return
                profiles = self._assemble(conn, rows)
            yield profiles
            last = rows[-1]["user_id"]

    def resolve_segment(self, segment: Segment) -> list[str]:
        """The ids of the users in ``segment``, sorted, from one query (see :mod:`adrec.profiles.segments`).

        Under ``interest_match="targeting"`` a user's interests are read as
        :func:`adrec.data.targeting.targeting_interests` reads them: none without consent, else the declared ones
        (the ``interests`` JSON array) and the :data:`~adrec.data.targeting.TOP_CATEGORIES` categories of highest
        share above 0, ties by name in code-point order.
        """
        from adrec.data.targeting import TOP_CATEGORIES

        u, pi = t.users, t.profile_interests
        conds: list[Any] = []
        if segment.age_min is not None:
            conds.append(u.c.age >= segment.age_min)
        if segment.age_max is not None:
            conds.append(u.c.age <= segment.age_max)
        if segment.genders:
            conds.append(u.c.gender.in_(sorted(g.value for g in segment.genders)))
        if segment.regions:
            conds.append(u.c.region.in_(sorted(segment.regions)))
        if segment.city_tiers:
            conds.append(u.c.city_tier.in_(sorted(segment.city_tiers)))
        if segment.devices:
            conds.append(u.c.device.in_(sorted(d.value for d in segment.devices)))
        postgres = self._dialect == "postgresql"

        def targeted(tags: frozenset[str]) -> Any:
            """Users with one of ``tags`` among their targeting interests."""
            wanted = sorted(tags)
            elements = func.json_array_elements_text if postgres else func.json_each
            declared = elements(u.c.interests).table_valued("value")
            # Ranks only the categories of users who have one of the tags at all (found through the value index).
            holders = select(pi.c.user_id).where(pi.c.dimension == "category", pi.c.value.in_(wanted), pi.c.share > 0)
            # Ties in share go by name in code-point order, as Python sorts strings: SQLite's default collation,
            # PostgreSQL's "C".
            name = pi.c.value.collate("C") if postgres else pi.c.value
            rank = func.row_number().over(partition_by=pi.c.user_id, order_by=(pi.c.share.desc(), name))
            ranked = (
                select(pi.c.user_id, pi.c.value, rank.label("rank"))
                .where(pi.c.dimension == "category", pi.c.share > 0, pi.c.user_id.in_(holders))
                .subquery()
            )
            top = select(ranked.c.user_id).where(ranked.c.rank <= TOP_CATEGORIES, ranked.c.value.in_(wanted))
            has_declared = select(declared.c.value).where(declared.c.value.in_(wanted)).exists()
            return and_(u.c.consent.is_(True), or_(has_declared, u.c.user_id.in_(top)))

        def interested(keys: list[tuple[str, str]]) -> Any:
            return select(pi.c.user_id).where(
                or_(*(and_(pi.c.dimension == d, pi.c.value == v) for d, v in keys)),
                pi.c.share >= segment.min_affinity,
            )

        if segment.interest_match == "targeting":
            if segment.interests_include:
                conds.append(targeted(segment.interests_include))
            if segment.interests_exclude:
                conds.append(~targeted(segment.interests_exclude))
        else:
            if segment.behavioural:
                conds.append(u.c.consent.is_(True))
            if segment.interests_include:
                conds.append(u.c.user_id.in_(interested(segment.include_keys())))
            if segment.interests_exclude:
                conds.append(u.c.user_id.not_in(interested(segment.exclude_keys())))
        with self._engine.connect() as conn:
            return [r[0] for r in conn.execute(select(u.c.user_id).where(*conds).order_by(u.c.user_id))]

    # -- CTR logs --------------------------------------------------------------------------------------------
    def append_ctr_examples(self, examples: Sequence[CtrExample]) -> int:
        """Store labelled CTR rows; a row with the same ``(source, line)`` replaces the stored one."""
        stmt = self._insert(t.ctr_examples)
        stmt = stmt.on_conflict_do_update(
            index_elements=["source", "line"],
            set_={"label": stmt.excluded.label, "ts": stmt.excluded.ts, "features": stmt.excluded.features},
        )
        rows = [
            {"source": x.source, "line": x.line, "label": x.label, "ts": x.ts, "features": x.features} for x in examples
        ]
        if not rows:
            return 0
        with self._write_lock, self._engine.begin() as conn:
            for start in range(0, len(rows), CHUNK):
                conn.execute(stmt, rows[start : start + CHUNK])
        return len(rows)

    def iter_ctr_examples(self, source: str | None = None, batch_size: int = 10_000) -> Iterator[list[CtrExample]]:
        c = t.ctr_examples
        last: tuple[str, int] | None = None
        while True:
            query = select(c)
            if source is not None:
                query = query.where(c.c.source == source)
            if last is not None:
                query = query.where((c.c.source > last[0]) | ((c.c.source == last[0]) & (c.c.line > last[1])))
            query = query.order_by(c.c.source, c.c.line).limit(batch_size)
            with self._engine.connect() as conn:
                rows = list(conn.execute(query).mappings())
            if not rows:
                return
            yield [CtrExample(r["source"], r["line"], r["label"], r["features"], r["ts"]) for r in rows]
            last = (rows[-1]["source"], rows[-1]["line"])

    # -- serving ledger --------------------------------------------------------------------------------------
    def apply_feedback(self, feedback: Sequence[Feedback]) -> FeedbackResult:
        """Record impressions, clicks and conversions of served ads in one transaction, durable when it returns.

        Per event id the call is idempotent (a resent id is a duplicate: acknowledged, no effect; the same id for
        another token is rejected). Per served ad (impression token) the ledger allows one impression, then one
        click, then one conversion; impressions beyond the campaign's frequency caps and events about ads that are
        not in the library are rejected with their reason, and the rest of the batch is still recorded. Each
        accepted event is charged the delivery's price when it is the billable event of its pricing model, capped at
        what is left of the campaign's daily and total budgets (nothing after the campaign ended; the difference is
        reported as unbilled), and the campaign's daily delivery row is updated in the same transaction, so budgets
        and reports never disagree with the log.
        """
        if not feedback:
            return FeedbackResult(0, 0, 0)
        event_ids = list(dict.fromkeys(f.event_id for f in feedback))
        iids = list(dict.fromkeys(f.delivery.iid for f in feedback))
        with self._write_lock, self._engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            try:
                # What is stored decides what is recorded and charged, so it is read under the lock the writes
                # take: no writer of another process (a second uvicorn worker) commits in between.
                if self._dialect == "postgresql":
                    cur.execute("SELECT pg_advisory_xact_lock(72431)")
                else:
                    cur.execute("BEGIN IMMEDIATE")
                query = "SELECT event_id, request_id FROM events WHERE event_id"
                recorded: dict[str, str | None] = dict(self._select_in(cur, query, event_ids))
                query = "SELECT iid, click_ts, conversion_ts, cost FROM deliveries WHERE iid"
                stored = {r[0]: r[1:] for r in self._select_in(cur, query, iids)}
                state = self._ledger_state(cur, feedback, recorded, stored)
                result, changes = _apply_to_ledger(feedback, state)
                self._write_feedback(cur, changes, stored)
            finally:
                cur.close()
        return result

    def _library(self, cur: Any, ad_ids: set[str], campaign_ids: set[str]) -> tuple[dict[str, str], dict[str, _Terms]]:
        """The campaign of each ad, and the billing terms of each campaign, of the ids a batch's tokens name.

        Kept between batches while the store's ``catalog`` version (raised in the transaction of every write of
        campaigns or ads, by any process) stays the same: only ids not seen since are read.
        """
        cur.execute(f"SELECT value FROM {t.meta.name} WHERE key = 'version:catalog'")
        row = cur.fetchone()
        version = int(row[0]) if row else 0
        if self._library_cache[0] != version:
            self._library_cache = (version, {}, {})
        _, ads, terms = self._library_cache
        new_ads = [a for a in ad_ids if a not in ads]
        if new_ads:
            ads.update(self._select_in(cur, "SELECT ad_id, campaign_id FROM ads WHERE ad_id", new_ads))
        new_campaigns = [c for c in campaign_ids if c not in terms]
        if new_campaigns:
            query = (
                "SELECT campaign_id, status, end_ts, daily_budget, total_budget, frequency FROM campaigns "
                "WHERE campaign_id"
            )
            terms.update((r[0], _Terms.of_row(*r[1:])) for r in self._select_in(cur, query, new_campaigns))
        return ads, terms

    def _ledger_state(
        self,
        cur: Any,
        feedback: Sequence[Feedback],
        recorded: dict[str, str | None],
        stored: dict[str, tuple[Any, ...]],
    ) -> _LedgerState:
        """Read what decides the batch besides event ids and ledger rows: the tokens' ads and campaigns, the
        budgets' spend (only when the batch bills a campaign with a budget) and the users' recent impressions
        (only for the impressions of campaigns with frequency caps)."""
        state = _LedgerState(recorded, stored)
        ad_ids: set[str] = set()
        campaign_ids: set[str] = set()
        billed: set[str] = set()
        day_numbers: set[int] = set()
        impressions: list[Feedback] = []
        for f in feedback:  # one pass over the batch for everything below
            d = f.delivery
            ad_ids.add(d.ad_id)
            campaign_ids.add(d.campaign_id)
            day_numbers.add(int(f.ts // 86_400))
            if d.price > 0 and _BILLABLE[d.pricing_model] == f.type:
                billed.add(d.campaign_id)
            if f.type == EventType.IMPRESSION:
                impressions.append(f)
        state.ads, terms = self._library(cur, ad_ids, campaign_ids)
        state.terms = terms
        daily = [c for c in billed if (x := terms.get(c)) and x.daily_budget is not None]
        if daily:
            days = {day_name(number): number for number in day_numbers}
            listed = ", ".join(f"'{day}'" for day in days)  # YYYY-MM-DD made here: nothing to escape
            query = f"SELECT campaign_id, day, spend FROM delivery_daily WHERE day IN ({listed}) AND campaign_id"
            for campaign, day, spend in self._select_in(cur, query, daily):
                state.spent_day[(campaign, days[day])] = float(spend)
        total = [c for c in billed if (x := terms.get(c)) and x.total_budget is not None]
        if total:
            query = "SELECT campaign_id, spend FROM campaign_totals WHERE campaign_id"
            for campaign, spend in self._select_in(cur, query, total):
                state.spent_total[campaign] = float(spend)
        capped_campaigns = {c for c in campaign_ids if (x := terms.get(c)) and x.capped}
        capped = [f for f in impressions if f.delivery.campaign_id in capped_campaigns] if capped_campaigns else []
        if capped:
            since = min(f.ts - terms[f.delivery.campaign_id].window_s for f in capped)
            users = list(dict.fromkeys(f.delivery.user_id for f in capped))
            query = (
                "SELECT user_id, campaign_id, ad_id, impression_ts FROM deliveries "
                f"WHERE impression_ts >= {float(since)!r} AND user_id"  # a float's repr: no injection
            )
            for user, campaign, ad, ts in self._select_in(cur, query, users):
                if campaign in capped_campaigns:
                    state.shown.setdefault((user, campaign), []).append((ad, float(ts)))
        return state

    def _select_in(self, cur: Any, query: str, keys: list[str], tail: str = "") -> list[tuple[Any, ...]]:
        """The rows of ``query IN (keys) tail``, ``IN_CHUNK`` keys per statement.

        Driver-level ``IN`` lists: SQLAlchemy's expanding ``IN`` costs more than the lookups themselves.
        """
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), IN_CHUNK):
            chunk = keys[start : start + IN_CHUNK]
            cur.execute(f"{query} IN ({', '.join([self._ph] * len(chunk))}){tail}", chunk)
            rows += cur.fetchall()
        return rows

    def _write_feedback(self, cur: Any, changes: _LedgerChanges, stored: dict[str, tuple[Any, ...]]) -> None:
        """Insert the accepted events, create or advance their ledger rows and add to the daily delivery rows."""
        ph = self._ph
        if changes.accepted:
            self._insert_rows(cur, t.events, list(changes.event_rows()))
        if changes.impressions:
            self._insert_rows(cur, t.deliveries, list(changes.created_rows()))
        advanced = changes.advanced_rows(stored)
        if advanced:
            cur.executemany(
                f"UPDATE deliveries SET click_ts = {ph}, conversion_ts = {ph}, cost = {ph} WHERE iid = {ph}", advanced
            )
        if changes.daily:
            cur.executemany(
                "INSERT INTO delivery_daily (campaign_id, day, impressions, clicks, conversions, spend, unbilled) "
                f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}) ON CONFLICT (campaign_id, day) DO UPDATE SET "
                "impressions = delivery_daily.impressions + excluded.impressions, "
                "clicks = delivery_daily.clicks + excluded.clicks, "
                "conversions = delivery_daily.conversions + excluded.conversions, "
                "spend = delivery_daily.spend + excluded.spend, "
                "unbilled = delivery_daily.unbilled + excluded.unbilled",
                [
                    (c, day_name(day), int(v[0]), int(v[1]), int(v[2]), v[3], v[4])
                    for (c, day), v in changes.daily.items()
                ],
            )
            totals: dict[str, list[float]] = {}
            for (c, _), v in changes.daily.items():
                if v[3] or v[4]:  # most events (impressions of CPC, clicks of CPA...) bill nothing
                    row = totals.setdefault(c, [0.0, 0.0])
                    row[0] += v[3]
                    row[1] += v[4]
            if totals:
                cur.executemany(
                    f"INSERT INTO campaign_totals (campaign_id, spend, unbilled) VALUES ({ph}, {ph}, {ph}) "
                    "ON CONFLICT (campaign_id) DO UPDATE SET spend = campaign_totals.spend + excluded.spend, "
                    "unbilled = campaign_totals.unbilled + excluded.unbilled",
                    [(c, v[0], v[1]) for c, v in totals.items()],
                )

    def _insert_rows(self, cur: Any, table: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (every column of ``table``, in order), with NULL written into the statement instead of
        bound for each column that is None in every row.

        CPython 3.11's sqlite3 binds None through its adapter registry, raising and clearing an AttributeError per
        value: about 0.5 µs, and a ledger row's placement, value, propensity and click and conversion times are
        mostly None (a quarter of the cost of inserting a batch of impressions went to binding them).
        """
        columns = [c.name for c in table.columns]
        null = {i for i in range(len(columns)) if all(row[i] is None for row in rows)}
        values = ", ".join("NULL" if i in null else self._ph for i in range(len(columns)))
        if null:
            rows = list(map(operator.itemgetter(*(i for i in range(len(columns)) if i not in null)), rows))
        cur.executemany(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({values})", rows)

    def delivery_times(self, user_id: str, since: float) -> list[tuple[str, str, float]]:
        """``(campaign_id, ad_id, impression_ts)`` of the user's recorded impressions at or after ``since``."""
        d = t.deliveries
        query = select(d.c.campaign_id, d.c.ad_id, d.c.impression_ts).where(
            d.c.user_id == user_id, d.c.impression_ts >= since
        )
        with self._engine.connect() as conn:
            return [(str(r[0]), str(r[1]), float(r[2])) for r in conn.execute(query)]

    def campaign_spend(self, day: str) -> dict[str, tuple[float, float]]:
        """Campaign id → (spend on UTC ``day``, spend in total), for campaigns that spent anything.

        Read from the day's delivery rows and the campaigns' running totals (no pass over the history)."""
        dd, ct = t.delivery_daily, t.campaign_totals
        with self._engine.connect() as conn:
            today = dict(conn.execute(select(dd.c.campaign_id, dd.c.spend).where(dd.c.day == day)).all())
            totals = conn.execute(select(ct.c.campaign_id, ct.c.spend)).all()
        return {str(c): (float(today.get(c) or 0.0), float(total)) for c, total in totals}

    def delivery_report(
        self, campaign_ids: Sequence[str] | None = None, start_day: str | None = None, end_day: str | None = None
    ) -> list[DailyDelivery]:
        """Daily delivery rows (``YYYY-MM-DD`` days, inclusive bounds), ordered by campaign and day."""
        dd = t.delivery_daily
        query = select(dd).order_by(dd.c.campaign_id, dd.c.day)
        if campaign_ids is not None:
            query = query.where(dd.c.campaign_id.in_(list(campaign_ids)))
        if start_day is not None:
            query = query.where(dd.c.day >= start_day)
        if end_day is not None:
            query = query.where(dd.c.day <= end_day)
        with self._engine.connect() as conn:
            return [DailyDelivery(**dict(r)) for r in conn.execute(query).mappings()]

    def segment_click_counts(self, limit: int = 200) -> dict[str, list[tuple[str, int]]]:
        """Per demographic segment (:func:`~adrec.store.base.demographic_segment`), its most-clicked ads with their
        click counts, most clicked first (at most ``limit`` per segment). Users without a record are left out."""
        e, u = t.events, t.users
        query = (
            select(u.c.gender, u.c.age, e.c.ad_id, func.count())
            .select_from(e.join(u, u.c.user_id == e.c.user_id))
            .where(e.c.type == int(EventType.CLICK))
            .group_by(u.c.gender, u.c.age, e.c.ad_id)
        )
        counts: dict[str, dict[str, int]] = {}
        with self._engine.connect() as conn:
            for gender, age, ad_id, n in conn.execute(query):
                seg = counts.setdefault(demographic_segment(gender, age), {})
                seg[ad_id] = seg.get(ad_id, 0) + int(n)
        return {seg: sorted(ads.items(), key=lambda kv: (-kv[1], kv[0]))[:limit] for seg, ads in sorted(counts.items())}

    def put_api_key(self, key: ApiKeyRecord) -> None:
        with self._write_lock, self._engine.begin() as conn:
            conn.execute(t.api_keys.insert().values(**asdict(key)))

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_hash == key_hash)).mappings().first()
        return ApiKeyRecord(**dict(row)) if row is not None else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.created_ts)).mappings()
            return [ApiKeyRecord(**dict(r)) for r in rows]

    def revoke_api_key(self, key_id: str) -> None:
        with self._write_lock, self._engine.begin() as conn:
            n = conn.execute(t.api_keys.update().where(t.api_keys.c.key_id == key_id).values(revoked=True)).rowcount
        if n == 0:
            raise NotFoundError(f"no API key with id {key_id!r}")

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
            )


def _open(url: str, *, create: bool) -> SqlStore:
    try:
        return SqlStore(url, create=create)
    except SQLAlchemyError as err:
        raise StoreError(f"cannot open store {_shown(url)}: {err}") from None


register_backend("sqlite", _open)
register_backend("postgresql", _open)
