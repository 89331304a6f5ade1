"""The logged history: determinism, realistic marginals, the click model seen through the log, event batches."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import pytest

from adrec.data.schema import EventType
from adrec.simulate import ImpressionLog, LoggingPolicy, Market, SimulationConfig, simulate_history
from adrec.simulate.market import CPA, CPC, CPM

DEFAULT = SimulationConfig()


@dataclass
class Log:
    """The concatenated chunks of a history, plus where each chunk starts."""

    market: Market
    chunks: list[ImpressionLog]

    def __getattr__(self, name: str) -> npt.NDArray[np.generic]:
        return np.concatenate([getattr(c, name) for c in self.chunks])


@pytest.fixture(scope="module")
def log() -> Log:
    market = Market.generate(DEFAULT)
    return Log(market, list(simulate_history(market)))


def history(config: SimulationConfig) -> list[ImpressionLog]:
    return list(simulate_history(Market.generate(config)))


def assert_same_logs(a: list[ImpressionLog], b: list[ImpressionLog]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for f in fields(ImpressionLog):
            left, right = getattr(x, f.name), getattr(y, f.name)
            if isinstance(left, np.ndarray):
                assert np.array_equal(left, right, equal_nan=left.dtype.kind == "f"), f.name
            else:
                assert left == right


# -- determinism -----------------------------------------------------------------------------------------------
TINY = SimulationConfig(n_users=500, n_advertisers=10, n_campaigns=30, n_ads=80, n_impressions=20_003, chunk_size=6_000)


def test_same_seed_same_history_and_events() -> None:
    first, second = history(TINY), history(TINY)
    assert_same_logs(first, second)
    market = Market.generate(TINY)
    for x, y in zip(first, second, strict=True):
        bx, by = x.to_event_batch(market), y.to_event_batch(market)
        for column in bx.COLUMNS:
            left, right = getattr(bx, column), getattr(by, column)
            assert np.array_equal(left, right, equal_nan=left.dtype.kind == "f"), column


def test_different_seed_different_history() -> None:
    a, b = history(TINY)[0], history(TINY.model_copy(update={"seed": 1}))[0]
    assert not np.array_equal(a.ad_idx, b.ad_idx)
    assert not np.array_equal(a.ts, b.ts)


def test_chunks_cover_every_impression_once() -> None:
    logs = history(TINY)
    assert len(logs) == 4  # 6000 // 4 slots = 1500 requests per chunk
    idx = np.concatenate([c.impression_idx for c in logs])
    np.testing.assert_array_equal(idx, np.arange(TINY.n_impressions))
    # the last request is only partly filled
    assert np.concatenate([c.request_idx for c in logs])[-1] == TINY.n_requests - 1
    assert logs[-1].position[-1] == TINY.n_impressions % TINY.slots


# -- structure -------------------------------------------------------------------------------------------------
def test_slates_hold_distinct_eligible_ads_in_order(log: Log) -> None:
    market, slots = log.market, DEFAULT.slots
    ads = log.ad_idx.reshape(-1, slots)
    assert (np.sort(ads, axis=1)[:, 1:] != np.sort(ads, axis=1)[:, :-1]).all()
    np.testing.assert_array_equal(log.position.reshape(-1, slots), np.tile(np.arange(1, slots + 1), (len(ads), 1)))
    assert (log.user_idx.reshape(-1, slots) == log.user_idx.reshape(-1, slots)[:, :1]).all()
    assert market.eligible(log.user_idx, log.ad_idx, log.ts).all()


def test_times_span_the_window_with_a_diurnal_curve(log: Log) -> None:
    ts = log.ts
    assert ts.min() >= DEFAULT.start_ts
    assert ts.max() < DEFAULT.end_ts
    assert (np.diff(ts) >= 0).all()
    hour = (ts % 86_400) // 3600
    evening = np.isin(hour, [18, 19, 20, 21, 22]).sum()
    morning = np.isin(hour, [6, 7, 8, 9, 10]).sum()
    assert evening > 2 * morning


def test_conversions_follow_clicks(log: Log) -> None:
    clicked, converted = log.clicked, log.converted
    assert converted.sum() > 0
    assert converted.sum() <= clicked.sum()
    assert not (converted & ~clicked).any()
    assert (log.click_ts[clicked] > log.ts[clicked]).all()
    assert (log.conversion_ts[converted] > log.click_ts[converted]).all()
    assert (log.value[converted] > 0).all()
    assert np.isnan(log.value[~converted]).all()


def test_costs_follow_the_pricing_model(log: Log) -> None:
    market = log.market
    campaign = market.ad_campaign[log.ad_idx]
    pricing, bid = market.campaign_pricing[campaign], market.campaign_bid[campaign]
    np.testing.assert_allclose(log.impression_cost, np.where(pricing == CPM, bid / 1000, 0.0))
    np.testing.assert_allclose(log.click_cost, np.where((pricing == CPC) & log.clicked, bid, 0.0))
    np.testing.assert_allclose(log.conversion_cost, np.where((pricing == CPA) & log.converted, bid, 0.0))


def test_propensity_is_a_probability(log: Log) -> None:
    p = log.propensity
    assert np.isnan(p).mean() < 0.01
    p = p[~np.isnan(p)]
    assert ((p > 0) & (p <= 1)).all()


def test_propensities_sum_to_one_over_ads() -> None:
    market = Market.generate(TINY)
    policy = LoggingPolicy(market)
    ads = np.arange(market.n_ads)
    for user in range(5):
        q = policy.propensity(np.full(market.n_ads, user), ads)
        assert np.nansum(q) == pytest.approx(1.0)


def test_proposals_follow_the_propensity() -> None:
    market = Market.generate(TINY)
    policy = LoggingPolicy(market)
    user = int(np.argmax(market.user_consent))
    draws = policy.propose(np.random.default_rng(0), np.full(200_000, user))
    freq = np.bincount(draws, minlength=market.n_ads) / len(draws)
    q = policy.propensity(np.full(market.n_ads, user), np.arange(market.n_ads))
    se = np.sqrt(q * (1 - q) / len(draws))
    assert (np.abs(freq - q) < 5 * se + 1e-4).all()


def test_spent_campaigns_stop_serving() -> None:
    config = TINY.model_copy(update={"budget_factor": 0.05})
    market = Market.generate(config)
    logs = list(simulate_history(market))
    budget = np.where(np.isnan(market.campaign_total_budget), np.inf, market.campaign_total_budget)
    spend = np.zeros(market.n_campaigns)
    stopped_any = False
    for chunk in logs:
        exhausted = spend >= budget
        served = np.unique(market.ad_campaign[chunk.ad_idx])
        assert not exhausted[served].any()
        stopped_any |= bool(exhausted.any())
        spend += np.bincount(market.ad_campaign[chunk.ad_idx], weights=chunk.cost, minlength=market.n_campaigns)
    assert stopped_any


# -- realistic marginals ---------------------------------------------------------------------------------------
def test_ctr_is_realistic(log: Log) -> None:
    ctr = log.clicked.mean()
    assert 0.01 <= ctr <= 0.05
    cvr = log.converted.sum() / log.clicked.sum()
    assert 0.01 <= cvr <= 0.15


def test_ad_popularity_is_long_tailed(log: Log) -> None:
    counts = np.sort(np.bincount(log.ad_idx, minlength=log.market.n_ads))[::-1]
    assert counts[: len(counts) // 10].sum() > 0.4 * counts.sum()


def test_user_activity_is_heavy_tailed(log: Log) -> None:
    counts = np.sort(np.bincount(log.user_idx, minlength=log.market.n_users))[::-1]
    assert counts[: len(counts) // 100].sum() > 0.08 * counts.sum()  # top 1 %
    assert counts[: len(counts) // 10].sum() > 0.35 * counts.sum()  # top 10 %
    assert counts.max() > 20 * np.median(counts)


# -- the click model, seen through the log ---------------------------------------------------------------------
def test_realised_clicks_match_true_ctr_per_decile(log: Log) -> None:
    p, clicked = log.p_click, log.clicked.astype(float)
    edges = np.quantile(p, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for b in range(10):
        sel = bins == b
        expected = p[sel].mean()
        se = np.sqrt((p[sel] * (1 - p[sel])).sum()) / sel.sum()
        assert abs(clicked[sel].mean() - expected) < 4 * se, (b, clicked[sel].mean(), expected)
    overall_se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(clicked.mean() - p.mean()) < 4 * overall_se


def test_realised_conversions_match_true_cvr(log: Log) -> None:
    clicked = log.clicked
    p = log.p_conversion[clicked]
    converted = log.converted[clicked].astype(float)
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(converted.mean() - p.mean()) < 4 * se


def test_top_position_is_clicked_more(log: Log) -> None:
    ctr = [log.clicked[log.position == k].mean() for k in range(1, DEFAULT.slots + 1)]
    assert ctr[0] > ctr[2]
    assert ctr == sorted(ctr, reverse=True)


def test_interested_users_click_the_category_more(log: Log) -> None:
    market = log.market
    share = market.user_interest[log.user_idx, market.ad_category[log.ad_idx]]
    low, high = np.quantile(share, [0.25, 0.75])
    assert log.clicked[share >= high].mean() > 1.5 * log.clicked[share <= low].mean()


# -- events ----------------------------------------------------------------------------------------------------
def test_event_batch_mirrors_the_log(log: Log) -> None:
    market, chunk = log.market, log.chunks[0]
    batch = chunk.to_event_batch(market).validate()
    n, c, v = len(chunk), int(chunk.clicked.sum()), int(chunk.converted.sum())
    assert len(batch) == n + c + v
    types = batch.type
    assert (types[:n] == EventType.IMPRESSION).all()
    assert (types[n : n + c] == EventType.CLICK).all()
    assert (types[n + c :] == EventType.CONVERSION).all()
    assert batch.event_id[0] == f"sim{DEFAULT.seed}-0000000000-i"
    # a click carries the number, user, ad and request of its impression
    first_click = int(np.flatnonzero(chunk.clicked)[0])
    assert batch.event_id[n] == batch.event_id[first_click][:-2] + "-c"
    assert batch.user_id[n] == batch.user_id[first_click]
    assert batch.ad_id[n] == batch.ad_id[first_click]
    assert batch.request_id[n] == batch.request_id[first_click]
    assert batch.cost.sum() == pytest.approx(chunk.cost.sum())
    assert (batch.placement == DEFAULT.placement).all()
    assert np.isnan(batch.propensity[n:]).all()
    assert (batch.value[n + c :] > 0).all()
