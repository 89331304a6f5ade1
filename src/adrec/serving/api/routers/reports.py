"""``GET /v1/reports/campaigns``: delivery per campaign and UTC day."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from adrec.data.schema import Id
from adrec.serving.api.deps import KnownQuery, Manager, State, own_campaign
from adrec.serving.api.errors import KEYED, NOT_FOUND
from adrec.serving.api.schemas import Day, ReportRowOut

router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=KEYED, dependencies=[KnownQuery])


@router.get("/campaigns", responses=NOT_FOUND)
def campaign_report(
    key: Manager,
    state: State,
    campaign_id: Annotated[list[Id] | None, Query(max_length=1000)] = None,
    start: Annotated[Day | None, Query(description="First UTC day (YYYY-MM-DD), inclusive.")] = None,
    end: Annotated[Day | None, Query(description="Last UTC day (YYYY-MM-DD), inclusive.")] = None,
) -> list[ReportRowOut]:
    """Per campaign and UTC day: impressions, clicks, CTR, conversions, spend, CPC, CPA, and unbilled delivery (what
    billable events would have cost beyond the budget or after the campaign ended). An unknown campaign id, or
    another advertiser's, is 404."""
    ids = campaign_id
    for cid in ids or ():
        own_campaign(state, key, cid)
    if key.role == "advertiser" and ids is None:
        mine = key.advertiser_id
        ids = [c.campaign_id for b in state.store.iter_campaigns() for c in b if c.advertiser_id == mine]
    days = (d.isoformat() if d is not None else None for d in (start, end))
    return [
        ReportRowOut(
            campaign_id=r.campaign_id,
            day=r.day,
            impressions=r.impressions,
            clicks=r.clicks,
            conversions=r.conversions,
            spend=round(r.spend, 6),
            unbilled=round(r.unbilled, 6),
            ctr=r.ctr,
            cpc=r.cpc,
            cpa=r.cpa,
        )
        for r in state.store.delivery_report(ids, *days)
    ]
