"""The SQL event log: scan and count events, and the anonymous CTR logs (the :class:`~adrec.store.base.EventLog`
role). Events are appended by the store's one event writer, in :mod:`adrec.store.sql.ledger`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    func,
    select,
)

from adrec.data.schema import (
    EventBatch,
    EventType,
)
from adrec.store import tables as t
from adrec.store.base import (
    CtrExample,
)
from adrec.store.sql.engine import CHUNK, SqlBase

__all__ = ["SqlEventLog"]


class SqlEventLog(SqlBase):
    """The :class:`~adrec.store.base.EventLog` role over SQL."""

    # Events are written by the one writer of the store (adrec.store.sql.ledger.SqlLedger: append_events for
    # history without tokens, apply_feedback for served ads), which keeps the log, the ledger and the daily
    # delivery consistent in one transaction; this module reads the log.

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
