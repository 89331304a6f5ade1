"""Each arm's marketplace, and how the market changes while the experiment runs.

**Budget split** (Liu et al., "Trustworthy online marketplace experimentation with budget-split design", KDD 2021).
Every arm serves its users from a store of its own that holds the same market and the same warm-up history; then
:func:`split_budgets` gives each campaign, in that store, the arm's traffic share ``s`` of its budgets: the daily
budget becomes ``s × daily`` and the total budget ``spent + s × (total − spent)`` (what the warm-up spent stays
spent; the arm gets its share of the rest), in cents rounded down. Summed over the arms the shares never exceed
the campaign's own budgets, and no arm can win by draining a budget the others needed: each arm's ledger charges
its own sub-budgets.

**Launches** (:class:`Launch`): a share of the campaigns that have a total budget are held back from the warm-up
history and start ``day`` days into the live window (open-ended), so their ads arrive with no history at all.

**Bid changes** (:class:`BidChange`): at ``day`` days into the live window a share of the campaigns multiply their
bid by ``factor``, written through the store as an advertiser's update is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from adrec.data.schema import Campaign, CampaignStatus, utc_day
from adrec.simulate.market import Market
from adrec.store.base import Store

__all__ = ["ArmBudgets", "BidChange", "Launch", "change_bids", "pick_campaigns", "split_budgets", "with_launches"]


class Launch(BaseModel):
    """Campaigns launched during the live window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(gt=0, le=1)
    """Share of the campaigns with a total budget (the open-ended evergreen ones never launch) held back."""
    day: float = Field(default=1.0, ge=0, le=365)
    """When they start, in simulated days after the live window opens."""


class BidChange(BaseModel):
    """Advertisers changing their bids during the live window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(gt=0, le=1)
    """Share of all campaigns whose bid changes."""
    day: float = Field(default=1.0, ge=0, le=365)
    """When, in simulated days after the live window opens."""
    factor: float = Field(default=1.5, gt=0, le=100)
    """Each changed bid is multiplied by this (rounded to cents, at least 0.01)."""


def pick_campaigns(candidates: npt.NDArray[np.bool_], share: float, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """A random ``share`` of the ``candidates`` (at least one when there is any), as a mask."""
    index = np.flatnonzero(candidates)
    n = min(len(index), max(1, round(share * len(index)))) if len(index) else 0
    picked = np.zeros(len(candidates), dtype=bool)
    picked[rng.choice(index, size=n, replace=False)] = True
    return picked


def with_launches(
    market: Market, launch: Launch, live_start: float, rng: np.random.Generator
) -> tuple[Market, npt.NDArray[np.bool_]]:
    """``market`` with a share of its budgeted campaigns moved to start ``launch.day`` days after ``live_start``
    (and run open-ended), and the mask of those campaigns."""
    launched = pick_campaigns(~np.isnan(market.campaign_total_budget), launch.share, rng)
    start = np.where(launched, math.floor(live_start + launch.day * 86_400.0), market.campaign_start)
    end = np.where(launched, np.inf, market.campaign_end)
    return dataclasses.replace(market, campaign_start=start, campaign_end=end), launched


@dataclasses.dataclass(frozen=True)
class ArmBudgets:
    """One arm's share of the campaigns' budgets after :func:`split_budgets`, by campaign id."""

    daily: dict[str, float]
    """The arm's daily budget of each campaign that has one."""
    remaining: dict[str, float]
    """What the arm may still spend of each campaign's total budget (campaigns with one)."""
    active: frozenset[str]
    """Campaigns whose status is active in the arm's store when the live window opens."""


def _cents_down(x: float) -> float:
    return math.floor(round(x * 100.0, 6)) / 100.0


def split_budgets(store: Store, share: float, now: float) -> ArmBudgets:
    """Give the arm of ``store`` its ``share`` of every campaign's budgets (see the module docs), through the
    store's campaign upserts. A campaign whose share rounds to less than a cent is paused in this arm."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    spent = {c: total for c, (_, total) in store.campaign_spend(utc_day(now)).items()}
    changed: list[Campaign] = []
    daily: dict[str, float] = {}
    remaining: dict[str, float] = {}
    active: set[str] = set()
    for batch in store.iter_campaigns():
        for c in batch:
            day = None if c.daily_budget is None else _cents_down(share * c.daily_budget)
            total, left = None, math.inf
            if c.total_budget is not None:
                done = spent.get(c.campaign_id, 0.0)
                left = _cents_down(share * max(c.total_budget - done, 0.0))
                total = round(done + left, 2)
                day = None if day is None else min(day, total)
            if (day is not None and day < 0.01) or left < 0.01:
                changed.append(c.model_copy(update={"status": CampaignStatus.PAUSED}))
                remaining[c.campaign_id] = 0.0
                continue
            if day is not None:
                daily[c.campaign_id] = day
            if total is not None:
                remaining[c.campaign_id] = left
            if c.status == CampaignStatus.ACTIVE:
                active.add(c.campaign_id)
            changed.append(c.model_copy(update={"daily_budget": day, "total_budget": total}))
    store.upsert_campaigns(changed)
    return ArmBudgets(daily, remaining, frozenset(active))


def change_bids(store: Store, campaign_ids: Sequence[str], factor: float) -> int:
    """Multiply the bids of ``campaign_ids`` in ``store`` by ``factor`` (cents, at least 0.01); returns how many."""
    changed = []
    for campaign_id in campaign_ids:
        c = store.get_campaign(campaign_id)
        changed.append(c.model_copy(update={"bid": max(0.01, round(c.bid * factor, 2))}))
    return store.upsert_campaigns(changed)
