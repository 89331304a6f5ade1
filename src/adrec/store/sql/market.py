"""The SQL market store: users, advertisers, campaigns and ads (the :class:`~adrec.store.base.MarketStore` role)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    select,
)

from adrec.data.schema import (
    Ad,
    Advertiser,
    Campaign,
    FrequencyCap,
    Pacing,
    Targeting,
    User,
    to_epoch,
)
from adrec.store import tables as t
from adrec.store.base import (
    OnBadRow,
)
from adrec.store.sql.engine import IN_CHUNK, SqlBase

__all__ = ["SqlMarketStore", "user_of_row"]


def _dump_targeting(targeting: Targeting) -> dict[str, Any]:
    return {k: sorted(v) if isinstance(v, frozenset) else v for k, v in targeting.model_dump().items()}


def _user_row(u: User, now: float) -> dict[str, Any]:
    row = u.model_dump()
    row["gender"] = u.gender.value
    row["device"] = u.device.value
    row["interests"] = list(u.interests)
    row["updated_at"] = now
    return row


def _campaign_row(c: Campaign) -> dict[str, Any]:
    return {
        "campaign_id": c.campaign_id,
        "advertiser_id": c.advertiser_id,
        "name": c.name,
        "objective": c.objective.value,
        "pricing_model": c.pricing_model.value,
        "bid": c.bid,
        "daily_budget": c.daily_budget,
        "total_budget": c.total_budget,
        "start_ts": to_epoch(c.start) if c.start else None,
        "end_ts": to_epoch(c.end) if c.end else None,
        "status": c.status.value,
        "targeting": _dump_targeting(c.targeting),
        "frequency": c.frequency.model_dump(),
        "pacing": c.pacing.value,
    }


def _ad_row(a: Ad) -> dict[str, Any]:
    row = a.model_dump()
    row["status"] = a.status.value
    return row


def user_of_row(row: dict[str, Any]) -> User:
    """The user a ``users`` row holds (the row is consumed)."""
    row.pop("updated_at", None)
    row["interests"] = tuple(row["interests"])
    return User(**row)


class SqlMarketStore(SqlBase):
    """The :class:`~adrec.store.base.MarketStore` role over SQL."""

    # -- users -----------------------------------------------------------------------------------------------
    def upsert_users(self, users: Iterable[User]) -> int:
        now = time.time()
        return self._upsert(t.users, "user_id", (_user_row(u, now) for u in users))

    def get_user(self, user_id: str) -> User:
        return user_of_row(self._get(t.users, "user_id", user_id, "user"))

    def iter_users(self, batch_size: int = 10_000) -> Iterator[list[User]]:
        for rows in self._iter(t.users, "user_id", batch_size):
            yield [user_of_row(r) for r in rows]

    # -- ad library ------------------------------------------------------------------------------------------
    def upsert_advertisers(self, advertisers: Iterable[Advertiser]) -> int:
        return self._upsert(t.advertisers, "advertiser_id", (a.model_dump() for a in advertisers))

    def upsert_campaigns(self, campaigns: Iterable[Campaign]) -> int:
        return self._upsert(t.campaigns, "campaign_id", (_campaign_row(c) for c in campaigns), bump="catalog")

    def upsert_ads(self, ads: Iterable[Ad]) -> int:
        return self._upsert(t.ads, "ad_id", (_ad_row(a) for a in ads), bump="catalog")

    def get_advertiser(self, advertiser_id: str) -> Advertiser:
        return Advertiser(**self._get(t.advertisers, "advertiser_id", advertiser_id, "advertiser"))

    @staticmethod
    def _campaign(row: dict[str, Any]) -> Campaign:
        start, end = row.pop("start_ts"), row.pop("end_ts")
        row["start"] = datetime.fromtimestamp(start, UTC) if start is not None else None
        row["end"] = datetime.fromtimestamp(end, UTC) if end is not None else None
        row["targeting"] = Targeting(**row["targeting"])
        row["frequency"] = FrequencyCap(**(row["frequency"] or {}))
        row["pacing"] = row["pacing"] or Pacing.EVEN
        return Campaign(**row)

    def get_campaign(self, campaign_id: str) -> Campaign:
        return self._campaign(self._get(t.campaigns, "campaign_id", campaign_id, "campaign"))

    def get_ad(self, ad_id: str) -> Ad:
        return Ad(**self._get(t.ads, "ad_id", ad_id, "ad"))

    def get_ads(self, ad_ids: Sequence[str]) -> list[Ad]:
        """The stored ads among ``ad_ids``, in that order; unknown ids are left out."""
        wanted = list(dict.fromkeys(ad_ids))
        found: dict[str, Ad] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                query = select(t.ads).where(t.ads.c.ad_id.in_(wanted[start : start + IN_CHUNK]))
                found.update((r["ad_id"], Ad(**r)) for r in conn.execute(query).mappings())
        return [found[a] for a in wanted if a in found]

    def iter_campaigns(self, batch_size: int = 10_000, *, on_error: OnBadRow | None = None) -> Iterator[list[Campaign]]:
        yield from self._records(t.campaigns, "campaign_id", batch_size, self._campaign, on_error)

    def iter_ads(self, batch_size: int = 10_000, *, on_error: OnBadRow | None = None) -> Iterator[list[Ad]]:
        yield from self._records(t.ads, "ad_id", batch_size, lambda r: Ad(**r), on_error)
