"""simulate() into a real SQLite store: counts, idempotent re-runs, saved truth, records read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adrec.data.schema import CampaignStatus, EventType
from adrec.exceptions import StoreError
from adrec.simulate import Market, SimulationConfig, SimulationReport, simulate
from adrec.simulate.records import ad_records
from adrec.store import Store, open_store

CONFIG = SimulationConfig(
    n_users=1_500, n_advertisers=15, n_campaigns=45, n_ads=150, n_impressions=40_000, chunk_size=15_000, seed=5
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, SimulationReport, Path]]:
    root = tmp_path_factory.mktemp("sim")
    with open_store(f"sqlite:///{root / 'adrec.db'}") as store:
        report = simulate(CONFIG, store, out_dir=root / "truth", progress=False)
        yield store, report, root / "truth"


def test_store_counts_match_the_report(run: tuple[Store, SimulationReport, Path]) -> None:
    store, report, _ = run
    stats = store.stats()
    assert (stats.users, stats.advertisers, stats.campaigns, stats.ads) == (
        CONFIG.n_users,
        CONFIG.n_advertisers,
        CONFIG.n_campaigns,
        CONFIG.n_ads,
    )
    assert stats.events == {
        "impression": report.impressions,
        "click": report.clicks,
        "conversion": report.conversions,
    }
    assert report.impressions == CONFIG.n_impressions
    assert report.inserted == report.events
    assert report.duplicates == 0
    assert stats.spend == pytest.approx(report.spend)
    assert stats.ctr == pytest.approx(report.ctr)
    assert abs(report.ctr - report.mean_true_ctr) < 0.004
    assert set(report.timings) == {"market", "catalogue", "users", "events", "budgets"}


def test_rerun_with_the_same_seed_adds_nothing(run: tuple[Store, SimulationReport, Path]) -> None:
    store, report, _ = run
    again = simulate(CONFIG, store, progress=False)
    assert again.inserted == 0
    assert again.duplicates == report.events
    assert (again.impressions, again.clicks, again.conversions) == (
        report.impressions,
        report.clicks,
        report.conversions,
    )
    assert store.count_events() == report.events


def test_truth_and_report_are_saved(run: tuple[Store, SimulationReport, Path]) -> None:
    _, report, truth = run
    market = Market.load(truth)
    assert market.config == CONFIG
    fresh = Market.generate(CONFIG)
    np.testing.assert_array_equal(market.user_interest, fresh.user_interest)
    saved = json.loads((truth / "report.json").read_text())
    assert saved["events"] == report.events
    assert saved["ctr"] == pytest.approx(report.ctr)


def test_records_read_back(run: tuple[Store, SimulationReport, Path]) -> None:
    store, _, truth = run
    market = Market.load(truth)
    ad = store.get_ad("ad007")
    expected = next(ad_records(market, only=[7]))
    assert (ad.title, ad.body, ad.category, ad.brand) == (
        expected.title,
        expected.body,
        expected.category,
        expected.brand,
    )
    user = store.get_user("u0042")
    assert user.age == int(market.user_age[42])
    campaign = store.get_campaign("cmp03")
    assert campaign.bid == pytest.approx(float(market.campaign_bid[3]))


def test_events_read_back_with_their_truth(run: tuple[Store, SimulationReport, Path]) -> None:
    store, _, truth = run
    market = Market.load(truth)
    batch = next(store.iter_events(types=[EventType.CLICK], batch_size=500))
    assert len(batch) == 500
    users = np.array([int(u[1:]) for u in batch.user_id])
    ads = np.array([int(a[2:]) for a in batch.ad_id])
    assert (market.true_ctr(users, ads) > 0).all()
    assert all(e.endswith("-c") for e in batch.event_id)


def test_exhausted_campaigns_end_in_the_store(tmp_path: Path) -> None:
    config = CONFIG.model_copy(update={"budget_factor": 0.05, "n_impressions": 20_000, "n_users": 300})
    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        report = simulate(config, store, progress=True)
        assert report.campaigns_exhausted > 0
        statuses = [c.status for batch in store.iter_campaigns() for c in batch]
    assert statuses.count(CampaignStatus.ENDED) >= report.campaigns_exhausted


def test_simulated_events_take_the_served_path_so_budgets_reports_and_stats_agree(tmp_path: Path) -> None:
    # Tight budgets: the history serves campaigns a chunk past their total budget and ignores daily ones; the
    # ledger charges neither, and the excess is unbilled delivery. (Before one write path, the simulator wrote
    # the log only: reports showed nothing and spend ran past budgets.)
    config = CONFIG.model_copy(update={"budget_factor": 0.05, "n_impressions": 20_000, "n_users": 300})
    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        report = simulate(config, store, progress=False)
        stats = store.stats()
        days = store.delivery_report()
        campaigns = {c.campaign_id: c for batch in store.iter_campaigns() for c in batch}
        impressions = [b for b in store.iter_events(types=[EventType.IMPRESSION])]
        first = impressions[0]
        served = store.delivery_times(str(first.user_id[0]), 0.0)
    assert report.rejected == 0 and report.unbilled > 0
    assert (stats.spend, stats.unbilled) == (pytest.approx(report.spend), pytest.approx(report.unbilled))
    # The campaign report and `adrec stats` read the same events.
    assert sum(d.impressions for d in days) == stats.events["impression"] == report.impressions
    assert sum(d.clicks for d in days) == stats.events["click"] == report.clicks
    assert sum(d.conversions for d in days) == stats.events["conversion"] == report.conversions
    assert sum(d.spend for d in days) == pytest.approx(stats.spend)
    assert sum(d.unbilled for d in days) == pytest.approx(stats.unbilled)
    # No campaign is charged above its daily or total budget.
    total: dict[str, float] = {}
    for d in days:
        c = campaigns[d.campaign_id]
        total[d.campaign_id] = total.get(d.campaign_id, 0.0) + d.spend
        assert c.daily_budget is None or d.spend <= c.daily_budget + 1e-9
    assert all(c.total_budget is None or total.get(i, 0.0) <= c.total_budget + 1e-9 for i, c in campaigns.items())
    # Served ads are in the ledger (frequency caps count them), with the logging policy's propensity.
    assert (str(first.ad_id[0]), float(first.ts[0])) in [(ad, ts) for _, ad, ts in served]
    assert all(np.isfinite(b.propensity).all() for b in impressions)


def test_several_stores_each_get_the_whole_market() -> None:
    # The experiment writes one market into a store per arm: generated once, every store holds what one
    # simulate() into a store of its own holds (events, spend, the campaigns that ran out).
    config = CONFIG.model_copy(update={"budget_factor": 0.05})  # some campaigns run out of budget
    with open_store("sqlite://") as alone, open_store("sqlite://") as a, open_store("sqlite://") as b:
        single = simulate(config, alone, progress=False)
        both = simulate(config, [a, b], progress=False)
        assert (both.events, both.spend, both.campaigns_exhausted) == (
            single.events,
            single.spend,
            single.campaigns_exhausted,
        )
        assert single.campaigns_exhausted > 0
        for s in (a, b):
            assert s.stats() == alone.stats()
            assert [c.status for batch in s.iter_campaigns() for c in batch] == [
                c.status for batch in alone.iter_campaigns() for c in batch
            ]
            got = np.concatenate([x.cost for x in s.iter_events()])
            np.testing.assert_array_equal(got, np.concatenate([x.cost for x in alone.iter_events()]))


def test_stores_that_start_apart_are_refused() -> None:
    config = CONFIG.model_copy(update={"n_impressions": 20_000, "n_users": 300})
    with open_store("sqlite://") as full, open_store("sqlite://") as empty:
        simulate(config, full, progress=False)
        with pytest.raises(StoreError, match="store 1 recorded this history differently"):
            simulate(config, [full, empty], progress=False)  # the second would get what the first already has
