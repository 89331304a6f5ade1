"""Dependencies of the routes: the server state, the caller's API key and role, and what an advertiser key may see.

Every ``/v1`` route needs an API key in ``X-API-Key``: a missing or unknown key is 401, a key whose role may not do
the call is 403. Roles: ``admin`` (everything), ``advertiser`` (its own advertiser's records and reports),
``serving`` (ad requests and events).

An advertiser key sees only its own advertiser's records: another advertiser's id is answered exactly as a missing
one (404, same message), so a key cannot tell which ids exist. Writing a new record under an id that another
advertiser holds is refused with 409: that an id is taken cannot be hidden from whoever tries to create it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from adrec.data.schema import Ad, Advertiser, Campaign
from adrec.exceptions import NotFoundError, ValidationError
from adrec.serving.api.schemas import check_query, takes_several
from adrec.serving.api.state import ServerState
from adrec.store.base import ApiKeyRecord

__all__ = [
    "Admin",
    "KnownQuery",
    "Manager",
    "Serving",
    "State",
    "free_or_own",
    "own_ad",
    "own_advertiser",
    "own_campaign",
    "same_id",
]

_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


async def _state(request: Request) -> ServerState:  # async: a sync dependency would hop through the thread pool
    state: ServerState = request.app.state.adrec
    return state


State = Annotated[ServerState, Depends(_state)]


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


_QUERY_NAMES: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def _query_names(route: Any) -> tuple[frozenset[str], frozenset[str]]:
    """The route's query parameters, and those of them that take several values (computed once per route)."""
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        params = route.dependant.query_params
        declared = {p.alias for p in params}
        declared |= {p["name"] for p in (route.openapi_extra or {}).get("parameters", []) if p.get("in") == "query"}
        several = {p.alias for p in params if takes_several(p.field_info.annotation)}
        names = _QUERY_NAMES[id(route)] = (frozenset(declared), frozenset(several))
    return names


async def known_query(request: Request) -> None:
    """:func:`~adrec.serving.api.schemas.check_query` for the routes whose query FastAPI reads."""
    route = request.scope.get("route")
    if route is not None and request.query_params:
        check_query(request.query_params, *_query_names(route))


KnownQuery = Depends(known_query)


def _mine(key: ApiKeyRecord, advertiser_id: str) -> bool:
    return key.role != "advertiser" or key.advertiser_id == advertiser_id


def own_advertiser(state: ServerState, key: ApiKeyRecord, advertiser_id: str) -> Advertiser:
    """The advertiser, if the key may see it (404 alike when unknown or another advertiser)."""
    if not _mine(key, advertiser_id):
        raise NotFoundError(f"no advertiser with id {advertiser_id!r}")
    return state.store.get_advertiser(advertiser_id)


def own_campaign(state: ServerState, key: ApiKeyRecord, campaign_id: str) -> Campaign:
    """The campaign, if the key may see it (404 alike when unknown or another advertiser's)."""
    campaign = state.store.get_campaign(campaign_id)
    if not _mine(key, campaign.advertiser_id):
        raise NotFoundError(f"no campaign with id {campaign_id!r}")
    return campaign


def own_ad(state: ServerState, key: ApiKeyRecord, ad_id: str) -> Ad:
    """The ad, if the key may see it (404 alike when unknown or another advertiser's)."""
    ad = state.store.get_ad(ad_id)
    try:
        own_campaign(state, key, ad.campaign_id)
    except NotFoundError:
        raise NotFoundError(f"no ad with id {ad_id!r}") from None
    return ad


def free_or_own(key: ApiKeyRecord, kind: str, record_id: str, owner: Callable[[str], str]) -> None:
    """Refuse (409) to write a record over an id that another advertiser's record holds (``owner``: the advertiser
    of the stored record with that id, NotFoundError when there is none)."""
    try:
        advertiser_id = owner(record_id)
    except NotFoundError:
        return  # a new id
    if not _mine(key, advertiser_id):
        raise HTTPException(409, f"{kind} id {record_id!r} is not available")


def same_id(path_id: str, body_id: str, name: str) -> None:
    """The id in the path and the body's must agree (422 naming the field)."""
    if path_id != body_id:
        raise ValidationError(name, f"{body_id!r} in the body differs from {path_id!r} in the path")
