"""The settings of one simulation run: sizes, time window, click-model and logging-policy knobs, seed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adrec.exceptions import ConfigError
from adrec.simulate.vocab import CATEGORIES

__all__ = ["SimulationConfig"]


class SimulationConfig(BaseModel):
    """Everything that determines a simulated market and its history; the same config gives the same data.

    The defaults make a demo market (5k users, 500 ads, 200k impressions) that simulates and stores in
    seconds. Invalid values raise :class:`adrec.exceptions.ConfigError` naming the field.

    Parameters
    ----------
    seed
        Seeds every random draw (market and history) through :class:`numpy.random.SeedSequence`.
    n_users, n_advertisers, n_campaigns, n_ads
        Market sizes. Every advertiser runs at least one campaign and every campaign at least one ad, so
        ``n_advertisers <= n_campaigns <= n_ads``.
    n_impressions
        Impressions to log. Clicks and conversions are extra events on top of them.
    n_categories
        How many of the readable categories in :data:`adrec.simulate.vocab.CATEGORIES` (at most 20) to use.
    start, days
        The logged window: ``days`` days from ``start`` (UTC; a naive datetime is taken as UTC).
    slots
        Ads shown per request, at positions ``1..slots``.
    placement
        The placement name written on every event.
    base_logit
        Intercept of the click model; the main knob of the overall CTR (about 1-5 % around the default).
    affinity_weight
        Weight of the user's interest in the ad's category in the click logit.
    position_decay
        Position bias: the click logit falls by ``position_decay * log(position)``.
    quality_scale, user_bias_scale, latent_scale
        Standard deviations of the ad quality, the per-user click propensity and the user x ad latent term.
    latent_dim
        Dimension of the user and ad latent vectors whose dot product adds idiosyncratic taste.
    cvr_base_logit
        Intercept of the post-click conversion model.
    interest_concentration
        Mean Dirichlet concentration per category of the users' interests; lower is sparser.
    activity_sigma
        Log-scale spread of the lognormal user activity weights; higher is a heavier tail.
    popularity_sigma
        Log-scale spread of the lognormal ad popularity weights; higher is a longer tail.
    consent_rate
        Share of users who consent to behavioural targeting.
    targeted_share
        Share of campaigns with at least one targeting rule (the rest are open).
    explore
        Share of logged slots filled uniformly at random among serving ads.
    interest_share
        Share of the remaining slots whose category follows the (consenting) user's interests rather than
        ad popularity.
    budget_factor
        Median ratio of a campaign's total budget to the spend it would reach without a budget; below about
        1.5 many campaigns run out of budget before the window ends.
    chunk_size
        Impressions generated (and written to the store) per step; bounds memory. Budget exhaustion is checked
        between chunks, so the history also depends on it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, ge=0)
    n_users: int = Field(default=5_000, ge=1)
    n_advertisers: int = Field(default=50, ge=1)
    n_campaigns: int = Field(default=150, ge=1)
    n_ads: int = Field(default=500, ge=1)
    n_impressions: int = Field(default=200_000, ge=0, lt=10**10)
    n_categories: int = Field(default=len(CATEGORIES), ge=1, le=len(CATEGORIES))
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    days: int = Field(default=14, ge=1, le=3650)
    slots: int = Field(default=4, ge=1, le=20)
    placement: str = Field(default="feed", min_length=1, max_length=100)
    base_logit: float = Field(default=-4.6, ge=-20, le=5)
    affinity_weight: float = Field(default=1.0, ge=0, le=10)
    position_decay: float = Field(default=0.7, ge=0, le=5)
    quality_scale: float = Field(default=0.5, ge=0, le=5)
    user_bias_scale: float = Field(default=0.5, ge=0, le=5)
    latent_scale: float = Field(default=0.5, ge=0, le=5)
    latent_dim: int = Field(default=8, ge=1, le=256)
    cvr_base_logit: float = Field(default=-3.6, ge=-20, le=5)
    interest_concentration: float = Field(default=0.3, gt=0, le=100)
    activity_sigma: float = Field(default=1.3, ge=0, le=5)
    popularity_sigma: float = Field(default=1.5, ge=0, le=5)
    consent_rate: float = Field(default=0.95, ge=0, le=1)
    targeted_share: float = Field(default=0.4, ge=0, le=1)
    explore: float = Field(default=0.05, ge=0, le=1)
    interest_share: float = Field(default=0.6, ge=0, le=1)
    budget_factor: float = Field(default=2.0, gt=0)
    chunk_size: int = Field(default=250_000, ge=1)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            where = "".join(f".{p}" for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            raise ConfigError(f"simulate{where}: {msg}") from None

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if self.n_campaigns < self.n_advertisers:
            raise ValueError(
                f"n_campaigns ({self.n_campaigns}) must be at least n_advertisers ({self.n_advertisers}): "
                "every advertiser runs a campaign"
            )
        if self.n_ads < self.n_campaigns:
            raise ValueError(
                f"n_ads ({self.n_ads}) must be at least n_campaigns ({self.n_campaigns}): every campaign has an ad"
            )
        if self.n_ads < self.slots:
            raise ValueError(f"n_ads ({self.n_ads}) must be at least slots ({self.slots}) to fill a request")
        return self

    @property
    def start_ts(self) -> float:
        """``start`` in seconds since the Unix epoch."""
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        """End of the logged window in seconds since the Unix epoch."""
        return self.start_ts + self.days * 86_400.0

    @property
    def n_requests(self) -> int:
        """Requests needed for ``n_impressions`` slots (the last request may be partly filled)."""
        return -(-self.n_impressions // self.slots)
