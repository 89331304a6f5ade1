"""The store protocol every backend implements, and the URL registry that opens one.

A store plays five roles, each its own protocol: :class:`MarketStore` (users, advertisers, campaigns, ads),
:class:`EventLog` (the append-only event log), :class:`Ledger` (served ads, charges, daily delivery),
:class:`ProfileStore` and :class:`KeyStore`; :class:`Store` is all of them over one handle. Backends are
chosen by URL scheme: ``sqlite:///path.db`` (embedded default) and ``postgresql://user@host/db`` (scale-out) are
registered by :mod:`adrec.store.sql`. Each role's contract suite runs against every registered backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from adrec.data.profile import Profile
from adrec.data.records import CtrExample, Delivery, Feedback
from adrec.data.schema import Ad, Advertiser, Campaign, Event, EventBatch, EventType, User, age_band
from adrec.data.segment import Segment
from adrec.exceptions import UnknownBackendError

__all__ = [
    "ApiKeyRecord",
    "BackendFactory",
    "CtrExample",
    "DailyDelivery",
    "Delivery",
    "ErasureReport",
    "EventLog",
    "Feedback",
    "FeedbackResult",
    "IngestResult",
    "KeyStore",
    "Ledger",
    "MarketStats",
    "MarketStore",
    "OnBadRow",
    "ProfileStore",
    "ServedBatch",
    "Store",
    "demographic_segment",
    "open_store",
    "register_backend",
    "registered_schemes",
]


@dataclass(frozen=True)
class IngestResult:
    """What an append did: ``inserted`` new events, ``duplicates`` already stored (same event id)."""

    received: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


@dataclass(frozen=True)
class ErasureReport:
    """What deleting a user removed."""

    user_id: str
    users: int
    events: int
    profiles: int = 0


@dataclass(frozen=True)
class MarketStats:
    """Counts and click-through figures of what a store holds."""

    users: int
    advertisers: int
    campaigns: int
    ads: int
    events: dict[str, int]
    spend: float
    ctr_examples: int
    top_categories: list[tuple[str, int, int]] = field(default_factory=list)
    """``(category, impressions, clicks)`` for the most-shown categories."""
    unbilled: float = 0.0
    """Delivered but not charged (beyond budgets or after campaigns ended), summed over campaigns."""

    @property
    def ctr(self) -> float:
        imps = self.events.get(EventType.IMPRESSION.name.lower(), 0)
        return self.events.get(EventType.CLICK.name.lower(), 0) / imps if imps else 0.0


@dataclass(frozen=True)
class FeedbackResult:
    """What :meth:`Store.apply_feedback` did with each event of a batch.

    ``rejected`` holds ``(position in the batch, reason)``; everything else was either accepted (stored, charged
    and counted) or a duplicate of an event id already stored (acknowledged, no effect).
    """

    received: int
    accepted: int
    duplicates: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    spend: float = 0.0
    unbilled: float = 0.0
    """What accepted billable events would have cost beyond their campaigns' budgets or after they ended."""


@dataclass(frozen=True)
class DailyDelivery:
    """A campaign's delivery on one UTC day."""

    campaign_id: str
    day: str
    impressions: int
    clicks: int
    conversions: int
    spend: float
    unbilled: float = 0.0
    """Delivered but not charged: what billable events would have cost beyond the campaign's budget, or after it
    ended (the platform absorbs it)."""

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def cpc(self) -> float | None:
        return self.spend / self.clicks if self.clicks else None

    @property
    def cpa(self) -> float | None:
        return self.spend / self.conversions if self.conversions else None


def demographic_segment(gender: str | None, age: int | None) -> str:
    """The coarse audience a user falls in for cold-start popularity: ``gender|age band`` (e.g. ``female|25-34``)."""
    return f"{gender or 'unknown'}|{'?' if age is None else age_band(age)}"


