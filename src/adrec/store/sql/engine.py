"""The SQL store's shared plumbing: opening an engine by URL, and the base every role's implementation
extends (bulk upserts, keyset pages, ``IN`` lists, versions).

SQLite runs in WAL mode with ``synchronous=FULL``: a write that returned survives a crash of the process (and of
the machine). PostgreSQL commits are durable by default. Bulk paths (events, users) use the driver's
``executemany`` with ``INSERT ... ON CONFLICT``, which both engines understand.
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self, TypeVar

from sqlalchemy import (
    JSON,
    Engine,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import StaticPool

from adrec.exceptions import NotFoundError, StoreError
from adrec.store import tables as t
from adrec.store.base import (
    OnBadRow,
)
from adrec.store.migrations import current_version, migrate

__all__ = ["CHUNK", "IN_CHUNK", "DriverQuery", "SqlBase", "shown_url"]

_R = TypeVar("_R")

# Rows per executemany call: large enough to amortise round trips, small enough to bound memory.
CHUNK = 20_000
# Ids per ``IN (...)`` list: well under SQLite's limit of bound parameters per statement.
IN_CHUNK = 5_000


# How to make a store where there is none: said by every "no store" error.
_CREATE_HINT = "create one with `adrec simulate`, `adrec import` or `adrec serve --create`, or check the URL"


def shown_url(url: str) -> str:
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
                raise StoreError(f"no adrec store at {shown_url(url)}: {path} does not exist; {_CREATE_HINT}")
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


class DriverQuery:
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

    def _fetch(self, params: dict[str, Any], one: bool) -> list[Any]:
        args: Any = tuple(params[name] for name in self._order) if self._order is not None else params
        conn = self._engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self._sql, args)
                rows = cursor.fetchmany(1) if one else cursor.fetchall()
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
        processors = self._processors or []
        if any(p is not None for p in processors):
            rows = [
                tuple(v if p is None or v is None else p(v) for p, v in zip(processors, row, strict=True))
                for row in rows
            ]
        return list(rows)

    def first(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict by column name (None when there is none)."""
        rows = self._fetch(params, one=True)
        return dict(zip(self._names, rows[0], strict=True)) if rows else None

    def all(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row, as tuples in the order of the selected columns."""
        return self._fetch(params, one=False)


class SqlBase:
    """What every role of the SQL store shares: the engine, its dialect, the write lock and bulk helpers."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self._engine = _engine_for(url, create=create)
        self._dialect = self._engine.dialect.name
        self._ph = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        # SQLite allows one writer; serialising writers in-process avoids busy waits between threads.
        self._write_lock = threading.Lock()
        try:
            with self._engine.begin() as conn:
                if not create and current_version(conn) == 0:
                    raise StoreError(
                        f"no adrec store at {shown_url(url)}: the database has no adrec schema (no table "
                        f"{t.meta.name}); {_CREATE_HINT}"
                    )
                self._version = migrate(conn)
        except OperationalError as err:
            self._engine.dispose()
            raise StoreError(f"cannot open store {shown_url(url)}: {err.orig}") from None
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
