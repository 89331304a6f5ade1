"""The simulated market: determinism, the ground-truth models, targeting, records and save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adrec.data.schema import CampaignStatus, Gender, PricingModel
from adrec.exceptions import AdrecError, ConfigError
from adrec.simulate import Market, SimulationConfig
from adrec.simulate.market import CPA, CPC, CPM
from adrec.simulate.records import (
    ad_records,
    advertiser_records,
    age_band,
    campaign_records,
    user_records,
)
from adrec.simulate.vocab import CATEGORIES, GENDERS

SMALL = SimulationConfig(n_users=3_000, n_advertisers=30, n_campaigns=120, n_ads=600, n_impressions=0, seed=11)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market.generate(SMALL)


def assert_same_arrays(a: Market, b: Market) -> None:
    left, right = a.arrays(), b.arrays()
    assert left.keys() == right.keys()
    for name, value in left.items():
        assert value.dtype == right[name].dtype, name
        assert np.array_equal(value, right[name], equal_nan=value.dtype.kind == "f"), name


# -- config ----------------------------------------------------------------------------------------------------
def test_config_defaults_are_a_small_demo() -> None:
    cfg = SimulationConfig()
    assert cfg.n_users <= 10_000
    assert cfg.n_ads <= 1_000
    assert cfg.n_impressions <= 500_000
    assert cfg.n_categories == len(CATEGORIES)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_ads": 10, "n_campaigns": 20, "n_advertisers": 5}, "n_ads"),
        ({"n_campaigns": 5, "n_advertisers": 6}, "n_campaigns"),
        ({"n_categories": 21}, "n_categories"),
        ({"explore": 1.5}, "explore"),
        ({"n_user": 5}, "n_user"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        SimulationConfig(**kwargs)


def test_config_naive_start_is_utc() -> None:
    from datetime import datetime

    cfg = SimulationConfig(start=datetime(2025, 3, 1))
    assert cfg.start_ts == datetime.fromisoformat("2025-03-01T00:00:00+00:00").timestamp()
    assert cfg.end_ts - cfg.start_ts == cfg.days * 86_400


# -- determinism -----------------------------------------------------------------------------------------------
def test_same_seed_same_market(market: Market) -> None:
    assert_same_arrays(market, Market.generate(SMALL))


def test_different_seed_different_market(market: Market) -> None:
    other = Market.generate(SMALL.model_copy(update={"seed": 12}))
    assert not np.array_equal(market.user_interest, other.user_interest)
    assert not np.array_equal(market.ad_popularity, other.ad_popularity)


def test_user_side_does_not_depend_on_ad_side_sizes(market: Market) -> None:
    bigger = Market.generate(SMALL.model_copy(update={"n_ads": 900}))
    assert np.array_equal(market.user_interest, bigger.user_interest)
    assert np.array_equal(market.campaign_bid, bigger.campaign_bid)


# -- shapes and marginals of the truth ---------------------------------------------------------------------------
def test_shapes_and_ranges(market: Market) -> None:
    u, a, c, k = SMALL.n_users, SMALL.n_ads, SMALL.n_campaigns, SMALL.n_categories
    assert market.user_interest.shape == (u, k)
    assert market.user_latent.shape == (u, SMALL.latent_dim)
    assert market.ad_latent.shape == (a, SMALL.latent_dim)
    assert market.campaign_bid.shape == (c,)
    np.testing.assert_allclose(market.user_interest.sum(axis=1), 1.0, rtol=1e-4)
    assert market.user_activity.sum() == pytest.approx(1.0)
    assert market.ad_popularity.sum() == pytest.approx(1.0)
    assert market.user_age.min() >= 16
    assert market.user_age.max() <= 85
    assert (market.ad_price > 0).all()
    assert (market.campaign_bid > 0).all()
    assert set(np.unique(market.campaign_pricing)) <= {CPC, CPM, CPA}
    # every advertiser runs a campaign, every campaign has an ad
    assert len(np.unique(market.campaign_advertiser)) == SMALL.n_advertisers
    assert len(np.unique(market.ad_campaign)) == SMALL.n_campaigns


def test_consent_rate_and_sparse_interests(market: Market) -> None:
    assert 0.92 < market.user_consent.mean() < 0.98
    # Dirichlet with a low concentration: a typical user puts most of the mass on a few categories.
    top3 = np.sort(market.user_interest, axis=1)[:, -3:].sum(axis=1)
    assert np.median(top3) > 0.6


def test_interests_follow_demographics(market: Market) -> None:
    cosmetics = [c.name for c in CATEGORIES].index("cosmetics")
    female = market.user_gender == GENDERS.index(Gender.FEMALE)
    male = market.user_gender == GENDERS.index(Gender.MALE)
    assert market.user_interest[female, cosmetics].mean() > 1.5 * market.user_interest[male, cosmetics].mean()


def test_activity_and_popularity_are_heavy_tailed(market: Market) -> None:
    activity = np.sort(market.user_activity)[::-1]
    assert activity[: len(activity) // 100].sum() > 0.05  # top 1 % of users
    popularity = np.sort(market.ad_popularity)[::-1]
    assert popularity[: len(popularity) // 10].sum() > 0.4  # top 10 % of ads


def test_some_campaigns_targeted_some_open(market: Market) -> None:
    targeted = (
        (market.campaign_age_min > 0)
        | (market.campaign_genders != 0)
        | (market.campaign_devices != 0)
        | (market.campaign_tiers != 0)
        | (market.campaign_regions != 0)
        | (market.campaign_interest >= 0)
    )
    assert 0.2 < targeted.mean() < 0.5
    evergreen = np.isnan(market.campaign_total_budget)
    assert evergreen.any()
    assert not targeted[evergreen].any()


# -- the click model --------------------------------------------------------------------------------------------
def test_true_ctr_batch_equals_scalar(market: Market) -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(market.n_users, size=50)
    ads = rng.integers(market.n_ads, size=50)
    pos = rng.integers(1, 5, size=50)
    batch = market.true_ctr(users, ads, pos)
    assert batch.shape == (50,)
    scalar = [float(market.true_ctr(int(u), int(a), int(k))) for u, a, k in zip(users, ads, pos, strict=True)]
    np.testing.assert_allclose(batch, scalar)
    assert ((batch > 0) & (batch < 1)).all()


def test_true_ctr_broadcasts(market: Market) -> None:
    grid = market.true_ctr(np.arange(4)[:, None], np.arange(6)[None, :], 2)
    assert grid.shape == (4, 6)
    assert grid[1, 3] == pytest.approx(float(market.true_ctr(1, 3, 2)))


def test_position_bias_lowers_ctr(market: Market) -> None:
    users, ads = np.arange(100), np.arange(100)
    p1, p3 = market.true_ctr(users, ads, 1), market.true_ctr(users, ads, 3)
    assert (p1 > p3).all()
    logit_gap = market.click_logit(users, ads, 1) - market.click_logit(users, ads, 3)
    np.testing.assert_allclose(logit_gap, SMALL.position_decay * np.log(3))


def test_positions_are_one_based(market: Market) -> None:
    with pytest.raises(ValueError, match="1-based"):
        market.true_ctr(0, 0, 0)


def test_affinity_rises_with_interest(market: Market) -> None:
    ad = 0
    category = int(market.ad_category[ad])
    share = market.user_interest[:, category]
    aff = market.affinity(np.arange(market.n_users), ad)
    order = np.argsort(share)
    assert np.all(np.diff(aff[order]) >= -1e-9)
    # 0 for a user whose interest equals the uniform share
    uniform = Market.generate(SMALL)
    uniform.user_interest[0] = 1.0 / SMALL.n_categories
    assert float(uniform.affinity(0, ad)) == pytest.approx(0.0, abs=1e-6)


def test_cvr_and_value(market: Market) -> None:
    cvr = market.true_cvr(np.arange(200), np.arange(200))
    assert ((cvr > 0) & (cvr < 0.5)).all()
    value = market.expected_value(np.arange(10))
    assert (value > 0).all()
    np.testing.assert_allclose(value, market.conversion_value(np.arange(10)) * 1.25)


# -- targeting --------------------------------------------------------------------------------------------------
def test_eligibility_follows_each_rule(market: Market) -> None:
    users = np.arange(market.n_users)
    for campaign in range(market.n_campaigns):
        ad = int(np.flatnonzero(market.ad_campaign == campaign)[0])
        ok = market.eligible(users, ad)
        age = market.user_age
        assert not ok[(age < market.campaign_age_min[campaign]) | (age > market.campaign_age_max[campaign])].any()
        if market.campaign_genders[campaign]:
            other = (market.campaign_genders[campaign] >> market.user_gender.astype(np.int64)) & 1 == 0
            assert not ok[other].any()
        if market.campaign_interest[campaign] >= 0:
            bit = np.int64(1) << int(market.campaign_interest[campaign])
            declared = (market.declared_interests & bit) != 0
            assert not ok[~market.user_consent].any()
            assert not ok[~declared].any()
        if not (
            market.campaign_age_min[campaign]
            or market.campaign_genders[campaign]
            or market.campaign_devices[campaign]
            or market.campaign_tiers[campaign]
            or market.campaign_regions[campaign]
            or market.campaign_interest[campaign] >= 0
        ):
            assert ok.all()


def test_eligibility_checks_the_schedule(market: Market) -> None:
    ads = np.arange(market.n_ads)
    c = market.ad_campaign
    before = market.eligible(0, ads, market.campaign_start[c] - 1)
    assert not before.any()
    at_start = market.eligible(0, ads, market.campaign_start[c])
    assert np.array_equal(at_start, market.eligible(0, ads))


# -- creative text and records ----------------------------------------------------------------------------------
def test_creative_text_uses_brand_and_category(market: Market) -> None:
    for ad in range(20):
        title, body = market.creative(ad)
        brand = market.advertiser_names[int(market.ad_advertiser[ad])]
        category = CATEGORIES[int(market.ad_category[ad])]
        assert title
        assert title[0].isupper()
        assert brand in title + body
        assert any(noun in title + body for noun in category.nouns)
        assert "{" not in title + body


def test_records_are_valid_and_match_the_truth(market: Market) -> None:
    users = list(user_records(market, batch_size=700))
    assert len(users) == market.n_users
    assert len({u.user_id for u in users}) == market.n_users
    u = users[5]
    assert u.age == int(market.user_age[5])
    assert u.age_band == age_band(u.age)
    assert set(u.interests) <= set(market.category_names)

    advertisers = list(advertiser_records(market))
    assert len({a.name for a in advertisers}) == market.n_advertisers

    campaigns = list(campaign_records(market))
    for c, record in enumerate(campaigns):
        assert (
            record.pricing_model
            == [PricingModel.CPC, PricingModel.CPM, PricingModel.CPA][int(market.campaign_pricing[c])]
        )
        interest = int(market.campaign_interest[c])
        expected = {market.category_names[interest]} if interest >= 0 else set()
        assert set(record.targeting.interests_include) == expected
        if np.isnan(market.campaign_total_budget[c]):
            assert record.total_budget is None
            assert record.targeting.is_open()

    ads = list(ad_records(market))
    assert [a.ad_id for a in ads] == market.ad_ids().tolist()
    assert ads[3].category == market.category_names[int(market.ad_category[3])]
    assert ads[3].price == pytest.approx(float(market.ad_price[3]))
    assert (ads[3].title, ads[3].body) == market.creative(3)


def test_exhausted_campaigns_are_ended() -> None:
    market = Market.generate(SMALL)
    exhausted = np.zeros(market.n_campaigns, dtype=bool)
    exhausted[[1, 2]] = True
    records = list(campaign_records(market, exhausted=exhausted, only=[1, 2]))
    assert [r.status for r in records] == [CampaignStatus.ENDED, CampaignStatus.ENDED]
    ads = list(ad_records(market, exhausted=exhausted, only=np.flatnonzero(exhausted[market.ad_campaign])))
    assert ads
    assert {a.status for a in ads} == {CampaignStatus.ENDED}


# -- save / load ------------------------------------------------------------------------------------------------
def test_save_load_round_trip(market: Market, tmp_path: Path) -> None:
    market.save(tmp_path / "truth")
    loaded = Market.load(tmp_path / "truth")
    assert loaded.config == market.config
    assert_same_arrays(market, loaded)
    users, ads = np.arange(30), np.arange(30)
    np.testing.assert_array_equal(loaded.true_ctr(users, ads, 2), market.true_ctr(users, ads, 2))
    assert loaded.creative(7) == market.creative(7)
    meta = json.loads((tmp_path / "truth" / "market.json").read_text())
    assert meta["sizes"]["users"] == market.n_users


def test_load_refuses_missing_or_foreign_files(market: Market, tmp_path: Path) -> None:
    with pytest.raises(AdrecError, match=r"market\.json"):
        Market.load(tmp_path)
    market.save(tmp_path)
    meta_path = tmp_path / "market.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AdrecError, match="version"):
        Market.load(tmp_path)
