"""Logged history of a simulated market: requests, impressions, clicks and conversions, generated in chunks.

Each request comes from one user at one time and fills ``config.slots`` positions with distinct ads. The
history is produced chunk by chunk (``config.chunk_size`` impressions) in time order, so memory stays bounded
whatever the number of impressions, and every chunk is reproducible from ``(seed, chunk number)``.

Logging policy
--------------
For each slot the policy draws an ad from a proposal ``q(a | u)``:

* with probability ``explore``, uniformly among the ads of campaigns still serving;
* otherwise it picks a category — from the user's latent interests with probability ``interest_share`` when
  the user consents to behavioural targeting, else from the categories' popularity mass — and then an ad of
  that category in proportion to its (long-tailed) popularity.

A draw is rejected and redrawn while the ad's campaign does not target the user (age, gender, device, city
tier, region, declared interest with consent) or is outside its schedule at the request time, or while the ad
already fills another slot of the request. After a few rounds the leftovers are filled uniformly from the
*evergreen* campaigns (open targeting, no end, no total budget), so targeting and schedules are always
honoured. (The market never generates hour, day-of-week or excluded-interest rules, and user time zones are
not modelled.) Campaigns whose total budget is spent stop serving from the next chunk on (spend can overshoot by
up to one chunk); daily budgets are not enforced.

The ``propensity`` written on impressions is ``q(a | u)`` of a single slot draw. It ignores targeting
rejections and de-duplication, so it is exact only for users every ad may reach; use it for off-policy
estimates with that caveat.

Times follow a diurnal curve (peak at 20:00 UTC, trough at 08:00, weekends 15 % busier). A click comes
seconds after its impression, a conversion minutes to hours after its click (so a few conversions fall just
after the window). Costs follow the pricing model:
CPM ``bid / 1000`` on each impression, CPC ``bid`` on each click, CPA ``bid`` on each conversion.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from adrec.data.records import Delivery, Feedback
from adrec.data.schema import EventBatch, EventType
from adrec.simulate.config import SimulationConfig
from adrec.simulate.market import BASKET_MEAN, CPA, CPC, CPM, Market
from adrec.simulate.vocab import PRICING_MODELS

__all__ = ["ImpressionLog", "LoggingPolicy", "hourly_intensity", "request_times", "simulate_history"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_REJECTION_ROUNDS = 8
_FALLBACK_ROUNDS = 32
_CLICK_DELAY_S = 15.0
_CONVERSION_DELAY_MEDIAN_S = 900.0


class LoggingPolicy:
    """The proposal ``q(a | u)`` of the logging policy over the ads of campaigns still serving.

    Parameters
    ----------
    market
        The market whose ads are proposed.
    serving : (C,) bool, optional
        Campaigns that may still serve (default: all).
    """

    def __init__(self, market: Market, serving: BoolArray | None = None) -> None:
        cfg = market.config
        self.market = market
        self.explore = cfg.explore
        self.interest_share = cfg.interest_share
        k = market.n_categories
        if serving is None:
            serving = np.ones(market.n_campaigns, dtype=bool)
        ad_ok = serving[market.ad_campaign]
        self.active_ads: IntArray = np.flatnonzero(ad_ok).astype(np.int64)
        if len(self.active_ads) == 0:
            raise ValueError("no campaign is serving")
        pop = np.where(ad_ok, market.ad_popularity, 0.0)
        category = market.ad_category.astype(np.int64)
        # Ads sorted by category with one running sum of popularity: an ad is the first position whose running
        # sum exceeds a target drawn inside its category's span, so ads with zero weight are never drawn.
        self._order: IntArray = np.argsort(category, kind="stable").astype(np.int64)
        self._cum: FloatArray = np.cumsum(pop[self._order])
        bounds = np.concatenate([[0], np.cumsum(np.bincount(category, minlength=k))]).astype(np.int64)
        cum0 = np.concatenate([[0.0], self._cum])
        self._cat_before: FloatArray = cum0[bounds[:-1]]
        self.category_mass: FloatArray = cum0[bounds[1:]] - self._cat_before
        self._cat_cum: FloatArray = np.cumsum(self.category_mass)
        self.category_share: FloatArray = self.category_mass / self._cat_cum[-1]
        self._has_mass: BoolArray = self.category_mass > 0
        self._pop = pop
        # Interest mass of each user on categories that have serving ads; 0 means "use popularity instead".
        self._interest_total: npt.NDArray[np.float32] = market.user_interest @ self._has_mass.astype(np.float32)

    def _interest_weight(self, user_idx: IntArray) -> tuple[FloatArray, npt.NDArray[np.float32]]:
        total = self._interest_total[user_idx]
        lam: FloatArray = np.where(self.market.user_consent[user_idx] & (total > 0), self.interest_share, 0.0)
        return lam, total

    def propose(self, rng: np.random.Generator, user_idx: IntArray) -> IntArray:
        """One ad per entry of ``user_idx``, drawn from ``q(a | u)``.

        Parameters
        ----------
        rng
            The random stream to draw from.
        user_idx : (m,) int

        Returns
        -------
        (m,) int64 ad indices
        """
        m = len(user_idx)
        explore = rng.random(m) < self.explore
        u_mode, u_cat, u_ad = rng.random(m), rng.random(m), rng.random(m)
        uniform = self.active_ads[rng.integers(len(self.active_ads), size=m)]
        lam, _ = self._interest_weight(user_idx)
        # Category from the popularity mass or, for the interest-led draws, from the user's interests; both by
        # inverse CDF with "first running sum above the target", which never picks a category without ads.
        category = np.searchsorted(self._cat_cum, u_cat * self._cat_cum[-1], side="right")
        led = np.flatnonzero(u_mode < lam)
        if len(led):
            cum = np.cumsum(self.market.user_interest[user_idx[led]] * self._has_mass, axis=1)
            target = u_cat[led] * cum[:, -1]
            category[led] = (cum <= target[:, None]).sum(axis=1)
        target_ad = self._cat_before[category] + u_ad * self.category_mass[category]
        ads = self._order[np.searchsorted(self._cum, target_ad, side="right")]
        out: IntArray = np.where(explore, uniform, ads).astype(np.int64)
        return out

    def propensity(self, user_idx: IntArray, ad_idx: IntArray) -> FloatArray:
        """``q(a | u)`` of one slot draw for aligned ``(m,)`` users and ads.

        NaN where the proposal cannot draw the ad at all (only evergreen fallback fills can be such ads).
        """
        lam, total = self._interest_weight(user_idx)
        c = self.market.ad_category[ad_idx].astype(np.int64)
        theta = self.market.user_interest[user_idx, c] * self._has_mass[c]
        interest_share = theta / np.where(total > 0, total, 1.0)
        cat_prob = lam * interest_share + (1 - lam) * self.category_share[c]
        within = self._pop[ad_idx] / np.where(self.category_mass[c] > 0, self.category_mass[c], 1.0)
        serving = self._pop[ad_idx] > 0
        q = self.explore * serving / len(self.active_ads) + (1 - self.explore) * cat_prob * within
        # NaN means "unknown": better than a made-up positive number for off-policy estimates.
        out: FloatArray = np.where(q > 0, np.minimum(q, 1.0), np.nan)
        return out


def hourly_intensity(start_ts: float, hours: int) -> FloatArray:
    """Relative request rate of each of ``hours`` hours from ``start_ts``: a diurnal curve peaking at 20:00 UTC
    (trough at 08:00, 1.7 / 0.3 of the mean), weekends 15 % busier."""
    t = start_ts + np.arange(hours, dtype=np.float64) * 3600.0
    hour_of_day = (t % 86_400.0) / 3600.0 + 0.5
    weekday = (np.floor(t / 86_400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (3)
    out: FloatArray = (1.0 + 0.7 * np.cos(2 * np.pi * (hour_of_day - 20.0) / 24.0)) * np.where(weekday >= 5, 1.15, 1.0)
    return out


def request_times(config: SimulationConfig, request_idx: IntArray, rng: np.random.Generator) -> FloatArray:
    """Timestamps of requests ``request_idx`` (out of ``config.n_requests``) spread over the window, in order.

    Request ``r`` falls at the ``(r + U) / n_requests`` quantile of a diurnal intensity (hourly, peak at
    20:00 UTC, weekends busier), so timestamps increase with ``r`` and any slice can be generated on its own.

    Returns
    -------
    (len(request_idx),) float64 seconds since the epoch
    """
    intensity = hourly_intensity(config.start_ts, config.days * 24)
    cdf = np.concatenate([[0.0], np.cumsum(intensity)])
    cdf /= cdf[-1]
    q = (request_idx + rng.random(len(request_idx))) / max(config.n_requests, 1)
    out: FloatArray = config.start_ts + np.interp(q, cdf, np.arange(len(cdf)) * 3600.0)
    return out


@dataclass(frozen=True)
class ImpressionLog:
    """One chunk of logged impressions with their clicks and conversions, as aligned ``(n,)`` arrays.

    Attributes
    ----------
    seed
        The simulation seed (part of every event id).
    impression_idx : (n,) int64
        Global impression number; event ids are ``sim<seed>-<impression_idx:010d>-i`` (impression), ``-c``
        (its click) and ``-v`` (its conversion).
    request_idx : (n,) int64
        Request the impression belongs to (``request_id`` ``sim<seed>-r<request_idx:010d>``).
    user_idx, ad_idx : (n,) int64
    position : (n,) int8
        1-based slot.
    ts : (n,) float64
        Impression time.
    propensity : (n,) float64
        The logging policy's single-slot probability ``q(a | u)`` (see the module docstring).
    p_click : (n,) float64
        ``Market.true_ctr`` of the impression.
    clicked : (n,) bool
    click_ts : (n,) float64
        NaN without a click.
    p_conversion : (n,) float64
        ``Market.true_cvr`` (probability a click converts).
    converted : (n,) bool
        Only ever true where ``clicked``.
    conversion_ts, value : (n,) float64
        Time and order value of the conversion, NaN without one.
    impression_cost, click_cost, conversion_cost : (n,) float64
        What the advertiser pays for the impression, its click and its conversion.
    """

    seed: int
    placement: str
    impression_idx: IntArray
    request_idx: IntArray
    user_idx: IntArray
    ad_idx: IntArray
    position: npt.NDArray[np.int8]
    ts: FloatArray
    propensity: FloatArray
    p_click: FloatArray
    clicked: BoolArray
    click_ts: FloatArray
    p_conversion: FloatArray
    converted: BoolArray
    conversion_ts: FloatArray
    value: FloatArray
    impression_cost: FloatArray
    click_cost: FloatArray
    conversion_cost: FloatArray

    def __len__(self) -> int:
        return len(self.impression_idx)

    @property
    def cost(self) -> FloatArray:
        """(n,) total cost attributable to each impression."""
        out: FloatArray = self.impression_cost + self.click_cost + self.conversion_cost
        return out

    def to_event_batch(self, market: Market) -> EventBatch:
        """The impressions, then clicks, then conversions of this chunk as one :class:`EventBatch`."""
        prefix = f"sim{self.seed}-"
        number = np.strings.add(prefix, np.strings.zfill(self.impression_idx.astype(str), 10))
        request = np.strings.add(f"{prefix}r", np.strings.zfill(self.request_idx.astype(str), 10))
        c, v = self.clicked, self.converted
        n_c, n_v = int(c.sum()), int(v.sum())
        n_total = len(self) + n_c + n_v
        event_type = np.repeat(
            np.array([EventType.IMPRESSION, EventType.CLICK, EventType.CONVERSION], dtype=np.int8),
            [len(self), n_c, n_v],
        )
        event_id = np.concatenate(
            [np.strings.add(number, "-i"), np.strings.add(number[c], "-c"), np.strings.add(number[v], "-v")]
        ).astype(object)
        users = market.user_ids(self.user_idx)
        ads = market.ad_ids(self.ad_idx)
        nan_c, nan_v = np.full(n_c, np.nan), np.full(n_v, np.nan)
        return EventBatch(
            event_id=event_id,
            type=event_type,
            user_id=np.concatenate([users, users[c], users[v]]),
            ad_id=np.concatenate([ads, ads[c], ads[v]]),
            ts=np.concatenate([self.ts, self.click_ts[c], self.conversion_ts[v]]),
            placement=np.full(n_total, self.placement, dtype=object),
            cost=np.concatenate([self.impression_cost, self.click_cost[c], self.conversion_cost[v]]),
            request_id=np.concatenate([request, request[c], request[v]]).astype(object),
            value=np.concatenate([np.full(len(self), np.nan), nan_c, self.value[v]]),
            propensity=np.concatenate([self.propensity, nan_c, nan_v]),
        )

    def to_feedback(self, market: Market) -> list[Feedback]:
        """The chunk as served ads and their events, for the store's one event writer
        (:meth:`~adrec.store.base.Ledger.apply_feedback`), which charges them within the campaigns' budgets.

        Each impression is a :class:`Delivery` (``iid`` ``sim<seed>-<impression_idx:010d>``, priced per billable
        event of its campaign's pricing model: ``bid / 1000`` per impression for CPM, ``bid`` per click for CPC
        and per conversion for CPA; its ``propensity`` is the logging policy's, its ``position`` the slot),
        followed by its click and conversion; event ids are those of :meth:`to_event_batch`.
        """
        prefix = f"sim{self.seed}-"
        iids = np.strings.add(prefix, np.strings.zfill(self.impression_idx.astype(str), 10)).tolist()
        campaign = market.ad_campaign[self.ad_idx]
        campaign_ids = market.campaign_ids()[campaign].tolist()
        advertiser_ids = market.advertiser_ids()[market.campaign_advertiser[campaign]].tolist()
        pricing_codes = market.campaign_pricing[campaign]
        names = [m.value for m in PRICING_MODELS]
        pricing = [names[code] for code in pricing_codes.tolist()]
        bid = market.campaign_bid[campaign]
        price = np.where(pricing_codes == CPM, bid / 1000.0, bid).tolist()
        users, ads = market.user_ids(self.user_idx).tolist(), market.ad_ids(self.ad_idx).tolist()
        ts, click_ts, conversion_ts = self.ts.tolist(), self.click_ts.tolist(), self.conversion_ts.tolist()
        clicked, converted, value = self.clicked.tolist(), self.converted.tolist(), self.value.tolist()
        propensity, positions = self.propensity.tolist(), self.position.tolist()
        out: list[Feedback] = []
        for i, iid in enumerate(iids):
            d = Delivery(
                iid,
                users[i],
                ads[i],
                campaign_ids[i],
                advertiser_ids[i],
                pricing[i],
                price[i],
                ts[i],
                self.placement,
                propensity[i],
                positions[i],
            )
            out.append(Feedback(f"{iid}-i", EventType.IMPRESSION, ts[i], d))
            if clicked[i]:
                out.append(Feedback(f"{iid}-c", EventType.CLICK, click_ts[i], d))
                if converted[i]:
                    out.append(Feedback(f"{iid}-v", EventType.CONVERSION, conversion_ts[i], d, value[i]))
        return out


def _later_duplicates(slate: IntArray) -> BoolArray:
    """(R, S) mask of entries equal to an entry earlier in the same row."""
    dup = np.zeros(slate.shape, dtype=bool)
    for k in range(1, slate.shape[1]):
        dup[:, k] = (slate[:, k : k + 1] == slate[:, :k]).any(axis=1)
    return dup


def _fill_slates(
    market: Market,
    policy: LoggingPolicy,
    rng: np.random.Generator,
    users: IntArray,
    ts: FloatArray,
    evergreen_ads: IntArray,
) -> IntArray:
    """(R, S) ads for R requests of ``users`` at ``ts``: eligible, distinct within a row (see module doc)."""
    slots = market.config.slots
    who = np.repeat(users, slots)
    when = np.repeat(ts, slots)
    slate = policy.propose(rng, who)
    bad = ~market.eligible(who, slate, when)
    bad |= _later_duplicates(slate.reshape(-1, slots)).ravel()
    for _ in range(_REJECTION_ROUNDS):
        redo = np.flatnonzero(bad)
        if len(redo) == 0:
            return slate.reshape(-1, slots)
        slate[redo] = policy.propose(rng, who[redo])
        bad[:] = False
        bad[redo] = ~market.eligible(who[redo], slate[redo], when[redo])
        bad |= _later_duplicates(slate.reshape(-1, slots)).ravel()
    for _ in range(_FALLBACK_ROUNDS):
        redo = np.flatnonzero(bad)
        if len(redo) == 0:
            break
        slate[redo] = evergreen_ads[rng.integers(len(evergreen_ads), size=len(redo))]
        bad = _later_duplicates(slate.reshape(-1, slots)).ravel()
    return slate.reshape(-1, slots)


def _evergreen_ads(market: Market) -> IntArray:
    c = market.ad_campaign
    open_targeting = (
        (market.campaign_age_min[c] == 0)
        & (market.campaign_age_max[c] >= 120)
        & (market.campaign_genders[c] == 0)
        & (market.campaign_devices[c] == 0)
        & (market.campaign_tiers[c] == 0)
        & (market.campaign_regions[c] == 0)
        & (market.campaign_interest[c] < 0)
    )
    always = (market.campaign_start[c] <= market.config.start_ts) & np.isinf(market.campaign_end[c])
    unlimited = np.isnan(market.campaign_total_budget[c])
    out: IntArray = np.flatnonzero(open_targeting & always & unlimited).astype(np.int64)
    return out


def simulate_history(market: Market) -> Iterator[ImpressionLog]:
    """Generate the logged history of ``market`` in chunks of about ``config.chunk_size`` impressions.

    Chunks come in time order and together hold exactly ``config.n_impressions`` impressions. The same market
    gives the same chunks.

    Yields
    ------
    ImpressionLog
    """
    cfg = market.config
    slots = cfg.slots
    n_requests = cfg.n_requests
    per_chunk = max(1, cfg.chunk_size // slots)
    evergreen = _evergreen_ads(market)
    if len(evergreen) == 0:  # pragma: no cover - Market.generate always makes evergreen campaigns
        raise ValueError("the market has no evergreen campaign to fall back on")
    activity_cdf = np.cumsum(market.user_activity)
    activity_cdf /= activity_cdf[-1]
    spend = np.zeros(market.n_campaigns)
    total_budget = np.where(np.isnan(market.campaign_total_budget), np.inf, market.campaign_total_budget)
    pricing = market.campaign_pricing[market.ad_campaign]
    bid = market.campaign_bid[market.ad_campaign]

    for chunk, r0 in enumerate(range(0, n_requests, per_chunk)):
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, chunk)))
        r1 = min(r0 + per_chunk, n_requests)
        request = np.arange(r0, r1, dtype=np.int64)
        ts = request_times(cfg, request, rng)
        users = np.minimum(np.searchsorted(activity_cdf, rng.random(len(request)), side="right"), market.n_users - 1)
        policy = LoggingPolicy(market, serving=spend < total_budget)
        slate = _fill_slates(market, policy, rng, users.astype(np.int64), ts, evergreen)

        n = min(r1 * slots, cfg.n_impressions) - r0 * slots
        impression = np.arange(r0 * slots, r0 * slots + n, dtype=np.int64)
        u = np.repeat(users, slots)[:n].astype(np.int64)
        a = slate.ravel()[:n]
        position = np.tile(np.arange(1, slots + 1, dtype=np.int8), len(request))[:n]
        t = np.repeat(ts, slots)[:n]

        p_click = market.true_ctr(u, a, position)
        clicked = rng.random(n) < p_click
        click_ts = np.where(clicked, t + 1.0 + rng.exponential(_CLICK_DELAY_S, n), np.nan)
        p_conv = market.true_cvr(u, a)
        converted = clicked & (rng.random(n) < p_conv)
        delay = rng.lognormal(math.log(_CONVERSION_DELAY_MEDIAN_S), 1.2, n)
        conversion_ts = np.where(converted, click_ts + delay, np.nan)
        basket = 1.0 + rng.poisson(BASKET_MEAN, n)
        value = np.where(converted, np.round(market.conversion_value(a) * basket, 2), np.nan)
        p, b = pricing[a], bid[a]
        impression_cost = np.where(p == CPM, b / 1000.0, 0.0)
        click_cost = np.where((p == CPC) & clicked, b, 0.0)
        conversion_cost = np.where((p == CPA) & converted, b, 0.0)

        log = ImpressionLog(
            seed=cfg.seed,
            placement=cfg.placement,
            impression_idx=impression,
            request_idx=np.repeat(request, slots)[:n],
            user_idx=u,
            ad_idx=a,
            position=position,
            ts=t,
            propensity=policy.propensity(u, a),
            p_click=p_click,
            clicked=clicked,
            click_ts=click_ts,
            p_conversion=p_conv,
            converted=converted,
            conversion_ts=conversion_ts,
            value=value,
            impression_cost=impression_cost,
            click_cost=click_cost,
            conversion_cost=conversion_cost,
        )
        spend += np.bincount(market.ad_campaign[a], weights=log.cost, minlength=market.n_campaigns)
        yield log
