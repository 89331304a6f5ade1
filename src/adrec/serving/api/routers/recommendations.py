"""``GET /v1/recommendations``: the ad decision for one user."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from adrec.serving.api.deps import Serving
from adrec.serving.api.errors import KEYED
from adrec.serving.api.schemas import CLOCK_PARAMETER, AdRequest, RecommendationsOut, parse_query, query_parameters
from adrec.serving.api.state import CLOCK_HEADER, ServerState

router = APIRouter(tags=["serving"], responses=KEYED)


@router.get(
    "/v1/recommendations",
    openapi_extra={"parameters": [*query_parameters(AdRequest), CLOCK_PARAMETER]},
    responses={200: {"model": RecommendationsOut, "description": "Ranked, priced and explained ads"}},
)
async def recommendations(key: Serving, request: Request) -> Response:
    """Ranked, priced and explained ads for a user; unknown users are served by cold start (popular, fresh).

    Serving keys get what a publisher needs (ad, creative, price charged, token, explanation); advertisers' bids and
    eCPMs are confidential and only admin keys see them."""
    q = parse_query(AdRequest, request)
    state: ServerState = request.app.state.adrec  # not the State dependency: each level costs time per request
    now = state.request_time(request.headers.get(CLOCK_HEADER))
    response = state.pipeline.recommend(
        q.user_id,
        q.k,
        now=now,
        placement=q.placement,
        device=q.device,
        region=q.region,
        exclude_advertisers=q.exclude_advertisers,
        client_request_id=q.request_id,
    )
    # Serialised directly: FastAPI's generic encoder costs more than the whole decision here.
    body = response.as_dict(confidential=key.role == "admin")
    return Response(orjson.dumps(body), media_type="application/json")
