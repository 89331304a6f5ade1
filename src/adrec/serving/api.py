"""The HTTP API (FastAPI): ad requests, feedback events, the ad library, users, reports and model swaps.

``create_app`` builds the application around one store and one models folder; ``adrec serve`` runs it with
uvicorn. Every ``/v1`` endpoint needs an API key in the ``X-API-Key`` header (see :mod:`adrec.serving.auth`):
a missing or unknown key gets 401, a key whose role may not do the call gets 403.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_origin

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic.dataclasses import dataclass

from adrec.data.schema import Ad, Advertiser, Campaign, CampaignStatus, Device, User
from adrec.exceptions import AdrecError, NotFoundError, ValidationError
from adrec.feedback.ingest import ingest_feedback
from adrec.serving.auth import KeyCache
from adrec.serving.pipeline import Pipeline, PipelineConfig, ServingModel
from adrec.serving.tokens import TokenSigner
from adrec.store.base import ApiKeyRecord, Store

__all__ = ["EventIn", "EventsIn", "ServerState", "create_app"]

MAX_EVENTS_PER_BATCH = 50_000


class AdRequest(BaseModel):
    """The query of ``GET /v1/recommendations``."""

    user_id: str = Field(min_length=1, max_length=200)
    k: int = Field(default=10, ge=1, le=100, description="How many ads, at most.")
    placement: str | None = Field(default=None, max_length=100, description="Where the ads will show.")
    device: Device | None = Field(default=None, description="Overrides the user's declared device.")
    region: str | None = Field(default=None, max_length=100, description="Overrides the user's declared region.")
    exclude_advertisers: list[str] = Field(default_factory=list, description="Advertisers not to show (repeatable).")


_Query = TypeVar("_Query", bound=BaseModel)


def _inlined_schema(model: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model or dataclass with every ``$ref`` replaced by its definition (OpenAPI
    snippets passed through ``openapi_extra`` cannot point into a ``$defs`` section of their own)."""
    schema = TypeAdapter(model).json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return inline(schema)  # type: ignore[no-any-return]


# The hot endpoint reads its query through one pydantic model instead of FastAPI's per-parameter machinery, which
# costs more per request than the model's whole validation; the OpenAPI parameters are generated from the model.
def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = _inlined_schema(model)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": {k: v for k, v in prop.items() if k != "description"},
        }
        for name, prop in schema["properties"].items()
    ]


def _parse_query(model: type[_Query], request: Request) -> _Query:
    """``model`` from the request's query string; errors are 422 at ``("query", field)``, as FastAPI's are."""
    params = request.query_params
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name in params:
            data[name] = params.getlist(name) if get_origin(field.annotation) is list else params[name]
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


# A slotted dataclass rather than a BaseModel: one object per event instead of three (instance, fields set, dict).
# A batch's events live through the request, and fewer of them put off the garbage collector's full passes.
@dataclass(frozen=True, slots=True)
class EventIn:
    """One feedback event. ``token`` is the impression token of the served ad it is about."""

    event_id: str = Field(min_length=1, max_length=200)
    type: str = Field(pattern="^(impression|click|conversion)$")
    token: str = Field(min_length=10, max_length=2000)
    ts: float | None = Field(
        default=None, allow_inf_nan=False, description="Unix seconds; default: when the server receives it"
    )
    value: float | None = Field(default=None, allow_inf_nan=False, description="e.g. the order value of a conversion")


