"""The ad library as arrays, for vectorised eligibility: which ads may be shown to this user, here, now.

A :class:`CatalogSnapshot` is built from the store (campaigns, ads) and is immutable; the server swaps in a new one
when the library changes. Eligibility is evaluated per campaign (status, schedule, budget and pacing, targeting,
advertiser exclusions) and broadcast to its ads (ad status, frequency caps). :meth:`CatalogSnapshot.explain`
re-checks the rules of one ad in words, for the response's explanation.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from adrec.data.schema import Ad, Campaign, CampaignStatus, Device, Gender, Pacing, User, to_epoch

__all__ = ["CatalogSnapshot", "RequestContext", "pacing_allowance"]

BoolArray = npt.NDArray[np.bool_]

_GENDERS = {g: 1 << i for i, g in enumerate(Gender)}
_DEVICES = {d: 1 << i for i, d in enumerate(Device)}


@dataclass(frozen=True)
class RequestContext:
    """Where and when an ad is requested. ``device``/``region`` override the user's declared ones."""

    now: float
    placement: str | None = None
    device: Device | None = None
    region: str | None = None
    exclude_advertisers: frozenset[str] = frozenset()

    @functools.cached_property
    def _utc(self) -> datetime:
        # Read by the targeting rules and by every explanation: converted once per request.
        return datetime.fromtimestamp(self.now, UTC)

    @property
    def hour(self) -> int:
        return self._utc.hour

    @property
    def day_of_week(self) -> int:
        return self._utc.weekday()


def pacing_allowance(daily_budget: npt.NDArray[np.float64], now: float, slack: float = 0.02) -> npt.NDArray[np.float64]:
    """Even pacing: the spend allowed by ``now`` is the budget times the share of the UTC day gone, plus a slack."""
    return daily_budget * min(1.0, (now % 86_400.0) / 86_400.0 + slack)


def _bits(values: Iterable[int]) -> int:
    out = 0
    for v in values:
        out |= 1 << int(v)
    return out


def _index(tags: Sequence[frozenset[str]], n: int) -> tuple[dict[str, BoolArray], BoolArray]:
    """Per tag, which campaigns list it; and which campaigns list none (no restriction)."""
    by_tag: dict[str, BoolArray] = defaultdict(lambda: np.zeros(n, dtype=bool))
    for i, s in enumerate(tags):
        for tag in s:
            by_tag[tag][i] = True
    return dict(by_tag), np.array([not s for s in tags], dtype=bool)


