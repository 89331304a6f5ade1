"""What the HTTP API reads and answers: request models (with the fast parsers of the two hot endpoints) and the
response models its OpenAPI document declares."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from datetime import date
from typing import Annotated, Any, TypeVar, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema
from pydantic import ValidationError as PydanticValidationError
from pydantic.dataclasses import dataclass
from starlette.datastructures import QueryParams

from adrec.data.schema import ID_PATTERN, MAX_ID_LENGTH, Device, Id

__all__ = [
    "AdRequest",
    "CatalogOut",
    "Day",
    "ErasureOut",
    "ErrorOut",
    "EventIn",
    "EventsIn",
    "EventsOut",
    "HealthOut",
    "ReadyOut",
    "RecommendationsOut",
    "ReloadOut",
    "ReportRowOut",
    "ValidationErrorOut",
]

MAX_EVENTS_PER_BATCH = 50_000
_DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class AdRequest(BaseModel):
    """The query of ``GET /v1/recommendations``."""

    user_id: Id
    k: int = Field(default=10, ge=1, le=100, description="How many ads, at most.")
    placement: str | None = Field(default=None, max_length=100, description="Where the ads will show.")
    device: Device | None = Field(default=None, description="Overrides the user's declared device.")
    region: str | None = Field(default=None, max_length=100, description="Overrides the user's declared region.")
    exclude_advertisers: list[Id] = Field(
        default_factory=list, max_length=1000, description="Advertisers not to show (repeatable)."
    )
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Your id of this request: echoed as the response's request_id, and the seed of its random draws "
        "(exploration), so the same id draws the same. The served ads' impression ids stay unique.",
    )


_Query = TypeVar("_Query", bound=BaseModel)


def inlined_schema(model: Any) -> dict[str, Any]:
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
def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = inlined_schema(model)
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


#: The simulated clock's header, as the OpenAPI document declares it on the endpoints that take it.
CLOCK_PARAMETER: dict[str, Any] = {
    "name": "X-Adrec-Clock",
    "in": "header",
    "required": False,
    "description": "Only for a server started with --simulated-clock (test harnesses), where it is required: the "
    "request's time in Unix seconds, used instead of the wall clock. Any other server refuses it (422).",
    "schema": {"type": "number", "minimum": 0},
}


def takes_several(annotation: Any) -> bool:
    """Whether a query parameter of this type takes several values (``list[...]``, also inside ``| None``)."""
    if get_origin(annotation) is list:
        return True
    return any(get_origin(arg) is list for arg in get_args(annotation))


def check_query(params: QueryParams, allowed: Collection[str], several: Collection[str]) -> None:
    """Refuse (422) a query parameter the route does not declare, and a one-value parameter given more than once
    (it would otherwise be ignored, or silently take the last value): a misspelt or doubled filter must not pass
    unnoticed."""
    for name in params:
        if name not in allowed:
            msg = f"unknown query parameter; this route takes {', '.join(sorted(allowed)) or 'none'}"
            raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", name), "msg": msg}])
        if name not in several and len(params.getlist(name)) > 1:
            raise RequestValidationError([{"type": "too_many", "loc": ("query", name), "msg": "given more than once"}])


@functools.cache
def _several(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, field in model.model_fields.items() if takes_several(field.annotation))


def parse_query(model: type[_Query], request: Request) -> _Query:
    """``model`` from the request's query string; errors are 422 at ``("query", field)``, as FastAPI's are."""
    params = request.query_params
    several = _several(model)
    check_query(params, model.model_fields, several)
    data: dict[str, Any] = {
        name: params.getlist(name) if name in several else params[name] for name in model.model_fields if name in params
    }
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


# A slotted dataclass rather than a BaseModel: one object per event instead of three (instance, fields set, dict).
# A batch's events live through the request, and fewer of them put off the garbage collector's full passes.
@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class EventIn:
    """One feedback event. ``token`` is the impression token of the served ad it is about."""

    event_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    type: str = Field(pattern="^(impression|click|conversion)$")
    token: str = Field(min_length=10, max_length=2000)
    # Strict: a number (integer or not), never true/false or a numeric string.
    ts: float | None = Field(
        default=None, strict=True, allow_inf_nan=False, description="Unix seconds; default: when the server receives it"
    )
    value: float | None = Field(
        default=None, strict=True, allow_inf_nan=False, description="e.g. the order value of a conversion"
    )


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


def events_schema() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/events``: :class:`EventsIn` with ``EventIn`` inlined (no ``$defs``)."""
    return {"required": True, "content": {"application/json": {"schema": inlined_schema(EventsIn)}}}


