"""Feedback ingestion: impressions, clicks and conversions of served ads, checked against their signed tokens.

The client sends ``{event_id, type, token, ts?, value?}`` per event. The token (see
:mod:`adrec.serving.tokens`) says which user, ad, campaign and price the event is about; nothing billable is taken
from the client. Events with a bad token are rejected one by one with the reason; the rest of the batch is
recorded by :meth:`adrec.store.Store.apply_feedback` in one durable transaction (idempotent by event id).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from adrec.data.schema import EventType
from adrec.exceptions import TokenError, ValidationError
from adrec.serving.tokens import TokenSigner
from adrec.store.base import Feedback, Store

__all__ = ["FeedbackReport", "RawFeedback", "ingest_feedback"]

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


@dataclass(frozen=True)
class FeedbackReport:
    received: int
    accepted: int
    duplicates: int
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    """``(position, event_id, reason)`` of every event not recorded."""
    spend: float = 0.0


def ingest_feedback(
    store: Store, signer: TokenSigner, events: Sequence[RawFeedback], *, now: float | None = None
) -> FeedbackReport:
    """Verify each event's token, then record the valid ones atomically; report what happened to each."""
    now = time.time() if now is None else now
    rejected: list[tuple[int, str, str]] = []
    valid: list[Feedback] = []
    positions: list[int] = []
    for i, e in enumerate(events):
        try:
            kind = EventType.parse(e.type)
            delivery = signer.verify(e.token, now=now)
            ts = now if e.ts is None else float(e.ts)
            if ts < delivery.served_ts - CLOCK_SKEW_S:
                raise ValidationError("ts", f"{ts} is before the ad was served ({delivery.served_ts})")
            if ts > now + CLOCK_SKEW_S:
                raise ValidationError("ts", f"{ts} is in the future")
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
    )