@dataclass(frozen=True)
class ServedBatch:
    """Served ads of the ledger as columns (what :meth:`Ledger.iter_served` yields): one row per impression token
    whose impression was recorded, with when its click and conversion came (NaN: none)."""

    iid: npt.NDArray[np.object_]
    user_id: npt.NDArray[np.object_]
    ad_id: npt.NDArray[np.object_]
    campaign_id: npt.NDArray[np.object_]
    placement: npt.NDArray[np.object_]
    """None where the request named no placement."""
    position: npt.NDArray[np.int16]
    """The slot (1 = top); 0 where the token did not carry it."""
    served_ts: npt.NDArray[np.float64]
    click_ts: npt.NDArray[np.float64]
    conversion_ts: npt.NDArray[np.float64]
    pricing_model: npt.NDArray[np.object_]
    """``CPC``, ``CPM`` or ``CPA``, as the token carried it."""
    price: npt.NDArray[np.float64]
    """The price per billable event the token carried."""
    cost: npt.NDArray[np.float64]
    """What the ledger charged for the token's events."""

    def __len__(self) -> int:
        return len(self.iid)


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored API key: only the SHA-256 of the secret is kept."""

    key_id: str
    key_hash: str
    role: str
    name: str
    created_ts: float
    advertiser_id: str | None = None
    revoked: bool = False


OnBadRow = Callable[[str, Exception], None]
"""Told ``(record id, error)`` of each stored row that no longer makes a valid record (then skipped), by the
iterators that accept it: readers that must survive one bad row (the serving catalogue) quarantine it this way."""


@runtime_checkable
class MarketStore(Protocol):
    """The ad market: users, advertisers, campaigns and ads. Upserts replace a record with the same id."""

    def upsert_users(self, users: Iterable[User]) -> int: ...
    def get_user(self, user_id: str) -> User: ...
    def iter_users(self, batch_size: int = 10_000) -> Iterator[list[User]]: ...
    def upsert_advertisers(self, advertisers: Iterable[Advertiser]) -> int: ...
    def upsert_campaigns(self, campaigns: Iterable[Campaign]) -> int: ...
    def upsert_ads(self, ads: Iterable[Ad]) -> int: ...
    def get_advertiser(self, advertiser_id: str) -> Advertiser: ...
    def get_campaign(self, campaign_id: str) -> Campaign: ...
    def get_ad(self, ad_id: str) -> Ad: ...
    def get_ads(self, ad_ids: Sequence[str]) -> list[Ad]: ...
    def iter_campaigns(
        self, batch_size: int = 10_000, *, on_error: OnBadRow | None = None
    ) -> Iterator[list[Campaign]]: ...
    def iter_ads(self, batch_size: int = 10_000, *, on_error: OnBadRow | None = None) -> Iterator[list[Ad]]: ...


@runtime_checkable
class EventLog(Protocol):
    """The append-only event log (idempotent by ``event_id``) and the anonymous CTR logs.

    :meth:`append_events` records history that carries no impression token (imported logs): it is never charged
    and creates no served-ad rows; events of served ads are recorded by :meth:`Ledger.apply_feedback`. Both write
    the log and the campaigns' daily delivery in one transaction, so reports always match the log.
    """

    def append_events(self, events: EventBatch | Sequence[Event]) -> IngestResult: ...
    def iter_events(
        self,
        *,
        user_id: str | None = None,
        ad_id: str | None = None,
        types: Sequence[EventType] | None = None,
        since: float | None = None,
        until: float | None = None,
        batch_size: int = 100_000,
    ) -> Iterator[EventBatch]: ...
    def count_events(self, *, user_id: str | None = None, type: EventType | None = None) -> int: ...
    def append_ctr_examples(self, examples: Sequence[CtrExample]) -> int: ...
    def iter_ctr_examples(self, source: str | None = None, batch_size: int = 10_000) -> Iterator[list[CtrExample]]: ...


@runtime_checkable
class Ledger(Protocol):
    """Served ads (deliveries) and what their events charged, within budgets and frequency caps; daily delivery."""

    def apply_feedback(self, feedback: Sequence[Feedback]) -> FeedbackResult: ...
    def delivery_times(self, user_id: str, since: float) -> list[tuple[str, str, float]]: ...
    def campaign_spend(self, day: str) -> dict[str, tuple[float, float]]: ...
    def delivery_report(
        self, campaign_ids: Sequence[str] | None = None, start_day: str | None = None, end_day: str | None = None
    ) -> list[DailyDelivery]: ...
    def segment_click_counts(self, limit: int = 200) -> dict[str, list[tuple[str, int]]]: ...
    def iter_served(
        self, *, since: float | None = None, until: float | None = None, batch_size: int = 100_000
    ) -> Iterator[ServedBatch]: ...


@runtime_checkable
class ProfileStore(Protocol):
    """Profiles: declared attributes read from users; behaviour, interests and embedding stored; segments."""

    def upsert_profiles(self, profiles: Iterable[Profile]) -> int: ...
    def get_profile(self, user_id: str) -> Profile: ...
    def get_profiles(self, user_ids: Sequence[str]) -> dict[str, Profile]: ...
    def iter_profiles(self, batch_size: int = 10_000) -> Iterator[list[Profile]]: ...
    def resolve_segment(self, segment: Segment) -> list[str]: ...


@runtime_checkable
class KeyStore(Protocol):
    """API keys, kept as the SHA-256 of their secret."""

    def put_api_key(self, key: ApiKeyRecord) -> None: ...
    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...
    def list_api_keys(self) -> list[ApiKeyRecord]: ...
    def revoke_api_key(self, key_id: str) -> None: ...


@runtime_checkable
class Store(MarketStore, EventLog, Ledger, ProfileStore, KeyStore, Protocol):
    """A store backend: every role over one handle, plus what spans them (erasure, versions, stats).

    Writes are durable when they return. Callers that need one role take that role's protocol; callers that need
    several keep one :class:`Store`.
    """

    url: str

    def delete_user(self, user_id: str) -> ErasureReport: ...
    def versions(self) -> dict[str, int]: ...
    def bump_version(self, name: str) -> int: ...
    def stats(self, top: int = 10) -> MarketStats: ...
    def schema_version(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


class BackendFactory(Protocol):
    """Opens the store at a URL: creating it when ``create`` is true, else raising :class:`StoreError` if the URL
    holds no store yet (and leaving nothing behind)."""

    def __call__(self, url: str, *, create: bool) -> Store: ...


_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make :func:`open_store` open URLs whose scheme (before ``://`` and any ``+driver``) is ``scheme``."""
    _BACKENDS[scheme] = factory