async def events_body(request: Request) -> EventsIn:
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


def _iso_day(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a day as YYYY-MM-DD")
    return value


Day = Annotated[
    date, BeforeValidator(_iso_day), WithJsonSchema({"type": "string", "format": "date", "pattern": _DAY_PATTERN})
]
"""A calendar day written ``YYYY-MM-DD`` (and only so: no timestamps), which must exist (no 2026-13-45)."""


# -- responses -------------------------------------------------------------------------------------------------
class ErrorOut(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: body, query or path, then the field's path")
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422: the request broke the API's rules; each entry names the field."""

    detail: list[FieldError]


class HealthOut(BaseModel):
    status: str
    uptime_s: float


class ReadyOut(BaseModel):
    """Readiness. 503 answers carry ``status`` and ``detail`` (the reason) and, when known, the counts."""

    status: str
    detail: str | None = None
    model_version: str | None = None
    ads: int | None = None
    campaigns: int | None = None
    quarantined: int | None = Field(default=None, description="Stored campaigns and ads left out as invalid")
    versions: dict[str, int] | None = Field(default=None, description="Store versions this process is up to")
    worker: int | None = Field(default=None, description="Process id of the worker that answered")


class CreativeOut(BaseModel):
    title: str
    body: str
    image_url: str | None
    landing_url: str | None
    category: str | None
    brand: str | None
    product_price: float | None


class ExplanationOut(BaseModel):
    source: str = Field(description="model, segment, popular or explore")
    similarity: float | None
    pctr: float
    pcvr: float
    ecpm: float | None = Field(default=None, description="Admin keys only (it reveals the bid)")
    price: float
    rules: list[str]


class ServedAdOut(BaseModel):
    rank: int
    ad_id: str
    campaign_id: str
    advertiser_id: str
    creative: CreativeOut
    pricing_model: str
    bid: float | None = Field(default=None, description="Admin keys only")
    price: float = Field(description="Charge per billable event (click, impression or conversion); never above the bid")
    explanation: ExplanationOut
    token: str = Field(description="Send it back with the ad's impression, click and conversion")


class RecommendationsOut(BaseModel):
    request_id: str
    user_id: str
    model_version: str | None
    cold_start: bool
    eligible_ads: int
    ads: list[ServedAdOut]


class RejectedOut(BaseModel):
    index: int = Field(description="Position in the batch")
    event_id: str
    error: str


class EventsOut(BaseModel):
    received: int
    accepted: int
    duplicates: int = Field(description="Event ids already recorded for the same token: acknowledged, no effect")
    spend: float = Field(description="What the accepted events were charged")
    unbilled: float = Field(description="What billable events would have cost beyond budgets or after campaigns ended")
    rejected: list[RejectedOut]


class ReportRowOut(BaseModel):
    campaign_id: str
    day: str
    impressions: int
    clicks: int
    conversions: int
    spend: float
    unbilled: float
    ctr: float
    cpc: float | None
    cpa: float | None


class ErasureOut(BaseModel):
    user_id: str
    users: int
    events: int
    profiles: int


class ReloadOut(BaseModel):
    model_version: str
    calibrated_on: int = Field(description="Impressions the pCTR calibration was fitted on")


class QuarantinedOut(BaseModel):
    kind: str
    id: str
    error: str


class CatalogOut(BaseModel):
    ads: int
    campaigns: int
    quarantined: list[QuarantinedOut]
