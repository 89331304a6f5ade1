"""``/v1/advertisers/{advertiser_id}``."""

from __future__ import annotations

from fastapi import APIRouter

from adrec.data.schema import Advertiser, Id
from adrec.serving.api.deps import Admin, KnownQuery, Manager, State, own_advertiser, same_id
from adrec.serving.api.errors import KEYED, NOT_FOUND

router = APIRouter(prefix="/v1/advertisers", tags=["ad library"], responses=KEYED, dependencies=[KnownQuery])


@router.put("/{advertiser_id}")
def put_advertiser(_key: Admin, state: State, advertiser_id: Id, body: Advertiser) -> Advertiser:
    """Create or replace an advertiser (admin keys)."""
    same_id(advertiser_id, body.advertiser_id, "advertiser_id")
    state.store.upsert_advertisers([body])
    return body


@router.get("/{advertiser_id}", responses=NOT_FOUND)
def get_advertiser(key: Manager, state: State, advertiser_id: Id) -> Advertiser:
    return own_advertiser(state, key, advertiser_id)