@dataclass
class CatalogSnapshot:
    """Campaigns and ads as parallel arrays (built by :meth:`build`)."""

    campaigns: list[Campaign]
    ads: list[Ad]

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
        self.c_pricing = np.array([c.pricing_model.value for c in cs], dtype=object)
        tg = [c.targeting for c in cs]
        self.c_age_min = np.array([x.age_min if x.age_min is not None else -1 for x in tg], dtype=np.int64)
        self.c_age_max = np.array([x.age_max if x.age_max is not None else 10_000 for x in tg], dtype=np.int64)
        self.c_age_any = np.array([x.age_min is None and x.age_max is None for x in tg], dtype=bool)
        self.c_genders = np.array([sum(_GENDERS[g] for g in x.genders) for x in tg], dtype=np.int64)
        self.c_devices = np.array([sum(_DEVICES[d] for d in x.devices) for x in tg], dtype=np.int64)
        self.c_tiers = np.array([_bits(x.city_tiers) for x in tg], dtype=np.int64)
        self.c_hours = np.array([_bits(x.hours) for x in tg], dtype=np.int64)
        self.c_days = np.array([_bits(x.days_of_week) for x in tg], dtype=np.int64)
        self.region_has, self.region_open = _index([x.regions for x in tg], n)
        self.include_has, self.include_open = _index([x.interests_include for x in tg], n)
        self.exclude_has, _ = _index([x.interests_exclude for x in tg], n)
        self.c_cap_ad = np.array([c.frequency.per_ad or 0 for c in cs], dtype=np.int64)
        self.c_cap_campaign = np.array([c.frequency.per_campaign or 0 for c in cs], dtype=np.int64)
        self.c_window = np.array([c.frequency.window_s for c in cs], dtype=np.float64)
        capped = (self.c_cap_ad > 0) | (self.c_cap_campaign > 0)
        self.max_window = float(self.c_window[capped].max()) if capped.any() else 0.0

    @classmethod
    def build(cls, campaigns: Iterable[Campaign], ads: Iterable[Ad]) -> CatalogSnapshot:
        return cls(list(campaigns), list(ads))

    # -- eligibility ----------------------------------------------------------------------------------------
    def eligible_campaigns(
        self,
        user: User | None,
        interests: Iterable[str],
        ctx: RequestContext,
        spent: npt.NDArray[np.float64],
    ) -> BoolArray:
        """Which campaigns may serve: active, in schedule, budget left (paced), targeting matched, not excluded.

        ``spent`` is the per-campaign ``(n, 2)`` array of (today, total) spend (see :meth:`spend_array`).
        """
        n = self.n_campaigns
        now = ctx.now
        ok = self.c_active & (self.c_start <= now) & (now < self.c_end)
        today, total = spent[:, 0], spent[:, 1]
        ok &= (today < self.c_daily) & (total < self.c_total)
        if self.c_even.any():
            ok &= ~self.c_even | (today < pacing_allowance(self.c_daily, now))
        # targeting
        age = user.age if user is not None else None
        ok &= self.c_age_any | ((age is not None) & (self.c_age_min <= (age or 0)) & ((age or 0) <= self.c_age_max))
        gender = _GENDERS[user.gender] if user is not None else _GENDERS[Gender.UNKNOWN]
        ok &= (self.c_genders == 0) | ((self.c_genders & gender) != 0)
        device = ctx.device or (user.device if user is not None else Device.UNKNOWN)
        ok &= (self.c_devices == 0) | ((self.c_devices & _DEVICES[device]) != 0)
        tier = user.city_tier if user is not None else None
        ok &= (self.c_tiers == 0) | ((self.c_tiers & (1 << tier if tier else 0)) != 0)
        ok &= (self.c_hours == 0) | ((self.c_hours & (1 << ctx.hour)) != 0)
        ok &= (self.c_days == 0) | ((self.c_days & (1 << ctx.day_of_week)) != 0)
        region = ctx.region or (user.region if user is not None else None)
        region_ok = self.region_open.copy()
        if region is not None and region in self.region_has:
            region_ok |= self.region_has[region]
        ok &= region_ok
        tags = set(interests)
        include_ok = self.include_open.copy()
        for tag in tags:
            if tag in self.include_has:
                include_ok |= self.include_has[tag]
            if tag in self.exclude_has:
                ok &= ~self.exclude_has[tag]
        ok &= include_ok
        if ctx.exclude_advertisers:
            ok &= ~np.isin(self.c_advertiser, list(ctx.exclude_advertisers))
        assert ok.shape == (n,)
        return ok

    def spend_array(self, spend: Mapping[str, tuple[float, float]]) -> npt.NDArray[np.float64]:
        out = np.zeros((self.n_campaigns, 2), dtype=np.float64)
        for cid, (today, total) in spend.items():
            i = self.campaign_index.get(cid)
            if i is not None:
                out[i] = (today, total)
        return out

    def capped_ads(self, deliveries: Sequence[tuple[str, str, float]], now: float) -> BoolArray:
        """Ads the user may not see again now: their frequency caps are reached within the campaign's window."""
        blocked = np.zeros(self.n_ads, dtype=bool)
        if not deliveries or self.max_window == 0.0:
            return blocked
        per_ad: dict[int, int] = defaultdict(int)
        per_campaign: dict[int, int] = defaultdict(int)
        for cid, aid, ts in deliveries:
            c = self.campaign_index.get(cid)
            if c is None or now - ts > self.c_window[c]:
                continue
            per_campaign[c] += 1
            a = self.ad_index.get(aid)
            if a is not None:
                per_ad[a] += 1
        for a, count in per_ad.items():
            cap = self.c_cap_ad[self.ad_campaign[a]]
            if cap and count >= cap:
                blocked[a] = True
        full = [c for c, count in per_campaign.items() if self.c_cap_campaign[c] and count >= self.c_cap_campaign[c]]
        if full:
            blocked |= np.isin(self.ad_campaign, full)
        return blocked

    def eligible_ads(
        self,
        user: User | None,
        interests: Iterable[str],
        ctx: RequestContext,
        spent: npt.NDArray[np.float64],
        deliveries: Sequence[tuple[str, str, float]] = (),
    ) -> BoolArray:
        campaigns = self.eligible_campaigns(user, interests, ctx, spent)
        ok = self.ad_active & campaigns[self.ad_campaign_clipped]
        if deliveries:
            ok &= ~self.capped_ads(deliveries, ctx.now)
        return ok

    # -- explanation ----------------------------------------------------------------------------------------
    def explain(self, ad: int, user: User | None, interests: Iterable[str], ctx: RequestContext) -> list[str]:
        """The targeting rules the ad's campaign set and how the request met them, in words."""
        c = self.campaigns[int(self.ad_campaign[ad])]
        t = c.targeting
        out: list[str] = []
        if t.age_min is not None or t.age_max is not None:
            out.append(f"age {t.age_min or 0}-{t.age_max or 'any'}: user is {user.age if user else '?'}")
        if t.genders:
            out.append(f"gender in {sorted(g.value for g in t.genders)}: user is {user.gender.value if user else '?'}")
        if t.devices:
            device = ctx.device or (user.device if user else Device.UNKNOWN)
            out.append(f"device in {sorted(d.value for d in t.devices)}: {device.value}")
        if t.regions:
            out.append(f"region in {sorted(t.regions)}: {ctx.region or (user.region if user else None)}")
        if t.city_tiers:
            out.append(f"city tier in {sorted(t.city_tiers)}: {user.city_tier if user else None}")
        if t.interests_include:
            matched = sorted(set(interests) & t.interests_include)
            out.append(f"interests include {sorted(t.interests_include)}: matched {matched}")
        if t.interests_exclude:
            out.append(f"interests exclude {sorted(t.interests_exclude)}: none matched")
        if t.hours:
            out.append(f"hours {sorted(t.hours)}: now {ctx.hour} UTC")
        if t.days_of_week:
            out.append(f"days {sorted(t.days_of_week)}: today {ctx.day_of_week}")
        if not out:
            out.append("open targeting (no rules)")
        if c.daily_budget is not None:
            out.append(f"daily budget {c.daily_budget:g} ({c.pacing.value} pacing)")
        if c.frequency.per_ad or c.frequency.per_campaign:
            out.append(
                f"frequency cap per ad {c.frequency.per_ad}, per campaign {c.frequency.per_campaign} "
                f"in {c.frequency.window_s:g} s: not reached"
            )
        return out