class EventsIn(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


def _events_schema() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/events``: :class:`EventsIn` with ``EventIn`` inlined (no ``$defs``)."""
    return {"required": True, "content": {"application/json": {"schema": _inlined_schema(EventsIn)}}}


async def _events_body(request: Request) -> EventsIn:
    """The body of ``POST /v1/events``, parsed and validated by pydantic in one pass over the bytes.

    A body parameter would have FastAPI ``json.loads`` the batch into dicts and validate those. Errors are
    RequestValidationError with ``loc`` from ``"body"``, as FastAPI reports a body parameter's.
    """
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise RequestValidationError(
            [{"type": "json_type", "loc": ("body",), "msg": "expected a JSON body (Content-Type: application/json)"}]
        )
    try:
        return EventsIn.model_validate_json(await request.body())
    except PydanticValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


class ServerState:
    """What the running app holds: the store, the pipeline (model + catalogue), keys and the models folder."""

    def __init__(
        self,
        store: Store,
        models_dir: Path | None,
        signer: TokenSigner,
        config: PipelineConfig | None = None,
        *,
        index_kind: str = "auto",
        index_params: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.models_dir = models_dir
        self.signer = signer
        self.index_kind = index_kind
        self.index_params = index_params or {}
        model = self._load(models_dir) if models_dir is not None else None
        self.pipeline = Pipeline(store, model, signer, config)
        self.keys = KeyCache(store)
        self._reload_lock = threading.Lock()
        self.started = time.time()

    def _load(self, models_dir: Path) -> ServingModel:
        return ServingModel.load(models_dir, self.store, index_kind=self.index_kind, index_params=self.index_params)

    def reload_model(self) -> ServingModel:
        """Load the current model of the models folder and swap it in; requests never see a half-loaded model."""
        if self.models_dir is None:
            raise NotFoundError("the server was started without --models")
        with self._reload_lock:
            model = self._load(self.models_dir)
            self.pipeline.swap_model(model, relearn=True)
        return model


_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


# Dependencies are ``async`` so that they run on the event loop: sync ones would each hop through the thread pool.
# One dependency per role (key and role checked together): every level of dependencies costs time per request.
def _role(*allowed: str) -> Callable[..., Awaitable[ApiKeyRecord]]:
    async def check(request: Request, key: Annotated[str | None, Security(_HEADER)]) -> ApiKeyRecord:
        if not key:
            raise HTTPException(401, "missing API key (header X-API-Key)")
        record: ApiKeyRecord | None = request.app.state.adrec.keys.authenticate(key)
        if record is None:
            raise HTTPException(401, "unknown or revoked API key")
        if record.role not in allowed:
            raise HTTPException(403, f"the {record.role} role may not do this (needs {' or '.join(allowed)})")
        return record

    return check


Admin = Annotated[ApiKeyRecord, Depends(_role("admin"))]
Serving = Annotated[ApiKeyRecord, Depends(_role("admin", "serving"))]
Manager = Annotated[ApiKeyRecord, Depends(_role("admin", "advertiser"))]


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="adrec",
        version="0.1.0",
        description="Personalized ad recommendation: ad requests, feedback events, ad library, reports.",
    )
    app.state.adrec = state

    def own(key: ApiKeyRecord, advertiser_id: str) -> None:
        if key.role == "advertiser" and key.advertiser_id != advertiser_id:
            raise HTTPException(403, "an advertiser key sees and edits only its own advertiser's data")

    def own_campaign(key: ApiKeyRecord, campaign_id: str) -> Campaign:
        """The campaign, after checking that the key may see it (404 if unknown, 403 if not its advertiser's)."""
        campaign = state.store.get_campaign(campaign_id)
        own(key, campaign.advertiser_id)
        return campaign

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Records raise adrec's ValidationError naming "record.field": report it at body.field.
        detail = []
        for e in exc.errors():
            err = (e.get("ctx") or {}).get("error")
            if isinstance(err, ValidationError):
                detail.append(
                    {"loc": [*e["loc"], *err.field.split(".")[1:]], "msg": err.message, "type": "value_error"}
                )
            else:
                detail.append({"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]})
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": exc.field.split("."), "msg": exc.message}]}, status_code=422)

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)

    @app.exception_handler(AdrecError)
    async def _adrec(_: Request, exc: AdrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # -- health ---------------------------------------------------------------------------------------------
    @app.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        """Liveness: the process answers (on the event loop: no thread pool hop)."""
        return {"status": "ok", "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/ready", tags=["health"])
    def ready() -> JSONResponse:
        """Readiness: the store answers and a catalogue (and model, when configured) is loaded."""
        try:
            state.store.schema_version()
        except Exception as exc:  # any store failure means not ready
            return JSONResponse({"status": "store unavailable", "detail": str(exc)}, status_code=503)
        p = state.pipeline
        return JSONResponse(
            {
                "status": "ready",
                "model_version": p.model.version if p.model else None,
                "ads": p.catalog.n_ads,
                "campaigns": p.catalog.n_campaigns,
            }
        )

    # -- serving ----------------------------------------------------------------------------------------------
    @app.get("/v1/recommendations", tags=["serving"], openapi_extra={"parameters": _query_parameters(AdRequest)})
    async def recommendations(_key: Serving, request: Request) -> Response:
        """Ranked, priced and explained ads for a user; unknown users are served by cold start (popular, fresh)."""
        q = _parse_query(AdRequest, request)
        response = state.pipeline.recommend(
            q.user_id,
            q.k,
            placement=q.placement,
            device=q.device,
            region=q.region,
            exclude_advertisers=q.exclude_advertisers,
        )
        # Serialised directly: FastAPI's generic encoder costs more than the whole decision here.
        return Response(orjson.dumps(response.as_dict()), media_type="application/json")

    @app.post("/v1/events", tags=["serving"], openapi_extra={"requestBody": _events_schema()})
    def events(_key: Serving, body: Annotated[EventsIn, Depends(_events_body)]) -> dict[str, Any]:
        """Impressions, clicks and conversions (batched). Idempotent by ``event_id``; acknowledged = durable.

        A click needs a recorded impression of the same token, a conversion a recorded click; each event is charged
        at most once. Events that fail are listed in ``rejected`` with the reason; the others are recorded.
        """
        report = ingest_feedback(state.store, state.signer, body.events)
        if report.accepted:
            state.pipeline.refresh_spend()
        return {
            "received": report.received,
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "spend": round(report.spend, 6),
            "rejected": [{"index": i, "event_id": eid, "error": msg} for i, eid, msg in report.rejected],
        }

    # -- ad library -------------------------------------------------------------------------------------------
    def _same(path_id: str, body_id: str, name: str) -> None:
        if path_id != body_id:
            raise ValidationError(name, f"{body_id!r} in the body differs from {path_id!r} in the path")

    @app.put("/v1/advertisers/{advertiser_id}", tags=["ad library"])
    def put_advertiser(_key: Admin, advertiser_id: str, body: Advertiser) -> dict[str, Any]:
        _same(advertiser_id, body.advertiser_id, "advertiser_id")
        state.store.upsert_advertisers([body])
        return body.model_dump(mode="json")

    @app.get("/v1/advertisers/{advertiser_id}", tags=["ad library"])
    def get_advertiser(key: Manager, advertiser_id: str) -> dict[str, Any]:
        own(key, advertiser_id)
        return state.store.get_advertiser(advertiser_id).model_dump(mode="json")

    @app.put("/v1/campaigns/{campaign_id}", tags=["ad library"])
    def put_campaign(key: Manager, campaign_id: str, body: Campaign) -> dict[str, Any]:
        _same(campaign_id, body.campaign_id, "campaign_id")
        own(key, body.advertiser_id)
        with contextlib.suppress(NotFoundError):  # an advertiser may not take over another's campaign id
            own(key, state.store.get_campaign(campaign_id).advertiser_id)
        state.store.get_advertiser(body.advertiser_id)
        state.store.upsert_campaigns([body])
        state.pipeline.refresh_catalog()
        return body.model_dump(mode="json")

    @app.get("/v1/campaigns/{campaign_id}", tags=["ad library"])
    def get_campaign(key: Manager, campaign_id: str) -> dict[str, Any]:
        return own_campaign(key, campaign_id).model_dump(mode="json")

    @app.get("/v1/campaigns", tags=["ad library"])
    def list_campaigns(key: Manager, advertiser_id: str | None = None) -> list[dict[str, Any]]:
        if key.role == "advertiser":
            advertiser_id = key.advertiser_id
        return [
            c.model_dump(mode="json")
            for batch in state.store.iter_campaigns()
            for c in batch
            if advertiser_id is None or c.advertiser_id == advertiser_id
        ]

    @app.delete("/v1/campaigns/{campaign_id}", tags=["ad library"])
    def end_campaign(key: Manager, campaign_id: str) -> dict[str, Any]:
        """End a campaign (its history and reports stay)."""
        ended = own_campaign(key, campaign_id).model_copy(update={"status": CampaignStatus.ENDED})
        state.store.upsert_campaigns([ended])
        state.pipeline.refresh_catalog()
        return ended.model_dump(mode="json")

    @app.put("/v1/ads/{ad_id}", tags=["ad library"])
    def put_ad(key: Manager, ad_id: str, body: Ad) -> dict[str, Any]:
        _same(ad_id, body.ad_id, "ad_id")
        own_campaign(key, body.campaign_id)
        state.store.upsert_ads([body])
        state.pipeline.refresh_catalog()
        return body.model_dump(mode="json")

    @app.get("/v1/ads/{ad_id}", tags=["ad library"])
    def get_ad(key: Manager, ad_id: str) -> dict[str, Any]:
        ad = state.store.get_ad(ad_id)
        own_campaign(key, ad.campaign_id)
        return ad.model_dump(mode="json")

    @app.delete("/v1/ads/{ad_id}", tags=["ad library"])
    def end_ad(key: Manager, ad_id: str) -> dict[str, Any]:
        ad = state.store.get_ad(ad_id)
        own_campaign(key, ad.campaign_id)
        ended = ad.model_copy(update={"status": CampaignStatus.ENDED})
        state.store.upsert_ads([ended])
        state.pipeline.refresh_catalog()
        return ended.model_dump(mode="json")

    # -- users ------------------------------------------------------------------------------------------------
    @app.put("/v1/users/{user_id}", tags=["users"])
    def put_user(_key: Admin, user_id: str, body: User) -> dict[str, Any]:
        _same(user_id, body.user_id, "user_id")
        state.store.upsert_users([body])
        return body.model_dump(mode="json")

    @app.get("/v1/users/{user_id}", tags=["users"])
    def get_user(_key: Admin, user_id: str) -> dict[str, Any]:
        return state.store.get_user(user_id).model_dump(mode="json")

    @app.delete("/v1/users/{user_id}", tags=["users"])
    def erase_user(_key: Admin, user_id: str) -> dict[str, Any]:
        """Right to erasure: the user's record, profile, events and deliveries are deleted."""
        return asdict(state.store.delete_user(user_id))

    # -- reports ----------------------------------------------------------------------------------------------
    @app.get("/v1/reports/campaigns", tags=["reports"])
    def campaign_report(
        key: Manager,
        campaign_id: Annotated[list[str] | None, Query()] = None,
        start: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
        end: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    ) -> list[dict[str, Any]]:
        """Per campaign and UTC day: impressions, clicks, CTR, conversions, spend, CPC, CPA."""
        ids = campaign_id
        if key.role == "advertiser":
            mine = [
                c.campaign_id for b in state.store.iter_campaigns() for c in b if c.advertiser_id == key.advertiser_id
            ]
            if ids is not None:
                for cid in ids:
                    if cid not in mine:
                        raise HTTPException(403, f"campaign {cid!r} is not this advertiser's")
            ids = ids if ids is not None else mine
        rows = state.store.delivery_report(ids, start, end)
        return [{**asdict(r), "ctr": r.ctr, "cpc": r.cpc, "cpa": r.cpa, "spend": round(r.spend, 6)} for r in rows]

    # -- admin ------------------------------------------------------------------------------------------------
    @app.post("/v1/admin/models/reload", tags=["admin"])
    def reload_model(_key: Admin) -> dict[str, Any]:
        """Load the models folder's current model and swap it in without dropping requests."""
        model = state.reload_model()
        return {"model_version": model.version, "calibrated_on": model.calibrator.n}

    @app.post("/v1/admin/catalog/refresh", tags=["admin"])
    def refresh_catalog(_key: Admin) -> dict[str, Any]:
        """Re-read the ad library from the store (after writes that did not go through this API)."""
        state.pipeline.refresh_catalog()
        return {"ads": state.pipeline.catalog.n_ads, "campaigns": state.pipeline.catalog.n_campaigns}

    return app
