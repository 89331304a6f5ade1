"""``/v1/campaigns``: budgets, bids, schedules, targeting and caps of an advertiser's buys."""

from __future__ import annotations

from fastapi import APIRouter

from adrec.data.schema import Campaign, CampaignStatus, Id
from adrec.serving.api.deps import KnownQuery, Manager, State, free_or_own, own_advertiser, own_campaign, same_id
from adrec.serving.api.errors import CONFLICT, KEYED, NOT_FOUND

router = APIRouter(prefix="/v1/campaigns", tags=["ad library"], responses=KEYED, dependencies=[KnownQuery])


@router.put("/{campaign_id}", responses={**NOT_FOUND, **CONFLICT})
def put_campaign(key: Manager, state: State, campaign_id: Id, body: Campaign) -> Campaign:
    """Create or replace a campaign of the key's advertiser (any advertiser's, for admin keys)."""
    same_id(campaign_id, body.campaign_id, "campaign_id")
    own_advertiser(state, key, body.advertiser_id)
    free_or_own(key, "campaign", campaign_id, lambda cid: state.store.get_campaign(cid).advertiser_id)
    state.store.upsert_campaigns([body])
    state.refresh_catalog()
    return body


@router.get("/{campaign_id}", responses=NOT_FOUND)
def get_campaign(key: Manager, state: State, campaign_id: Id) -> Campaign:
    return own_campaign(state, key, campaign_id)


@router.get("")
def list_campaigns(key: Manager, state: State, advertiser_id: Id | None = None) -> list[Campaign]:
    """The campaigns the key may see (an advertiser key: its own, whatever ``advertiser_id`` says)."""
    if key.role == "advertiser":
        advertiser_id = key.advertiser_id
    return [
        c
        for batch in state.store.iter_campaigns()
        for c in batch
        if advertiser_id is None or c.advertiser_id == advertiser_id
    ]


@router.delete("/{campaign_id}", responses=NOT_FOUND)
def end_campaign(key: Manager, state: State, campaign_id: Id) -> Campaign:
    """End a campaign (its history and reports stay; nothing is billed after it ended)."""
    ended = own_campaign(state, key, campaign_id).model_copy(update={"status": CampaignStatus.ENDED})
    state.store.upsert_campaigns([ended])
    state.refresh_catalog()
    return ended
