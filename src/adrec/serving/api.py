"""The HTTP API (FastAPI): ad requests, feedback events, the ad library, users, reports and model swaps.

``create_app`` builds the application around one store and one models folder; ``adrec serve`` runs it with
uvicorn. Every ``/v1`` endpoint needs an API key in the ``X-API-Key`` header (see :mod:`adrec.serving.auth`):
a missing or unknown key gets 401, a key whose role may not do the call gets 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from datetime import date
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

from adrec.data.schema import Ad, Advertiser, Campaign, CampaignStatus, Device, Id, User
from adrec.exceptions import AdrecError, NotFoundError, ValidationError
from adrec.feedback.ingest import ingest_feedback
from adrec.serving.auth import KeyCache
from adrec.serving.limits import Limits, install
from adrec.serving.pipeline import Pipeline, PipelineConfig, ServingModel
from adrec.serving.tokens import TokenSigner
from adrec.store.base import ApiKeyRecord, Store

__all__ = ["EventIn", "EventsIn", "ServerState", "create_app"]

log = logging.getLogger(__name__)

MAX_EVENTS_PER_BATCH = 50_000


class AdRequest(BaseModel):
    """The query of ``GET /v1/recommendations``."""

    user_id: Id
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
    """What the running app holds: the store, the pipeline (model + catalogue), keys and the models folder.

    Several processes may serve one store (``adrec serve --workers N``, or several servers): each holds its own
    catalogue and model. Every change that one of them makes or sees is stamped in the store (:meth:`Store.versions`:
    ``catalog`` rises with every write of campaigns or ads, by anyone; ``model`` with every model reload), and
    :meth:`sync`, which the app runs every ``sync_interval_s`` seconds, brings this process up to the stamps.
    """

    def __init__(
        self,
        store: Store,
        models_dir: Path | None,
        signer: TokenSigner,
        config: PipelineConfig | None = None,
        *,
        index_kind: str = "auto",
        index_params: dict[str, Any] | None = None,
        sync_interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.models_dir = models_dir
        self.signer = signer
        self.index_kind = index_kind
        self.index_params = index_params or {}
        self.sync_interval_s = sync_interval_s
        self.seen = store.versions()  # read before loading: a change made meanwhile is caught by the next sync
        model = self._load(models_dir) if models_dir is not None else None
        self.pipeline = Pipeline(store, model, signer, config)
        self.keys = KeyCache(store)
        self._reload_lock = threading.Lock()
        self.started = time.time()

    def _load(self, models_dir: Path) -> ServingModel:
        return ServingModel.load(models_dir, self.store, index_kind=self.index_kind, index_params=self.index_params)

    def reload_model(self, *, announce: bool = True) -> ServingModel:
        """Load the current model of the models folder and swap it in; requests never see a half-loaded model.

        ``announce`` raises the store's ``model`` version first, so that every other serving process reloads too.
        """
        if self.models_dir is None:
            raise NotFoundError("the server was started without --models")
        with self._reload_lock:
            version = self.store.bump_version("model") if announce else self.store.versions().get("model", 0)
            self.seen["model"] = max(self.seen.get("model", 0), version)  # tried once, even if it fails
            model = self._load(self.models_dir)
            self.pipeline.swap_model(model, relearn=True)
        return model

    def refresh_catalog(self) -> None:
        """Re-read the ad library from the store."""
        version = self.store.versions().get("catalog", 0)
        self.pipeline.refresh_catalog()
        self.seen["catalog"] = max(self.seen.get("catalog", 0), version)

    def sync(self) -> None:
        """Catch up with what other processes changed: reload the catalogue or the model when its version rose."""
        now = self.store.versions()
        if now.get("catalog", 0) > self.seen.get("catalog", 0):
            self.refresh_catalog()
        if now.get("model", 0) > self.seen.get("model", 0) and self.models_dir is not None:
            self.reload_model(announce=False)

    async def sync_forever(self) -> None:
        """:meth:`sync` every ``sync_interval_s`` seconds (in a worker thread: loading blocks), until cancelled;
        a failure is logged and retried at the next tick."""
        while True:
            await asyncio.sleep(self.sync_interval_s)
            try:
                await asyncio.to_thread(self.sync)
            except Exception:  # a sync must never stop the server; the next tick tries again
                log.exception("syncing the catalogue or model with the store failed")


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


def create_app(state: ServerState, *, limits: Limits | None = None) -> FastAPI:
    """The API over ``state``, with the request limits ``limits`` (body sizes, rate per key; defaults if None)."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        syncing = asyncio.create_task(state.sync_forever()) if state.sync_interval_s > 0 else None
        try:
            yield
        finally:
            if syncing is not None:
                syncing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await syncing

    app = FastAPI(
        lifespan=lifespan,
        title="adrec",
        version="0.1.0",
        description="Personalized ad recommendation: ad requests, feedback events, ad library, reports.",
    )
    app.state.adrec = state
    install(app, limits or Limits())

    # An advertiser key sees only its own advertiser's records: another advertiser's id is answered exactly as a
    # missing one (404, same message), so a key cannot tell which ids exist. Writing a new record under an id that
    # another advertiser holds is refused with 409: that an id is taken cannot be hidden from whoever tries to
    # create it.
    def mine(key: ApiKeyRecord, advertiser_id: str) -> bool:
        return key.role != "advertiser" or key.advertiser_id == advertiser_id

    def own_advertiser(key: ApiKeyRecord, advertiser_id: str) -> Advertiser:
        if not mine(key, advertiser_id):
            raise NotFoundError(f"no advertiser with id {advertiser_id!r}")
        return state.store.get_advertiser(advertiser_id)

    def own_campaign(key: ApiKeyRecord, campaign_id: str) -> Campaign:
        """The campaign, if the key may see it (404 alike when unknown or another advertiser's)."""
        campaign = state.store.get_campaign(campaign_id)
        if not mine(key, campaign.advertiser_id):
            raise NotFoundError(f"no campaign with id {campaign_id!r}")
        return campaign

    def own_ad(key: ApiKeyRecord, ad_id: str) -> Ad:
        """The ad, if the key may see it (404 alike when unknown or another advertiser's)."""
        ad = state.store.get_ad(ad_id)
        try:
            own_campaign(key, ad.campaign_id)
        except NotFoundError:
            raise NotFoundError(f"no ad with id {ad_id!r}") from None
        return ad

    def free_or_own(key: ApiKeyRecord, kind: str, record_id: str, owner: Callable[[str], str]) -> None:
        """Refuse (409) to write a record over an id that another advertiser's record holds (``owner``: the
        advertiser of the stored record with that id)."""
        try:
            advertiser_id = owner(record_id)
        except NotFoundError:
            return  # a new id
        if not mine(key, advertiser_id):
            raise HTTPException(409, f"{kind} id {record_id!r} is not available")

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

    # -- serving ----------------------------------------------------------------------------------------------
    @app.get("/v1/recommendations", tags=["serving"], openapi_extra={"parameters": _query_parameters(AdRequest)})
    async def recommendations(key: Serving, request: Request) -> Response:
        """Ranked, priced and explained ads for a user; unknown users are served by cold start (popular, fresh).

        Serving keys get what a publisher needs (ad, creative, price charged, token, explanation); advertisers'
        bids and eCPMs are confidential and only admin keys see them."""
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
        body = response.as_dict(confidential=key.role == "admin")
        return Response(orjson.dumps(body), media_type="application/json")

    @app.post("/v1/events", tags=["serving"], openapi_extra={"requestBody": _events_schema()})
    def events(_key: Serving, body: Annotated[EventsIn, Depends(_events_body)]) -> dict[str, Any]:
        """Impressions, clicks and conversions (batched). Idempotent by ``event_id``; acknowledged = durable.

        A click needs a recorded impression of the same token, a conversion a recorded click; each event is charged
        at most once, and never beyond what is left of its campaign's budgets (the rest is ``unbilled``).
        Impressions beyond a campaign's frequency caps, and an event id already used for another token, are
        rejected. Events that fail are listed in ``rejected`` with the reason; the others are recorded.
        """
        report = ingest_feedback(state.store, state.signer, body.events)
        if report.accepted:
            state.pipeline.refresh_spend()
        return {
            "received": report.received,
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "spend": round(report.spend, 6),
            "unbilled": round(report.unbilled, 6),
            "rejected": [{"index": i, "event_id": eid, "error": msg} for i, eid, msg in report.rejected],
        }

    # -- ad library -------------------------------------------------------------------------------------------
    def _same(path_id: str, body_id: str, name: str) -> None:
        if path_id != body_id:
            raise ValidationError(name, f"{body_id!r} in the body differs from {path_id!r} in the path")

    @app.put("/v1/advertisers/{advertiser_id}", tags=["ad library"])
    def put_advertiser(_key: Admin, advertiser_id: Id, body: Advertiser) -> dict[str, Any]:
        _same(advertiser_id, body.advertiser_id, "advertiser_id")
        state.store.upsert_advertisers([body])
        return body.model_dump(mode="json")

    @app.get("/v1/advertisers/{advertiser_id}", tags=["ad library"])
    def get_advertiser(key: Manager, advertiser_id: Id) -> dict[str, Any]:
        return own_advertiser(key, advertiser_id).model_dump(mode="json")

    @app.put("/v1/campaigns/{campaign_id}", tags=["ad library"])
    def put_campaign(key: Manager, campaign_id: Id, body: Campaign) -> dict[str, Any]:
        _same(campaign_id, body.campaign_id, "campaign_id")
        own_advertiser(key, body.advertiser_id)
        free_or_own(key, "campaign", campaign_id, lambda cid: state.store.get_campaign(cid).advertiser_id)
        state.store.upsert_campaigns([body])
        state.refresh_catalog()
        return body.model_dump(mode="json")

    @app.get("/v1/campaigns/{campaign_id}", tags=["ad library"])
    def get_campaign(key: Manager, campaign_id: Id) -> dict[str, Any]:
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
    def end_campaign(key: Manager, campaign_id: Id) -> dict[str, Any]:
        """End a campaign (its history and reports stay)."""
        ended = own_campaign(key, campaign_id).model_copy(update={"status": CampaignStatus.ENDED})
        state.store.upsert_campaigns([ended])
        state.refresh_catalog()
        return ended.model_dump(mode="json")

    @app.put("/v1/ads/{ad_id}", tags=["ad library"])
    def put_ad(key: Manager, ad_id: Id, body: Ad) -> dict[str, Any]:
        _same(ad_id, body.ad_id, "ad_id")
        own_campaign(key, body.campaign_id)
        # Another advertiser's existing ad is not adopted into this advertiser's campaign (the takeover).
        free_or_own(
            key, "ad", ad_id, lambda aid: state.store.get_campaign(state.store.get_ad(aid).campaign_id).advertiser_id
        )
        state.store.upsert_ads([body])
        state.refresh_catalog()
        return body.model_dump(mode="json")

    @app.get("/v1/ads/{ad_id}", tags=["ad library"])
    def get_ad(key: Manager, ad_id: Id) -> dict[str, Any]:
        return own_ad(key, ad_id).model_dump(mode="json")

    @app.delete("/v1/ads/{ad_id}", tags=["ad library"])
    def end_ad(key: Manager, ad_id: Id) -> dict[str, Any]:
        ended = own_ad(key, ad_id).model_copy(update={"status": CampaignStatus.ENDED})
        state.store.upsert_ads([ended])
        state.refresh_catalog()
        return ended.model_dump(mode="json")

    # -- users ------------------------------------------------------------------------------------------------
    @app.put("/v1/users/{user_id}", tags=["users"])
    def put_user(_key: Admin, user_id: Id, body: User) -> dict[str, Any]:
        _same(user_id, body.user_id, "user_id")
        state.store.upsert_users([body])
        return body.model_dump(mode="json")

    @app.get("/v1/users/{user_id}", tags=["users"])
    def get_user(_key: Admin, user_id: Id) -> dict[str, Any]:
        return state.store.get_user(user_id).model_dump(mode="json")

    @app.delete("/v1/users/{user_id}", tags=["users"])
    def erase_user(_key: Admin, user_id: Id) -> dict[str, Any]:
        """Right to erasure: the user's record, profile, events and deliveries are deleted."""
        return asdict(state.store.delete_user(user_id))

    # -- reports ----------------------------------------------------------------------------------------------
    @app.get("/v1/reports/campaigns", tags=["reports"])
    def campaign_report(
        key: Manager,
        campaign_id: Annotated[list[Id] | None, Query(max_length=1000)] = None,
        start: Annotated[date | None, Query(description="First UTC day (YYYY-MM-DD), inclusive.")] = None,
        end: Annotated[date | None, Query(description="Last UTC day (YYYY-MM-DD), inclusive.")] = None,
    ) -> list[dict[str, Any]]:
        """Per campaign and UTC day: impressions, clicks, CTR, conversions, spend, CPC, CPA, and unbilled delivery
        (what billable events would have cost beyond the budget or after the campaign ended). An unknown campaign
        id, or another advertiser's, is 404."""
        ids = campaign_id
        for cid in ids or ():
            own_campaign(key, cid)
        if key.role == "advertiser" and ids is None:
            ids = [
                c.campaign_id for b in state.store.iter_campaigns() for c in b if c.advertiser_id == key.advertiser_id
            ]
        days = (d.isoformat() if d is not None else None for d in (start, end))
        rows = state.store.delivery_report(ids, *days)
        return [
            {
                **asdict(r),
                "ctr": r.ctr,
                "cpc": r.cpc,
                "cpa": r.cpa,
                "spend": round(r.spend, 6),
                "unbilled": round(r.unbilled, 6),
            }
            for r in rows
        ]

    # -- admin ------------------------------------------------------------------------------------------------
    @app.post("/v1/admin/models/reload", tags=["admin"])
    def reload_model(_key: Admin) -> dict[str, Any]:
        """Load the models folder's current model and swap it in without dropping requests."""
        model = state.reload_model()
        return {"model_version": model.version, "calibrated_on": model.calibrator.n}

    @app.post("/v1/admin/catalog/refresh", tags=["admin"])
    def refresh_catalog(_key: Admin) -> dict[str, Any]:
        """Re-read the ad library from the store (after writes that did not go through this API)."""
        state.refresh_catalog()
        catalog = state.pipeline.catalog
        quarantined = [{"kind": k, "id": i, "error": e} for k, i, e in catalog.quarantined]
        return {"ads": catalog.n_ads, "campaigns": catalog.n_campaigns, "quarantined": quarantined}

    return app
