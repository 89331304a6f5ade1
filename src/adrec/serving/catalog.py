"""The ad library as arrays, for vectorised eligibility: which ads may be shown to this user, here, now.

A :class:`CatalogSnapshot` is built from the store (campaigns, ads) and is immutable; the server swaps in a new one
when the library changes. Eligibility is evaluated per campaign (status, schedule, budget and pacing, targeting,
advertiser exclusions) and applied to ads (ad status, frequency caps) only where asked: for the candidates.
:meth:`CatalogSnapshot.explain` re-checks the rules of one ad in words, for the response's explanation.

Targeting is :mod:`adrec.data.targeting`'s: its :class:`~adrec.data.targeting.TargetingTables` over the campaigns
answer for the user (:meth:`CatalogSnapshot.eligible_campaigns`) and the time (:meth:`CatalogSnapshot.timed_campaigns`),
and its rules give the explanation's words.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from adrec.data.schema import Ad, Campaign, CampaignStatus, Device, Pacing, User, to_epoch
from adrec.data.targeting import Facts, Rule, TargetingTables, clock, rules

__all__ = ["CatalogSnapshot", "Eligibility", "RequestContext", "pacing_allowance"]

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class RequestContext:
    """Where and when an ad is requested. ``device``/``region`` override the user's declared ones."""

    now: float
    placement: str | None = None
    device: Device | None = None
    region: str | None = None
    exclude_advertisers: frozenset[str] = frozenset()

    @property
    def hour(self) -> int:
        """The hour (0-23, UTC) targeting's ``hours`` rules read (:func:`adrec.data.targeting.clock`)."""
        return clock(self.now)[0]

    @property
    def day_of_week(self) -> int:
        """The day of the week (0 = Monday, UTC) targeting's ``days_of_week`` rules read."""
        return clock(self.now)[1]


def pacing_allowance(daily_budget: npt.NDArray[np.float64], now: float, slack: float = 0.02) -> npt.NDArray[np.float64]:
    """Even pacing: the spend allowed by ``now`` is the budget times the share of the UTC day gone, plus a slack."""
    return daily_budget * min(1.0, (now % 86_400.0) / 86_400.0 + slack)


