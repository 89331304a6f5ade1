"""``/health`` (liveness) and ``/ready`` (readiness)."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adrec.serving.api.deps import State
from adrec.serving.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> HealthOut:
    """Liveness: the process answers (on the event loop: no thread pool hop; the state read without a dependency,
    each of which costs time per request)."""
    return HealthOut(status="ok", uptime_s=round(time.time() - request.app.state.adrec.started, 1))


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut, "description": "Not ready"}})
def ready(state: State) -> JSONResponse:
    """Readiness: the store answers and a catalogue (and model, when configured) is loaded.

    503 with the reason while the store fails or the catalogue holds no ads or no campaigns.
    """
    try:
        state.store.schema_version()
    except Exception as exc:  # any store failure means not ready
        return JSONResponse({"status": "store unavailable", "detail": str(exc)}, status_code=503)
    p = state.pipeline
    counts = {"ads": p.catalog.n_ads, "campaigns": p.catalog.n_campaigns}
    if not counts["ads"] or not counts["campaigns"]:
        detail = (
            "the catalogue is empty: there is nothing to serve; add campaigns and ads (PUT /v1/campaigns/ID, "
            "PUT /v1/ads/ID), then POST /v1/admin/catalog/refresh if they were written around this API"
        )
        return JSONResponse({"status": "catalogue empty", "detail": detail, **counts}, status_code=503)
    return JSONResponse(
        {
            "status": "ready",
            "model_version": p.model.version if p.model else None,
            **counts,
            "quarantined": len(p.catalog.quarantined),
            "versions": state.seen,
            "worker": os.getpid(),
        }
    )
