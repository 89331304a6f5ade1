"""Feedback ingestion: impressions, clicks and conversions of served ads, checked against their signed tokens.

The client sends ``{event_id, type, token, ts?, value?}`` per event. The token (see
:mod:`adrec.feedback.tokens`) says which user, ad, campaign and price the event is about; nothing billable is taken
from the client. Events with a bad token are rejected one by one with the reason; the rest of the batch is
recorded by :meth:`adrec.store.Store.apply_feedback` in one durable transaction (idempotent by event id).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from adrec.data.schema import EventType
from adrec.exceptions import TokenError, ValidationError
from adrec.feedback.tokens import TokenSigner
from adrec.store.base import Delivery, Feedback, Store

__all__ = ["FeedbackReport", "RawFeedback", "ReportedEvent", "ingest_feedback"]

# Events may be stamped a little before the ad was served (client clocks); not more.
CLOCK_SKEW_S = 300.0


@dataclass(frozen=True)
class RawFeedback:
    """An event as a client reports it."""

    event_id: str
    type: EventType | str | int
    token: str
    ts: float | None = None
    value: float | None = None


class ReportedEvent(Protocol):
    """What :func:`ingest_feedback` reads of an event: a :class:`RawFeedback` or any object with these fields
    (the HTTP API passes its validated request items)."""

    @property
    def event_id(self) -> str: ...
    @property
    def type(self) -> EventType | str | int: ...
    @property
    def token(self) -> str: ...
    @property
    def ts(self) -> float | None: ...
    @property
    def value(self) -> float | None: ...


@dataclass(frozen=True)
class FeedbackReport:
    received: int
    accepted: int
    duplicates: int
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    """``(position, event_id, reason)`` of every event not recorded."""
    spend: float = 0.0
    unbilled: float = 0.0
    """What accepted billable events would have cost beyond their campaigns' budgets or after they ended."""


def ingest_feedback(
    store: Store, signer: TokenSigner, events: Sequence[ReportedEvent], *, now: float | None = None
) -> FeedbackReport:
    """Verify each event's token, then record the valid ones atomically; report what happened to each.

    A token is verified once per batch however many of its events the batch holds (an impression and its click).
    """
    now = time.time() if now is None else now
    latest = now + CLOCK_SKEW_S
    rejected: list[tuple[int, str, str]] = []
    valid: list[Feedback] = []
    positions: list[int] = []
    verified: dict[str, Delivery] = {}
    for i, e in enumerate(events):
        try:
            kind = EventType.parse(e.type)
            delivery = verified.get(e.token)
            if delivery is None:
                delivery = verified[e.token] = signer.verify(e.token, now=now)
            ts = now if e.ts is None else float(e.ts)
            if not math.isfinite(ts):
                raise ValidationError("ts", f"{ts} is not a finite number")
            if ts < delivery.served_ts - CLOCK_SKEW_S:
                raise ValidationError("ts", f"{ts} is before the ad was served ({delivery.served_ts})")
            if ts > latest:
                raise ValidationError("ts", f"{ts} is in the future")
            if e.value is not None and not math.isfinite(e.value):
                raise ValidationError("value", f"{e.value} is not a finite number")
        except (TokenError, ValidationError) as err:
            rejected.append((i, e.event_id, str(err)))
            continue
        valid.append(Feedback(e.event_id, kind, ts, delivery, e.value))
        positions.append(i)
    result = store.apply_feedback(valid)
    rejected += [(positions[j], valid[j].event_id, reason) for j, reason in result.rejected]
    return FeedbackReport(
        received=len(events),
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=sorted(rejected),
        spend=result.spend,
        unbilled=result.unbilled,
    )
