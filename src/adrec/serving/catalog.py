"""The ad library as arrays, for vectorised eligibility: which ads may be shown to this user, here, now.

A :class:`CatalogSnapshot` is built from the store (campaigns, ads) and is immutable; the server swaps in a new one
when the library changes. Eligibility is evaluated per campaign (status, schedule, budget and pacing, targeting,
advertiser exclusions) and applied to ads (ad status, frequency caps) only where asked: for the candidates.
:meth:`CatalogSnapshot.explain` re-checks the rules of one ad in words, for the response's explanation.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from adrec.data.schema import Ad, Campaign, CampaignStatus, Device, Gender, Pacing, User, to_epoch

__all__ = ["CatalogSnapshot", "Eligibility", "RequestContext", "pacing_allowance"]

MAX_AGE = 120  # the bounds of User.age and User.city_tier
MAX_CITY_TIER = 6

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
        capped = self.c_capped = (self.c_cap_ad > 0) | (self.c_cap_campaign > 0)
        self._rule_cache: dict[int, list[tuple[str, str, frozenset[str]]]] = {}
        self.active_ads_per_campaign = np.bincount(self.ad_campaign[self.ad_active], minlength=n)
        self.max_window = float(self.c_window[capped].max()) if capped.any() else 0.0

    @classmethod
    def build(
        cls, campaigns: Iterable[Campaign], ads: Iterable[Ad], quarantined: Iterable[tuple[str, str, str]] = ()
    ) -> CatalogSnapshot:
        return cls(list(campaigns), list(ads), list(quarantined))

    # -- eligibility ----------------------------------------------------------------------------------------
    @functools.cached_property
    def _tables(self) -> _TargetingTables:
        return _TargetingTables.build(self)

    def timed_campaigns(self, now: float, spent: npt.NDArray[np.float64]) -> BoolArray:
        """The campaigns whose rules do not depend on the user: active, in schedule, budget left (paced), and
        open at this hour and day of the week.

        ``spent`` is the per-campaign ``(n, 2)`` array of (today, total) spend (see :meth:`spend_array`). The
        pipeline evaluates this once per budget refresh and reuses it for the requests in between.
        """
        utc = datetime.fromtimestamp(now, UTC)
        ok = self.c_active & (self.c_start <= now) & (now < self.c_end)
        today, total = spent[:, 0], spent[:, 1]
        ok &= (today < self.c_daily) & (total < self.c_total)
        if self.c_even.any():
            ok &= ~self.c_even | (today < pacing_allowance(self.c_daily, now))
        ok &= (self.c_hours == 0) | ((self.c_hours & (1 << utc.hour)) != 0)
        ok &= (self.c_days == 0) | ((self.c_days & (1 << utc.weekday())) != 0)
        return ok

    def eligible_campaigns(
        self, user: User | None, interests: Iterable[str], ctx: RequestContext, timed: BoolArray
    ) -> BoolArray:
        """``timed`` (see :meth:`timed_campaigns`) narrowed by the user's targeting and the request's exclusions."""
        tb = self._tables
        age = user.age if user is not None else None
        gender = user.gender if user is not None else Gender.UNKNOWN
        device = ctx.device or (user.device if user is not None else Device.UNKNOWN)
        tier = user.city_tier if user is not None else None
        region = ctx.region or (user.region if user is not None else None)
        ok: BoolArray = timed & tb.age[age if age is not None else -1] & tb.gender[gender] & tb.device[device]
        ok &= tb.tier[tier or 0]
        ok &= tb.region.get(region, self.region_open) if region is not None else self.region_open
        include_ok: BoolArray | None = None
        for tag in set(interests):
            if tag in self.include_has:
                if include_ok is None:
                    include_ok = self.include_open | self.include_has[tag]
                else:
                    include_ok |= self.include_has[tag]
            if tag in self.exclude_has:
                ok &= ~self.exclude_has[tag]
        ok &= self.include_open if include_ok is None else include_ok
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
        """:meth:`explain` for many ads of one request: the request's side is rendered once, each campaign's
        rules once per snapshot."""
        tags = set(interests)
        device = ctx.device or (user.device if user else Device.UNKNOWN)
        facts = {
            "age": f"user is {user.age if user else '?'}",
            "gender": f"user is {user.gender.value if user else '?'}",
            "device": device.value,
            "region": f"{ctx.region or (user.region if user else None)}",
            "tier": f"{user.city_tier if user else None}",
            "hours": f"now {ctx.hour} UTC",
            "days": f"today {ctx.day_of_week}",
        }

        def explain(ad: int) -> list[str]:
            out = []
            for kind, text, include in self._rules(int(self.ad_campaign[ad])):
                if kind == "include":
                    out.append(f"{text}: matched {sorted(tags & include)}")
                elif kind:
                    out.append(f"{text}: {facts[kind]}")
                else:
                    out.append(text)
            return out

        return explain

    def _rules(self, campaign: int) -> list[tuple[str, str, frozenset[str]]]:
        """The campaign's rules as ``(kind, text, interests)``: ``kind`` names the request fact that completes the
        text (empty: the text is complete)."""
        cached = self._rule_cache.get(campaign)
        if cached is not None:
            return cached
        c = self.campaigns[campaign]
        t = c.targeting
        none: frozenset[str] = frozenset()
        out: list[tuple[str, str, frozenset[str]]] = []
        if t.age_min is not None or t.age_max is not None:
            out.append(("age", f"age {t.age_min or 0}-{t.age_max or 'any'}", none))
        if t.genders:
            out.append(("gender", f"gender in {sorted(g.value for g in t.genders)}", none))
        if t.devices:
            out.append(("device", f"device in {sorted(d.value for d in t.devices)}", none))
        if t.regions:
            out.append(("region", f"region in {sorted(t.regions)}", none))
        if t.city_tiers:
            out.append(("tier", f"city tier in {sorted(t.city_tiers)}", none))
        if t.interests_include:
            out.append(("include", f"interests include {sorted(t.interests_include)}", t.interests_include))
        if t.interests_exclude:
            out.append(("", f"interests exclude {sorted(t.interests_exclude)}: none matched", none))
        if t.hours:
            out.append(("hours", f"hours {sorted(t.hours)}", none))
        if t.days_of_week:
            out.append(("days", f"days {sorted(t.days_of_week)}", none))
        if not out:
            out.append(("", "open targeting (no rules)", none))
        if c.daily_budget is not None:
            out.append(("", f"daily budget {c.daily_budget:g} ({c.pacing.value} pacing)", none))
        if c.frequency.per_ad or c.frequency.per_campaign:
            text = (
                f"frequency cap per ad {c.frequency.per_ad}, per campaign {c.frequency.per_campaign} "
                f"in {c.frequency.window_s:g} s: not reached"
            )
            out.append(("", text, none))
        self._rule_cache[campaign] = out
        return out


@dataclass(frozen=True)
class _TargetingTables:
    """Per value of each user attribute, which campaigns its targeting admits (one row per value), so that a
    request's targeting costs one gather and one AND per attribute."""

    age: BoolArray
    """Row ``a`` for age ``a`` (0-120); the last row (index -1) for an unknown age."""
    gender: dict[Gender, BoolArray]
    device: dict[Device, BoolArray]
    tier: BoolArray
    """Row ``t`` for city tier ``t`` (1-6); row 0 for an unknown tier."""
    region: dict[str, BoolArray]
    """Known regions only; any other region meets the campaigns without a region rule (``region_open``)."""

    @classmethod
    def build(cls, c: CatalogSnapshot) -> _TargetingTables:
        ages = np.arange(MAX_AGE + 1)[:, None]
        age = np.vstack([c.c_age_any | ((c.c_age_min <= ages) & (ages <= c.c_age_max)), c.c_age_any[None, :]])
        tiers = np.arange(MAX_CITY_TIER + 1)[:, None]
        tier = (c.c_tiers == 0) | ((c.c_tiers & np.where(tiers > 0, 1 << tiers, 0)) != 0)
        return cls(
            age=age,
            gender={g: (c.c_genders == 0) | ((c.c_genders & bit) != 0) for g, bit in _GENDERS.items()},
            device={d: (c.c_devices == 0) | ((c.c_devices & bit) != 0) for d, bit in _DEVICES.items()},
            tier=tier,
            region={r: c.region_open | has for r, has in c.region_has.items()},
        )


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
