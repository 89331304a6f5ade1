"""Typed store records (:mod:`adrec.data.schema`) for the users, advertisers, campaigns and ads of a market.

Records are built lazily, so a million users stream into the store without all of them in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from adrec.data.schema import (
    AGE_BAND_EDGES,
    AGE_BAND_LABELS,
    Ad,
    Advertiser,
    Campaign,
    CampaignStatus,
    Objective,
    PricingModel,
    User,
    age_band,
)
from adrec.simulate.market import Market
from adrec.simulate.vocab import CITIES, DEVICES, GENDERS, PRICING_MODELS

__all__ = ["ad_records", "advertiser_records", "age_band", "campaign_records", "user_records"]

_OBJECTIVE = {
    PricingModel.CPC: Objective.TRAFFIC,
    PricingModel.CPM: Objective.AWARENESS,
    PricingModel.CPA: Objective.CONVERSIONS,
}


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _when(ts: float) -> datetime | None:
    return None if not np.isfinite(ts) else datetime.fromtimestamp(ts, UTC)


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def user_records(market: Market, batch_size: int = 10_000) -> Iterator[User]:
    """Every user of the market as a :class:`User`, built ``batch_size`` at a time.

    Declared ``interests`` are the categories of :attr:`Market.declared_interests`; demographics come from the
    market arrays. The latent interests and click propensities stay out of the records (they are the truth).
    """
    names = market.category_names
    ids = market.user_ids()
    interests: dict[int, tuple[str, ...]] = {}  # few distinct masks: build each tuple once
    for lo in range(0, market.n_users, batch_size):
        hi = min(lo + batch_size, market.n_users)
        bands = np.searchsorted(AGE_BAND_EDGES, market.user_age[lo:hi], side="right")
        cols = zip(
            ids[lo:hi].tolist(),
            market.user_age[lo:hi].tolist(),
            bands.tolist(),
            market.user_gender[lo:hi].tolist(),
            market.user_city[lo:hi].tolist(),
            market.user_device[lo:hi].tolist(),
            market.user_consent[lo:hi].tolist(),
            market.declared_interests[lo:hi].tolist(),
            strict=True,
        )
        for user_id, age, band, gender, city_idx, device, consent, declared in cols:
            city = CITIES[city_idx]
            if declared not in interests:
                interests[declared] = tuple(names[i] for i in _bits(declared))
            yield User(
                user_id=user_id,
                age=age,
                age_band=AGE_BAND_LABELS[band],
                gender=GENDERS[gender],
                region=city.region,
                city=city.name,
                city_tier=city.tier,
                device=DEVICES[device],
                language=city.language,
                interests=interests[declared],
                consent=consent,
            )


def advertiser_records(market: Market) -> Iterator[Advertiser]:
    """Every advertiser as an :class:`Advertiser` with a made-up ``.example.com`` domain."""
    for advertiser_id, name in zip(market.advertiser_ids().tolist(), market.advertiser_names, strict=True):
        yield Advertiser(advertiser_id=advertiser_id, name=name, domain=f"{_slug(name)}.example.com")


def campaign_status(market: Market, exhausted: npt.NDArray[np.bool_] | None = None) -> list[CampaignStatus]:
    """Status of every campaign at the end of the window: ended by schedule or spent budget, else active."""
    ended = market.campaign_end <= market.config.end_ts
    if exhausted is not None:
        ended = ended | exhausted
    return [CampaignStatus.ENDED if e else CampaignStatus.ACTIVE for e in ended.tolist()]


def campaign_records(
    market: Market, *, exhausted: npt.NDArray[np.bool_] | None = None, only: npt.ArrayLike | None = None
) -> Iterator[Campaign]:
    """Campaigns as :class:`Campaign` records, with targeting rules and status.

    Parameters
    ----------
    market
        The market.
    exhausted : (C,) bool, optional
        Campaigns whose total budget ran out (their status becomes ``ended``).
    only : int array, optional
        Campaign indices to build (default: all).
    """
    ids = market.campaign_ids()
    adv_ids = market.advertiser_ids()
    status = campaign_status(market, exhausted)
    names = market.category_names
    indices = range(market.n_campaigns) if only is None else np.asarray(only, dtype=np.int64).tolist()
    for c in indices:
        pricing = PRICING_MODELS[int(market.campaign_pricing[c])]
        advertiser = int(market.campaign_advertiser[c])
        yield Campaign(
            campaign_id=ids[c],
            advertiser_id=adv_ids[advertiser],
            name=f"{market.advertiser_names[advertiser]} {names[int(market.campaign_category[c])]} #{c}",
            objective=_OBJECTIVE[pricing],
            pricing_model=pricing,
            bid=float(market.campaign_bid[c]),
            daily_budget=_optional(float(market.campaign_daily_budget[c])),
            total_budget=_optional(float(market.campaign_total_budget[c])),
            start=_when(float(market.campaign_start[c])),
            end=_when(float(market.campaign_end[c])),
            status=status[c],
            targeting=market.targetings[c],
        )


def ad_records(
    market: Market, *, exhausted: npt.NDArray[np.bool_] | None = None, only: npt.ArrayLike | None = None
) -> Iterator[Ad]:
    """Ads as :class:`Ad` records with generated creative text; status follows the campaign's.

    Parameters
    ----------
    market
        The market.
    exhausted : (C,) bool, optional
        Campaigns whose total budget ran out.
    only : int array, optional
        Ad indices to build (default: all).
    """
    ids = market.ad_ids()
    campaign_ids = market.campaign_ids()
    status = campaign_status(market, exhausted)
    names = market.category_names
    indices = range(market.n_ads) if only is None else np.asarray(only, dtype=np.int64).tolist()
    for a in indices:
        c = int(market.ad_campaign[a])
        brand = market.advertiser_names[int(market.campaign_advertiser[c])]
        domain = f"{_slug(brand)}.example.com"
        title, body = market.creative(a)
        yield Ad(
            ad_id=ids[a],
            campaign_id=campaign_ids[c],
            title=title,
            body=body,
            image_url=f"https://cdn.{domain}/creatives/{ids[a]}.jpg",
            landing_url=f"https://{domain}/offer/{ids[a]}",
            category=names[int(market.ad_category[a])],
            brand=brand,
            price=float(market.ad_price[a]),
            status=status[c],
        )