@dataclass
class CatalogSnapshot:
    """Campaigns and ads as parallel arrays (built by :meth:`build`)."""

    campaigns: list[Campaign]
    ads: list[Ad]
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)
    """``(kind, id, reason)`` of the stored campaigns and ads left out because they are no longer valid records
    (written by an older version, or by hand): one bad row is reported, never blocks the catalogue."""

    def __post_init__(self) -> None:
        cs, ads = self.campaigns, self.ads
        n = len(cs)
        self.n_campaigns, self.n_ads = n, len(ads)
        self.campaign_index = {c.campaign_id: i for i, c in enumerate(cs)}
        self.ad_index = {a.ad_id: i for i, a in enumerate(ads)}
        self.ad_ids = np.array([a.ad_id for a in ads], dtype=object)
        self.ad_campaign = np.array([self.campaign_index.get(a.campaign_id, -1) for a in ads], dtype=np.int64)
        self.ad_active = np.array([a.status == CampaignStatus.ACTIVE for a in ads], dtype=bool) & (
            self.ad_campaign >= 0
        )
        self.ad_campaign_clipped = np.maximum(self.ad_campaign, 0)  # for gathers; ads without campaign are inactive
        self.ad_category = np.array([a.category or "" for a in ads], dtype=object)
        self.c_ids = np.array([c.campaign_id for c in cs], dtype=object)
        self.c_advertiser = np.array([c.advertiser_id for c in cs], dtype=object)
        self.ad_advertiser = self.c_advertiser[np.maximum(self.ad_campaign, 0)] if n else np.array([], dtype=object)
        _, self.ad_advertiser_code = np.unique(self.ad_advertiser.astype(str), return_inverse=True)
        self.n_advertiser_codes = int(self.ad_advertiser_code.max()) + 1 if len(ads) else 0
        _, self.ad_category_code = np.unique(self.ad_category.astype(str), return_inverse=True)
        self.n_category_codes = int(self.ad_category_code.max()) + 1 if len(ads) else 0
        self.c_active = np.array([c.status == CampaignStatus.ACTIVE for c in cs], dtype=bool)
        self.c_start = np.array([to_epoch(c.start) if c.start else -np.inf for c in cs], dtype=np.float64)
        self.c_end = np.array([to_epoch(c.end) if c.end else np.inf for c in cs], dtype=np.float64)
        self.c_daily = np.array([c.daily_budget or np.inf for c in cs], dtype=np.float64)
        self.c_total = np.array([c.total_budget or np.inf for c in cs], dtype=np.float64)
        self.c_even = np.array([c.pacing == Pacing.EVEN and c.daily_budget is not None for c in cs], dtype=bool)
        self.c_bid = np.array([c.bid for c in cs], dtype=np.float64)
        self.c_pricing = np.array([c.pricing_model.value for c in cs], dtype="<U3")
        self.c_cap_ad = np.array([c.frequency.per_ad or 0 for c in cs], dtype=np.int64)
        self.c_cap_campaign = np.array([c.frequency.per_campaign or 0 for c in cs], dtype=np.int64)
        self.c_window = np.array([c.frequency.window_s for c in cs], dtype=np.float64)
        capped = self.c_capped = (self.c_cap_ad > 0) | (self.c_cap_campaign > 0)
        self._rule_cache: dict[int, tuple[list[Rule], list[str]]] = {}
        self.active_ads_per_campaign = np.bincount(self.ad_campaign[self.ad_active], minlength=n)
        self.max_window = float(self.c_window[capped].max()) if capped.any() else 0.0

    @classmethod
    def build(
        cls, campaigns: Iterable[Campaign], ads: Iterable[Ad], quarantined: Iterable[tuple[str, str, str]] = ()
    ) -> CatalogSnapshot:
        return cls(list(campaigns), list(ads), list(quarantined))

    # -- eligibility ----------------------------------------------------------------------------------------
    @functools.cached_property
    def targeting(self) -> TargetingTables:
        """The campaigns' targeting, vectorised (built on first use)."""
        return TargetingTables.build([c.targeting for c in self.campaigns])

    def timed_campaigns(self, now: float, spent: npt.NDArray[np.float64]) -> BoolArray:
        """The campaigns whose rules do not depend on the user: active, in schedule, budget left (paced), and
        open at this hour and day of the week.

        ``spent`` is the per-campaign ``(n, 2)`` array of (today, total) spend (see :meth:`spend_array`). The
        pipeline evaluates this once per budget refresh and reuses it for the requests in between.
        """
        ok = self.c_active & (self.c_start <= now) & (now < self.c_end)
        today, total = spent[:, 0], spent[:, 1]
        ok &= (today < self.c_daily) & (total < self.c_total)
        if self.c_even.any():
            ok &= ~self.c_even | (today < pacing_allowance(self.c_daily, now))
        ok &= self.targeting.at(*clock(now))
        return ok

    def eligible_campaigns(
        self, user: User | None, interests: Iterable[str], ctx: RequestContext, timed: BoolArray
    ) -> BoolArray:
        """``timed`` (see :meth:`timed_campaigns`) narrowed by the user's targeting and the request's exclusions.

        ``interests`` are the user's targeting interests (:func:`adrec.data.targeting.targeting_interests`).
        """
        ok = timed & self.targeting.audience(Facts.of(user, interests, ctx))
        if ctx.exclude_advertisers:
            ok &= ~np.isin(self.c_advertiser, list(ctx.exclude_advertisers))
        return ok

    def spend_array(self, spend: Mapping[str, tuple[float, float]]) -> npt.NDArray[np.float64]:
        out = np.zeros((self.n_campaigns, 2), dtype=np.float64)
        for cid, (today, total) in spend.items():
            i = self.campaign_index.get(cid)
            if i is not None:
                out[i] = (today, total)
        return out

    def capped_ads(
        self,
        deliveries: Sequence[tuple[str, str, float]],
        now: float,
        pending: Sequence[tuple[str, str, float]] = (),
    ) -> npt.NDArray[np.int64]:
        """Ads (indices) the user may not see again now: their frequency caps are reached within the window.

        ``deliveries`` are the user's recorded impressions and ``pending`` the ads this process served the user
        whose impressions may not be recorded yet, each ``(campaign, ad, time)``. Per campaign and per ad the
        larger of the two counts is taken: the recorded impressions of tokens this process served are in both.
        """
        if (not deliveries and not pending) or self.max_window == 0.0:
            return np.array([], dtype=np.int64)
        per_ad: dict[int, int] = defaultdict(int)
        per_campaign: dict[int, int] = defaultdict(int)
        for source in (deliveries, pending):
            ads: dict[int, int] = defaultdict(int)
            campaigns: dict[int, int] = defaultdict(int)
            for cid, aid, ts in source:
                c = self.campaign_index.get(cid)
                if c is None or now - ts > self.c_window[c]:
                    continue
                campaigns[c] += 1
                a = self.ad_index.get(aid)
                if a is not None:
                    ads[a] += 1
            for c, count in campaigns.items():
                per_campaign[c] = max(per_campaign[c], count)
            for a, count in ads.items():
                per_ad[a] = max(per_ad[a], count)
        blocked = [a for a, count in per_ad.items() if 0 < self.c_cap_ad[self.ad_campaign[a]] <= count]
        full = [c for c, count in per_campaign.items() if 0 < self.c_cap_campaign[c] <= count]
        if full:
            blocked += np.flatnonzero(np.isin(self.ad_campaign, full)).tolist()
        return np.unique(np.array(blocked, dtype=np.int64))

    def eligibility(
        self,
        user: User | None,
        interests: Iterable[str],
        ctx: RequestContext,
        timed: BoolArray,
        deliveries: Sequence[tuple[str, str, float]] = (),
        pending: Sequence[tuple[str, str, float]] = (),
    ) -> Eligibility:
        """Which ads may be shown to this user in this request (see :class:`Eligibility`; ``deliveries`` and
        ``pending`` as in :meth:`capped_ads`)."""
        campaigns = self.eligible_campaigns(user, interests, ctx, timed)
        capped = self.capped_ads(deliveries, ctx.now, pending) if deliveries or pending else None
        return Eligibility(self, campaigns, capped)

    # -- explanation ----------------------------------------------------------------------------------------
    def explain(self, ad: int, user: User | None, interests: Iterable[str], ctx: RequestContext) -> list[str]:
        """The targeting rules the ad's campaign set and how the request met them, in words."""
        return self.explainer(user, interests, ctx)(ad)

    def explainer(self, user: User | None, interests: Iterable[str], ctx: RequestContext) -> Callable[[int], list[str]]:
        """:meth:`explain` for many ads of one request: the request's facts are read once, each campaign's rules
        once per snapshot."""
        facts = Facts.of(user, interests, ctx)

        def explain(ad: int) -> list[str]:
            targeting, terms = self._rules(int(self.ad_campaign[ad]))
            out = [rule.explain(facts) for rule in targeting] if targeting else ["open targeting (no rules)"]
            return out + terms

        return explain

    def _rules(self, campaign: int) -> tuple[list[Rule], list[str]]:
        """The campaign's targeting rules (:func:`adrec.data.targeting.rules`) and its other terms in words."""
        cached = self._rule_cache.get(campaign)
        if cached is not None:
            return cached
        c = self.campaigns[campaign]
        terms: list[str] = []
        if c.daily_budget is not None:
            terms.append(f"daily budget {c.daily_budget:g} ({c.pacing.value} pacing)")
        if c.frequency.per_ad or c.frequency.per_campaign:
            terms.append(
                f"frequency cap per ad {c.frequency.per_ad}, per campaign {c.frequency.per_campaign} "
                f"in {c.frequency.window_s:g} s: not reached"
            )
        out = self._rule_cache[campaign] = (rules(c.targeting), terms)
        return out


