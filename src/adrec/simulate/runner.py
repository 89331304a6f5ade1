"""Run a simulation into a store: the catalogue, the users, the logged events and, optionally, the truth."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from adrec.exceptions import StoreError
from adrec.progress import Bars
from adrec.simulate.config import SimulationConfig
from adrec.simulate.history import simulate_history
from adrec.simulate.market import Market
from adrec.simulate.records import ad_records, advertiser_records, campaign_records, user_records
from adrec.store.base import Store

__all__ = ["SimulationReport", "simulate"]

T = TypeVar("T")


@dataclass(frozen=True)
class SimulationReport:
    """What a simulation wrote and what the logged data looks like.

    Attributes
    ----------
    seed
        The simulation seed.
    users, advertisers, campaigns, ads
        Records written.
    impressions, clicks, conversions
        Events generated, by type.
    inserted
        Events the store actually added (fewer than generated when re-running the same seed).
    spend
        What the store's ledger charged for them: each billable event at its campaign's price, within the
        campaign's daily and total budgets.
    unbilled
        What billable events would have cost beyond their campaigns' budgets (the history serves campaigns until
        their total budget is spent, a chunk late, and ignores daily budgets; the ledger charges neither).
    rejected
        Events the ledger refused (with the reasons in the store's answer; a simulated market has no frequency
        caps, so this stays 0 unless the store held a conflicting library).
    conversion_value
        Sum of the order values of conversions.
    ctr, cvr
        Realised clicks per impression and conversions per click.
    mean_true_ctr
        Mean of the true click probability over the logged impressions (``ctr`` should be close to it).
    campaigns_exhausted
        Campaigns that spent their total budget.
    seconds
        Wall time of the whole run, store writes included.
    timings
        Seconds spent per phase: ``market`` (drawing the truth and saving it), ``catalogue``, ``users``,
        ``events`` (generating and appending the history) and ``budgets``.
    out_dir
        Where the market truth was saved, if anywhere.
    """

    seed: int
    users: int
    advertisers: int
    campaigns: int
    ads: int
    impressions: int
    clicks: int
    conversions: int
    inserted: int
    spend: float
    unbilled: float
    rejected: int
    conversion_value: float
    ctr: float
    cvr: float
    mean_true_ctr: float
    campaigns_exhausted: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    out_dir: str | None = None

    @property
    def events(self) -> int:
        """All events generated: impressions, clicks and conversions."""
        return self.impressions + self.clicks + self.conversions

    @property
    def duplicates(self) -> int:
        """Generated events the store already held."""
        return self.events - self.inserted - self.rejected

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields, derived figures included."""
        return {
            **asdict(self),
            "events": self.events,
            "duplicates": self.duplicates,
            "events_per_second": self.events_per_second,
        }


def _counted(items: Iterable[T], advance: Callable[[int], None], every: int = 10_000) -> Iterator[T]:
    n = 0
    for item in items:
        yield item
        n += 1
        if n == every:
            advance(n)
            n = 0
    advance(n)


