"""``/v1/ads/{ad_id}``: ads and their creatives."""

from __future__ import annotations

from fastapi import APIRouter

from adrec.data.schema import Ad, CampaignStatus, Id
from adrec.serving.api.deps import KnownQuery, Manager, State, free_or_own, own_ad, own_campaign, same_id
from adrec.serving.api.errors import CONFLICT, KEYED, NOT_FOUND

router = APIRouter(prefix="/v1/ads", tags=["ad library"], responses=KEYED, dependencies=[KnownQuery])


@router.put("/{ad_id}", responses={**NOT_FOUND, **CONFLICT})
def put_ad(key: Manager, state: State, ad_id: Id, body: Ad) -> Ad:
    """Create or replace an ad in one of the key's advertiser's campaigns."""
    same_id(ad_id, body.ad_id, "ad_id")
    own_campaign(state, key, body.campaign_id)
    # Another advertiser's existing ad is not adopted into this advertiser's campaign (the takeover).
    store = state.store
    free_or_own(key, "ad", ad_id, lambda aid: store.get_campaign(store.get_ad(aid).campaign_id).advertiser_id)
    store.upsert_ads([body])
    state.refresh_catalog()
    return body


@router.get("/{ad_id}", responses=NOT_FOUND)
def get_ad(key: Manager, state: State, ad_id: Id) -> Ad:
    return own_ad(state, key, ad_id)


@router.delete("/{ad_id}", responses=NOT_FOUND)
def end_ad(key: Manager, state: State, ad_id: Id) -> Ad:
    """End an ad (it stops serving; its history stays)."""
    ended = own_ad(state, key, ad_id).model_copy(update={"status": CampaignStatus.ENDED})
    state.store.upsert_ads([ended])
    state.refresh_catalog()
    return ended
