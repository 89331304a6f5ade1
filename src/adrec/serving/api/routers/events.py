"""``POST /v1/events``: impressions, clicks and conversions of served ads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from adrec.feedback.ingest import ingest_feedback
from adrec.serving.api.deps import KnownQuery, Serving, State
from adrec.serving.api.errors import KEYED
from adrec.serving.api.schemas import CLOCK_PARAMETER, EventsIn, EventsOut, RejectedOut, events_body, events_schema
from adrec.serving.api.state import CLOCK_HEADER

router = APIRouter(tags=["serving"], responses=KEYED, dependencies=[KnownQuery])


@router.post("/v1/events", openapi_extra={"requestBody": events_schema(), "parameters": [CLOCK_PARAMETER]})
def events(_key: Serving, state: State, request: Request, body: Annotated[EventsIn, Depends(events_body)]) -> EventsOut:
    """Impressions, clicks and conversions (batched). Idempotent by ``event_id``; acknowledged = durable.

    A click needs a recorded impression of the same token, a conversion a recorded click; each event is charged at
    most once, and never beyond what is left of its campaign's budgets (the rest is ``unbilled``). Impressions
    beyond a campaign's frequency caps, and an event id already used for another token, are rejected. Events that
    fail are listed in ``rejected`` with the reason; the others are recorded.
    """
    now = state.request_time(request.headers.get(CLOCK_HEADER))
    report = ingest_feedback(state.store, state.signer, body.events, now=now)
    if report.accepted:
        state.pipeline.refresh_spend()
    return EventsOut(
        received=report.received,
        accepted=report.accepted,
        duplicates=report.duplicates,
        spend=round(report.spend, 6),
        unbilled=round(report.unbilled, 6),
        rejected=[RejectedOut(index=i, event_id=eid, error=msg) for i, eid, msg in report.rejected],
    )