def registered_schemes() -> list[str]:
    _load_builtin_backends()
    return sorted(_BACKENDS)


def _load_builtin_backends() -> None:
    # Imported lazily so that importing the protocol does not import SQLAlchemy.
    import adrec.store.sql  # noqa: F401


def open_store(url: str, *, create: bool = True) -> Store:
    """Open the store at ``url``, migrating it to the current schema where needed.

    Parameters
    ----------
    url
        ``sqlite:///path.db``, ``sqlite://`` (in memory) or ``postgresql://user@host/db``.
    create
        Create the store when there is none at ``url`` (default). Commands that only read a store pass
        ``False``: a missing SQLite file (or a PostgreSQL database without adrec's schema) then raises
        :class:`~adrec.exceptions.StoreError` saying how to create one, and nothing is created, not even the
        file's folder.

    Examples
    --------
    >>> store = open_store("sqlite:///adrec-demo/adrec.db")  # doctest: +SKIP
    >>> store = open_store("postgresql://postgres@127.0.0.1:5432/test", create=False)  # doctest: +SKIP
    """
    _load_builtin_backends()
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    factory = _BACKENDS.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_BACKENDS))
        raise UnknownBackendError(f"no store backend for {url!r}; use a URL starting with one of: {known}")
    return factory(url, create=create)
