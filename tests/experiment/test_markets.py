"""Each arm's marketplace (budget split), the market's changes during a run, and the market-side measures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adrec.data.schema import Ad, Advertiser, Campaign, CampaignStatus, EventType, PricingModel, utc_day
from adrec.experiment import ArmConfig, ExperimentConfig, run_experiment
from adrec.experiment.live import _pacing_error
from adrec.experiment.markets import BidChange, Launch, split_budgets
from adrec.simulate import Market, SimulationConfig
from adrec.store import Delivery, Feedback, Store, open_store

MARKET = SimulationConfig(seed=4, n_users=800, n_advertisers=6, n_campaigns=18, n_ads=80, n_impressions=12_000, days=3)
BASE = ExperimentConfig(
    market=MARKET,
    days=1,
    requests_per_day=2000,
    arms=[ArmConfig(name="A", policy="random"), ArmConfig(name="B", policy="random")],
    salt="t",
    seed=1,
    return_elasticity=0.0,
)
DAY = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def _campaign(cid: str, daily: float | None, total: float | None) -> Campaign:
    return Campaign(
        campaign_id=cid,
        advertiser_id="adv",
        name=cid,
        pricing_model=PricingModel.CPC,
        bid=5.0,
        daily_budget=daily,
        total_budget=total,
    )


def test_each_arm_gets_its_traffic_share_of_what_is_left_of_every_budget() -> None:
    with open_store("sqlite://") as store:
        store.upsert_advertisers([Advertiser(advertiser_id="adv", name="Adv")])
        store.upsert_campaigns([_campaign("c1", 50.0, 100.0), _campaign("c2", 7.0, None), _campaign("c3", 0.02, 1.0)])
        store.upsert_ads([Ad(ad_id=f"a{i}", campaign_id=f"c{i}") for i in (1, 2, 3)])
        # c1 spends 40 before the split: ten clicks at 4.
        feedback = []
        for n in range(10):
            d = Delivery(f"t{n}", "u1", "a1", "c1", "adv", "CPC", 4.0, DAY + n, "feed")
            feedback += [
                Feedback(f"i{n}", EventType.IMPRESSION, DAY + n, d),
                Feedback(f"c{n}", EventType.CLICK, DAY + n, d),
            ]
        assert store.apply_feedback(feedback).spend == pytest.approx(40.0)
        budgets = split_budgets(store, 0.3, DAY + 86_400)
        c1, c2, c3 = (store.get_campaign(c) for c in ("c1", "c2", "c3"))
    # What was spent stays spent; the arm gets 30 % of the 60 left, and 30 % of each daily budget.
    assert (c1.daily_budget, c1.total_budget) == (15.0, 58.0)
    assert budgets.remaining["c1"] == 18.0 and budgets.daily["c1"] == 15.0
    assert (c2.daily_budget, c2.total_budget) == (2.1, None) and "c2" not in budgets.remaining
    # Less than a cent a day: the campaign sits this arm out rather than round up past its budget.
    assert c3.status == CampaignStatus.PAUSED and budgets.remaining["c3"] == 0.0
    assert budgets.active == frozenset({"c1", "c2"})
    with pytest.raises(ValueError, match="share"):
        split_budgets(store, 0.0, DAY)


def _spent(store: Store, since: float) -> tuple[dict[str, float], dict[str, float]]:
    """Per campaign: what the store's ledger charged in all, and from ``since`` (a UTC midnight) on."""
    total = {c: spent for c, (_, spent) in store.campaign_spend("2000-01-01").items()}
    live: dict[str, float] = {}
    for row in store.delivery_report(start_day=utc_day(since)):
        live[row.campaign_id] = live.get(row.campaign_id, 0.0) + row.spend
    return total, live


def test_an_arm_cannot_drain_the_budgets_of_another() -> None:
    # Budgets a twentieth of the expected spend, so they bind. Arm A is the same random policy in both runs; its
    # neighbour is random in one and the oracle in the other. With a shared budget what the neighbour spends
    # would change what A can buy; with the budget split, A's run is identical to the last event.
    # Users come back for relevant ads (return model on): arrivals too are each arm's own.
    market = MARKET.model_copy(update={"budget_factor": 0.05})
    tight = BASE.model_copy(update={"market": market, "return_elasticity": 1.0})
    results, spent = {}, {}
    for neighbour in ("random", "oracle"):
        config = tight.model_copy(
            update={"arms": [ArmConfig(name="A", policy="random"), ArmConfig(name="B", policy=neighbour)]}
        )
        with open_store("sqlite://") as a, open_store("sqlite://") as b:
            results[neighbour] = run_experiment(config, {"A": a, "B": b}, progress=False)
            campaigns = {c.campaign_id: c for batch in a.iter_campaigns() for c in batch}
            spent[neighbour] = (_spent(a, config.live_start), _spent(b, config.live_start), campaigns)
    a_random, a_oracle = (next(x for x in results[n].arms if x.name == "A") for n in ("random", "oracle"))
    del a_random.totals["regret"], a_oracle.totals["regret"]  # against the oracle arm: only the second run has one
    assert a_random.totals == a_oracle.totals
    assert a_random.totals["unbilled"] > 0  # the budgets did bind
    b_random, b_oracle = (next(x for x in results[n].arms if x.name == "B") for n in ("random", "oracle"))
    assert b_random.totals != b_oracle.totals
    # Every arm's ledger stayed within its half of each campaign's budget, and together within the whole.
    market = Market.generate(tight.market)
    for (a_total, a_live), (b_total, b_live), a_campaigns in spent.values():
        for k, cid in enumerate(market.campaign_ids().tolist()):
            total = market.campaign_total_budget[k]
            if not math.isnan(total):
                warm_up = a_total.get(cid, 0.0) - a_live.get(cid, 0.0)
                assert warm_up == pytest.approx(b_total.get(cid, 0.0) - b_live.get(cid, 0.0))
                assert a_total.get(cid, 0.0) <= a_campaigns[cid].total_budget + 1e-9
                assert a_live.get(cid, 0.0) <= (total - warm_up) / 2 + 1e-9
                assert warm_up + a_live.get(cid, 0.0) + b_live.get(cid, 0.0) <= total + 1e-9


