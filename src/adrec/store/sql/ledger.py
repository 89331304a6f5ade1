"""The SQL serving ledger: served ads (deliveries), their charges within budgets and frequency caps, daily
delivery and spend (the :class:`~adrec.store.base.Ledger` role)."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import (
    bindparam,
    func,
    select,
)

from adrec.data.schema import (
    Event,
    EventBatch,
    EventType,
    day_name,
)
from adrec.exceptions import ValidationError
from adrec.store import tables as t
from adrec.store.base import (
    DailyDelivery,
    Feedback,
    FeedbackResult,
    IngestResult,
    ServedBatch,
    demographic_segment,
)
from adrec.store.sql.engine import DriverQuery, SqlBase

__all__ = ["SqlLedger"]


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
            propensity = d.propensity if f.type == EventType.IMPRESSION else None
            yield f.event_id, int(f.type), d.user_id, d.ad_id, f.ts, d.placement, cost, d.iid, f.value, propensity

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
                d.position,
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


class SqlLedger(SqlBase):
    """The :class:`~adrec.store.base.Ledger` role over SQL."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        super().__init__(url, create=create)
        # (catalog version, ad → campaign, campaign → billing terms) (see _library).
        self._library_cache: tuple[int, dict[str, str], dict[str, _Terms]] = (-1, {}, {})
        self._user_deliveries: DriverQuery | None = None

    # -- the one event writer -------------------------------------------------------------------------------
    def _locked_cursor(self, conn: Any) -> Any:
        """A DBAPI cursor of ``conn`` holding the store-wide write lock until the transaction ends: what is stored
        decides what is recorded and charged, so it is read under the lock the writes take, and no writer of
        another process (a second uvicorn worker) commits in between."""
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        if self._dialect == "postgresql":
            cur.execute("SELECT pg_advisory_xact_lock(72431)")
        else:
            cur.execute("BEGIN IMMEDIATE")
        return cur

    def append_events(self, events: EventBatch | Sequence[Event]) -> IngestResult:
        """Record history that carries no impression token (imported logs) in one transaction, durable when it
        returns: each new event goes into the event log as it is (its ``request_id`` is kept; no served-ad row is
        made), and into its campaign's daily delivery counts when its ad is in the library, so reports match the
        log. Such events are never charged: a batch with a non-zero ``cost`` is refused whole (events of served
        ads are recorded, and charged, by :meth:`apply_feedback`). Events whose ``event_id`` is already stored are
        skipped (idempotent resend) and counted as duplicates.
        """
        batch = events if isinstance(events, EventBatch) else EventBatch.from_events(list(events))
        batch.validate()
        charged = np.flatnonzero(batch.cost != 0)
        if len(charged):
            raise ValidationError(
                f"events[{int(charged[0])}].cost",
                "an event without an impression token is never charged: cost must be 0 (events of served ads are "
                "recorded with their tokens, through the events API or Store.apply_feedback)",
            )
        if len(batch) == 0:
            return IngestResult(0, 0)
        rows = batch.rows()
        with self._write_lock, self._engine.begin() as conn:
            cur = self._locked_cursor(conn)
            try:
                new = self._insert_new_events(cur, batch.event_id.tolist(), rows)
                if new is not None:
                    ad_ids, days, types = batch.ad_id, (batch.ts // 86_400).astype(np.int64), batch.type
                    if len(new) < len(batch):
                        ad_ids, days, types = ad_ids[new], days[new], types[new]
                    ad_list = ad_ids.tolist()
                    ads, _ = self._library(cur, set(ad_list), set())
                    campaigns = [ads.get(a) for a in ad_list]
                    daily: dict[tuple[str, int], list[float]] = {}
                    # Counter counts in C: one (campaign, day, type) key per event.
                    for (campaign, day, kind), n in Counter(
                        zip(campaigns, days.tolist(), types.tolist(), strict=True)
                    ).items():
                        if campaign is not None:
                            daily.setdefault((campaign, day), [0, 0, 0, 0.0, 0.0])[kind] += n
                    self._add_daily(cur, daily)
            finally:
                cur.close()
        return IngestResult(received=len(batch), inserted=0 if new is None else len(new))

    def _insert_new_events(self, cur: Any, ids: list[str], rows: list[tuple[Any, ...]]) -> list[int] | None:
        """Insert the rows whose event id is not stored yet; return their positions (None: none was new).

        SQLite is optimistic: the whole batch is inserted plainly under a savepoint (imports are mostly new events,
        and a read of their ids would cost as much as the insert); only when an id is already stored is the
        savepoint rolled back and the stored ids read to insert the rest.
        """
        if self._dialect == "postgresql":
            # A plain ON CONFLICT insert (psycopg pipelines executemany, and a failing statement would abort the
            # pipeline, so no optimistic insert as on SQLite); when some ids were stored already, the rows this
            # transaction inserted are the ones whose xmin is its own transaction id.
            columns = ", ".join(t.EVENT_COLUMNS)
            marks = ", ".join(["%s"] * len(t.EVENT_COLUMNS))
            cur.executemany(f"INSERT INTO events ({columns}) VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING", rows)
            inserted = cur.rowcount
            if inserted == len(rows):
                return list(range(len(rows)))
            if inserted <= 0:
                return None
            cur.execute(
                "SELECT event_id FROM events WHERE event_id = ANY(%s) "
                "AND xmin::text::bigint = txid_current() %% 4294967296",
                (ids,),
            )
            mine = {r[0] for r in cur.fetchall()}
            return [i for i, event_id in enumerate(ids) if event_id in mine]
        cur.execute("SAVEPOINT adrec_append")
        try:
            self._insert_rows(cur, t.events, rows)
        except Exception as err:  # the driver's IntegrityError (sqlite3) or UniqueViolation (psycopg)
            if "unique" not in str(err).lower() and "duplicate" not in str(err).lower():
                raise
            cur.execute("ROLLBACK TO SAVEPOINT adrec_append")
            stored = {r[0] for r in self._select_in(cur, "SELECT event_id FROM events WHERE event_id", ids)}
            new = [i for i, event_id in enumerate(ids) if event_id not in stored]
            if not new:
                return None
            self._insert_rows(cur, t.events, [rows[i] for i in new])
            return new
        finally:
            cur.execute("RELEASE SAVEPOINT adrec_append")
        return list(range(len(ids)))

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
            cur = self._locked_cursor(conn)
            try:
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
        self._add_daily(cur, changes.daily)

    def _add_daily(self, cur: Any, daily: dict[tuple[str, int], list[float]]) -> None:
        """Add ``(campaign, UTC day number) → [impressions, clicks, conversions, spend, unbilled]`` to the daily
        delivery rows, and the spend and unbilled delivery to the campaigns' running totals."""
        if not daily:
            return
        ph = self._ph
        cur.executemany(
            "INSERT INTO delivery_daily (campaign_id, day, impressions, clicks, conversions, spend, unbilled) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}) ON CONFLICT (campaign_id, day) DO UPDATE SET "
            "impressions = delivery_daily.impressions + excluded.impressions, "
            "clicks = delivery_daily.clicks + excluded.clicks, "
            "conversions = delivery_daily.conversions + excluded.conversions, "
            "spend = delivery_daily.spend + excluded.spend, "
            "unbilled = delivery_daily.unbilled + excluded.unbilled",
            [(c, day_name(day), int(v[0]), int(v[1]), int(v[2]), v[3], v[4]) for (c, day), v in daily.items()],
        )
        totals: dict[str, list[float]] = {}
        for (c, _), v in daily.items():
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

    def delivery_times(self, user_id: str, since: float) -> list[tuple[str, str, float]]:
        """``(campaign_id, ad_id, impression_ts)`` of the user's recorded impressions at or after ``since``."""
        query = self._user_deliveries
        if query is None:  # on the serving path (once per ad request): built once
            d = t.deliveries
            query = self._user_deliveries = DriverQuery(
                self._engine,
                select(d.c.campaign_id, d.c.ad_id, d.c.impression_ts).where(
                    d.c.user_id == bindparam("uid"), d.c.impression_ts >= bindparam("since")
                ),
            )
        return [(str(c), str(a), float(ts)) for c, a, ts in query.all({"uid": user_id, "since": since})]

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

    def iter_served(
        self, *, since: float | None = None, until: float | None = None, batch_size: int = 100_000
    ) -> Iterator[ServedBatch]:
        """The served ads with ``since <= served_ts < until``, in (served_ts, iid) order, ``batch_size`` at a time
        (one streamed query: no index on the serving time is kept for this offline read)."""
        d = t.deliveries
        query = select(
            d.c.iid,
            d.c.user_id,
            d.c.ad_id,
            d.c.campaign_id,
            d.c.placement,
            d.c.position,
            d.c.served_ts,
            d.c.click_ts,
            d.c.conversion_ts,
            d.c.pricing_model,
            d.c.price,
            d.c.cost,
        )
        if since is not None:
            query = query.where(d.c.served_ts >= since)
        if until is not None:
            query = query.where(d.c.served_ts < until)
        query = query.order_by(d.c.served_ts, d.c.iid)
        with self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(query)
            for rows in result.partitions(batch_size):
                cols = list(zip(*rows, strict=True))
                yield ServedBatch(
                    iid=np.array(cols[0], dtype=object),
                    user_id=np.array(cols[1], dtype=object),
                    ad_id=np.array(cols[2], dtype=object),
                    campaign_id=np.array(cols[3], dtype=object),
                    placement=np.array(cols[4], dtype=object),
                    position=np.array([0 if p is None else p for p in cols[5]], dtype=np.int16),
                    served_ts=np.array(cols[6], dtype=np.float64),
                    click_ts=np.array([np.nan if v is None else v for v in cols[7]], dtype=np.float64),
                    conversion_ts=np.array([np.nan if v is None else v for v in cols[8]], dtype=np.float64),
                    pricing_model=np.array(cols[9], dtype=object),
                    price=np.array(cols[10], dtype=np.float64),
                    cost=np.array(cols[11], dtype=np.float64),
                )

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