def simulate(
    config: SimulationConfig,
    store: Store | Sequence[Store],
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    market: Market | None = None,
) -> SimulationReport:
    """Generate a market from ``config`` and write its catalogue, users and logged history into ``store``.

    The catalogue (advertisers, campaigns, ads) and the users are upserted first, then the events chunk by
    chunk, each chunk one durable :meth:`~adrec.store.base.Ledger.apply_feedback` call: simulated events take the
    path of served ones, so the ledger charges them within budgets and reports match the log. Event ids are
    deterministic, so running the same config again inserts nothing new. Campaigns that spent their total
    budget are finally re-upserted with status ``ended`` (and their ads with them).

    Parameters
    ----------
    config
        What to simulate.
    store
        Where to write; several stores each get all of it (the history is generated once and written to each, as
        the experiment's arms need: the same market and warm-up in a store per arm). The report counts one;
        :class:`StoreError` when a store records a chunk differently from the first (they started apart).
    out_dir
        If given, the market truth is saved there first (``market.npz`` + ``market.json``, see
        :meth:`Market.save`) and the report at the end (``report.json``).
    progress
        Show rich progress bars on the terminal.
    market
        ``Market.generate(config)`` when the caller already has it (it is generated otherwise).

    Returns
    -------
    SimulationReport
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    clock = started
    stores = list(store) if isinstance(store, Sequence) else [store]

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = now - clock
        clock = now

    with Bars(progress) as bars:
        with bars.step("market"):
            market = Market.generate(config) if market is None else market
            if out_dir is not None:
                market.save(out_dir)
        lap("market")

        with bars.step("catalogue"):
            for s in stores:
                s.upsert_advertisers(advertiser_records(market))
                s.upsert_campaigns(campaign_records(market))
                s.upsert_ads(ad_records(market))
        lap("catalogue")
        users = bars.task("users", market.n_users * len(stores))
        for s in stores:
            s.upsert_users(_counted(user_records(market), users))
        lap("users")

        advance = bars.task("impressions", config.n_impressions)
        counts = np.zeros(3, dtype=np.int64)
        spend_by_campaign = np.zeros(market.n_campaigns)
        inserted, rejected, value, sum_p_click, charged, unbilled = 0, 0, 0.0, 0.0, 0.0, 0.0
        for log in simulate_history(market):
            feedback = log.to_feedback(market)
            result = stores[0].apply_feedback(feedback)
            for k, other in enumerate(stores[1:], start=1):
                again = other.apply_feedback(feedback)
                if (again.accepted, len(again.rejected), again.spend) != (
                    result.accepted,
                    len(result.rejected),
                    result.spend,
                ):  # e.g. one store held part of this market already: they would no longer be copies
                    raise StoreError(
                        f"store {k} recorded this history differently from store 0 ({again.accepted:,} vs "
                        f"{result.accepted:,} events accepted): give every store the same starting content"
                    )
            inserted += result.accepted
            rejected += len(result.rejected)
            charged += result.spend
            unbilled += result.unbilled
            counts += (len(log), int(log.clicked.sum()), int(log.converted.sum()))
            spend_by_campaign += np.bincount(
                market.ad_campaign[log.ad_idx], weights=log.cost, minlength=market.n_campaigns
            )
            value += float(np.nansum(log.value))
            sum_p_click += float(log.p_click.sum())
            advance(len(log))
        lap("events")

        total_budget = np.where(np.isnan(market.campaign_total_budget), np.inf, market.campaign_total_budget)
        exhausted = spend_by_campaign >= total_budget
        if exhausted.any():
            with bars.step("budgets"):
                changed = np.flatnonzero(exhausted)
                ads = np.flatnonzero(exhausted[market.ad_campaign])
                for s in stores:
                    s.upsert_campaigns(campaign_records(market, exhausted=exhausted, only=changed))
                    s.upsert_ads(ad_records(market, exhausted=exhausted, only=ads))
        lap("budgets")

    impressions, clicks, conversions = (int(x) for x in counts)
    report = SimulationReport(
        seed=config.seed,
        users=market.n_users,
        advertisers=market.n_advertisers,
        campaigns=market.n_campaigns,
        ads=market.n_ads,
        impressions=impressions,
        clicks=clicks,
        conversions=conversions,
        inserted=inserted,
        spend=charged,
        unbilled=unbilled,
        rejected=rejected,
        conversion_value=value,
        ctr=clicks / impressions if impressions else 0.0,
        cvr=conversions / clicks if clicks else 0.0,
        mean_true_ctr=sum_p_click / impressions if impressions else 0.0,
        campaigns_exhausted=int(exhausted.sum()),
        seconds=time.perf_counter() - started,
        timings=timings,
        out_dir=None if out_dir is None else str(out_dir),
    )
    if out_dir is not None:
        path = Path(out_dir) / "report.json"
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