def test_campaigns_launched_during_the_run_have_no_history_and_start_on_time() -> None:
    config = BASE.model_copy(update={"days": 2, "launch": Launch(share=0.25, day=1.0)})
    with open_store("sqlite://") as a, open_store("sqlite://") as b:
        report = run_experiment(config, {"A": a, "B": b}, progress=False)
        launch_ts = config.live_start + 86_400
        launched = {
            c.campaign_id for batch in a.iter_campaigns() for c in batch if c.start and c.start.timestamp() == launch_ts
        }
        ads = {ad.ad_id for batch in a.iter_ads() for ad in batch if ad.campaign_id in launched}
        before = [
            e
            for batch in a.iter_events()
            for e, ts in zip(batch.ad_id.tolist(), batch.ts.tolist(), strict=True)
            if ts < launch_ts
        ]
    assert len(launched) == 4  # a quarter of the 16 campaigns with a total budget (not the 2 evergreen ones)
    assert not ads & set(before)  # no warm-up history, and nothing served before the launch
    for arm in report.arms:
        assert arm.daily[0]["new_impressions"] == 0 and arm.daily[1]["new_impressions"] > 0
        assert arm.metrics["new_ad_share"].mean == pytest.approx(
            arm.totals["new_impressions"] / arm.totals["impressions"]
        )
    with pytest.raises(ValueError, match=r"launch\.day 2 is not within the 2 live days"):
        ExperimentConfig(**{**config.model_dump(), "launch": {"share": 0.1, "day": 2}})


def test_bid_changes_reach_every_arms_store_and_pipeline() -> None:
    config = BASE.model_copy(update={"bid_change": BidChange(share=0.5, day=0.5, factor=2.0)})
    market = Market.generate(MARKET)
    with open_store("sqlite://") as a, open_store("sqlite://") as b:
        run_experiment(config, {"A": a, "B": b}, progress=False)
        bids = [{c.campaign_id: c.bid for batch in s.iter_campaigns() for c in batch} for s in (a, b)]
    original = dict(zip(market.campaign_ids().tolist(), market.campaign_bid.tolist(), strict=True))
    doubled = {c for c, bid in bids[0].items() if bid == pytest.approx(max(0.01, round(original[c] * 2, 2)))}
    assert len(doubled) == 9 and bids[0] == bids[1]  # half of the 18 campaigns, the same ones in each arm
    assert all(bids[0][c] == original[c] for c in set(original) - doubled)


def test_calibration_and_regret_have_known_answers_against_the_truth() -> None:
    # One slot, no fatigue, every user consenting: the oracle's served pCTR is the true click probability of
    # each impression, so PCOC is 1 and the calibration error 0, and its regret is 0 by definition.
    market = MARKET.model_copy(update={"slots": 1, "consent_rate": 1.0})
    arms = [ArmConfig(name="random", policy="random"), ArmConfig(name="oracle", policy="oracle")]
    config = BASE.model_copy(update={"market": market, "fatigue": 1.0, "arms": arms})
    report = run_experiment(config, progress=False)
    random_arm, oracle = report.arms
    # (up to float32 rounding: the pipeline handles scores in single precision)
    assert oracle.metrics["pcoc"].mean == pytest.approx(1.0, abs=1e-6)
    assert oracle.summary["ece"] == pytest.approx(0.0, abs=1e-7)
    assert all(b["pctr"] == pytest.approx(b["true_ctr"], rel=1e-6) for b in oracle.calibration)
    assert random_arm.summary["ece"] > 100 * oracle.summary["ece"]
    assert oracle.totals["regret"] == 0.0 and oracle.daily[-1]["cumulative_regret"] == pytest.approx(0.0)
    # Random: regret is the expected clicks it lost on its own requests, and the oracle's lead is significant.
    (regret,) = report.regret
    assert (regret.arm, regret.baseline, regret.metric) == ("random", "oracle", "expected_clicks_per_request")
    assert regret.ci_high < 0
    assert random_arm.totals["regret"] == pytest.approx(-regret.difference * random_arm.totals["requests"])
    assert random_arm.daily[-1]["cumulative_regret"] == pytest.approx(random_arm.totals["regret"], rel=0.05)
    assert 0 < random_arm.summary["coverage"] <= 1 and 0 < random_arm.summary["budget_utilisation"] <= 1


def test_pacing_error_is_the_distance_from_the_even_line() -> None:
    daily = np.array([24.0, 24.0, np.nan, 10.0])
    hourly = np.zeros((4, 48))
    hourly[0, :] = 1.0  # exactly even, both days
    hourly[1, 0] = 24.0  # day 1: all in the first hour; day 2 nothing (left out)
    hourly[2, :] = 5.0  # no daily budget: left out
    errors = [0.0, 0.0, 1 - 12.5 / 24]
    assert _pacing_error(hourly, daily, 48) == pytest.approx(np.mean(errors))
    assert math.isnan(_pacing_error(np.zeros((4, 48)), daily, 48))