class Eligibility:
    """Which ads may serve in one request: the campaigns' verdicts, applied to ads when asked.

    ``eligibility[ads]`` answers for an array of ad indices (the candidates) without building the mask over the
    whole catalogue; :attr:`mask` builds it when a fallback needs it.
    """

    def __init__(self, catalog: CatalogSnapshot, campaigns: BoolArray, capped: npt.NDArray[np.int64] | None) -> None:
        self.catalog = catalog
        self.campaigns = campaigns
        """Per campaign: may it serve (rules, budget, schedule, targeting, exclusions)."""
        self.capped = capped
        """Indices of the ads whose frequency cap the user reached (None: none)."""

    def __getitem__(self, ads: npt.NDArray[np.int64]) -> BoolArray:
        c = self.catalog
        ok = c.ad_active[ads] & self.campaigns[c.ad_campaign_clipped[ads]]
        if self.capped is not None and len(self.capped):
            ok &= ~np.isin(ads, self.capped)
        return ok

    @functools.cached_property
    def mask(self) -> BoolArray:
        """The eligible ads as a mask over the catalogue."""
        c = self.catalog
        ok = c.ad_active & self.campaigns[c.ad_campaign_clipped]
        if self.capped is not None:
            ok[self.capped] = False
        return ok

    def count(self) -> int:
        """How many ads are eligible (from per-campaign counts: no pass over the catalogue)."""
        c = self.catalog
        n = int(c.active_ads_per_campaign[self.campaigns].sum())
        if self.capped is not None and len(self.capped):
            n -= int((c.ad_active[self.capped] & self.campaigns[c.ad_campaign_clipped[self.capped]]).sum())
        return n
