"""Records that serving, feedback, the store and the importers share: what was served (:class:`Delivery`), what
came back about it (:class:`Feedback`), and a labelled row of an anonymous CTR log (:class:`CtrExample`).

They live below the store, which keeps them, so that the packages above it share one definition;
:mod:`adrec.store` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adrec.data.schema import EventType

__all__ = ["CtrExample", "Delivery", "Feedback"]


@dataclass(frozen=True)
class CtrExample:
    """One labelled row of a CTR log with anonymous features (Criteo, Avazu): no user or ad identity."""

    source: str
    line: int
    label: int
    features: dict[str, Any]
    ts: float | None = None


@dataclass(frozen=True)
class Delivery:
    """One ad served to one user: what its signed impression token carries.

    ``price`` is the charge per billable event of ``pricing_model`` (per click for CPC, per impression for CPM,
    per conversion for CPA), as set by the auction; it never exceeds the bid.
    """

    iid: str
    user_id: str
    ad_id: str
    campaign_id: str
    advertiser_id: str
    pricing_model: str
    price: float
    served_ts: float
    placement: str | None = None
    propensity: float | None = None
    """The serving policy's probability of showing this ad in this slot for this request (for off-policy
    evaluation); None when unknown (a pipeline that only exploits). Carried by impression tokens when set."""
    position: int | None = None
    """The slot the ad was shown in, 1 at the top (what click models learn position bias from); None when unknown
    (tokens signed before positions were recorded)."""


@dataclass(frozen=True)
class Feedback:
    """An impression, click or conversion of a served ad (a :class:`Delivery`), identified by ``event_id``."""

    event_id: str
    type: EventType
    ts: float
    delivery: Delivery
    value: float | None = None
