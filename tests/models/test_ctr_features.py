"""The click model's feature spec: hashing, the parts, the crosses, and one encoding for training and serving."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from adrec.data.profile import Behaviour, price_band
from adrec.data.schema import Ad, Campaign, User
from adrec.exceptions import ValidationError
from adrec.models.ctr import DENSE, FIELDS, FeatureSpec
from adrec.models.ctr.features import AD_FIELDS, USER_FIELDS
from adrec.profiles.builder import ProfileBuilder
from adrec.simulate.config import SimulationConfig
from adrec.simulate.ctr import simulated_click_dataset
from adrec.simulate.history import simulate_history
from adrec.simulate.market import Market
from adrec.simulate.records import ad_records, campaign_records, user_records

SPEC = FeatureSpec(hash_bits=18)
SLOTS = SPEC.slot_fields


@pytest.fixture(scope="module")
def market() -> Market:
    return Market.generate(
        SimulationConfig(n_users=300, n_advertisers=10, n_campaigns=20, n_ads=60, n_impressions=30_000, seed=4)
    )


@pytest.fixture(scope="module")
def parts(market: Market) -> tuple[list[User], list[Behaviour | None], list[Ad], dict[str, Campaign]]:
    users = list(user_records(market))
    ads = list(ad_records(market))
    meta = {a.ad_id: (a.category, a.brand, price_band(a.price)) for a in ads}
    log = next(iter(simulate_history(market)))
    behaviours = ProfileBuilder().aggregate(log.to_event_batch(market), meta)
    campaigns = {c.campaign_id: c for c in campaign_records(market)}
    return users, [behaviours.get(u.user_id) for u in users], ads, campaigns


def test_buckets_are_stable_per_field_and_leave_zero_for_padding() -> None:
    a = SPEC.bucket("brand", "Acme")
    assert a == FeatureSpec(hash_bits=18).bucket("brand", "Acme")
    assert 1 <= a < 1 << 18
    assert SPEC.bucket("category", "Acme") != a  # the field salts the hash
    assert SPEC.bucket("brand", None) == SPEC.bucket("brand", "") == SPEC.bucket("brand", "?")
    assert len(SLOTS) == sum(n for _, n in FIELDS)
    with pytest.raises(ValidationError, match="hash_bits"):
        FeatureSpec(hash_bits=40)


def test_user_part_follows_the_record_and_needs_consent_for_behaviour(parts: tuple) -> None:  # type: ignore[type-arg]
    users, behaviours, _, _ = parts
    row = next(i for i, b in enumerate(behaviours) if b is not None and users[i].consent and users[i].interests)
    user, behaviour = users[row], behaviours[row]
    assert behaviour is not None
    block = SPEC.users([user], [behaviour])
    user_slots = SLOTS[: sum(n for _, n in USER_FIELDS)]
    ids = dict(zip(user_slots, block.ids[0].tolist(), strict=False))  # the first slot of each field
    assert ids["user"] == SPEC.bucket("user", user.user_id)
    assert ids["device"] == SPEC.bucket("device", user.device.value)
    interests = block.ids[0][[i for i, f in enumerate(user_slots) if f == "interests"]].tolist()
    expected = [SPEC.bucket("interests", t) for t in sorted(user.interests)]
    assert interests == expected + [0] * (5 - len(expected))
    top = [v for v, _, _ in behaviour.top_interests("category", 3)]
    assert block.ids[0][user_slots.index("top_category")] == SPEC.bucket("top_category", top[0])
    assert block.dense[0, DENSE.index("has_behaviour")] == 1.0
    assert block.dense[0, DENSE.index("log_impressions")] == pytest.approx(np.log1p(behaviour.impressions))

    withdrawn = SPEC.users([user.model_copy(update={"consent": False})], [behaviour])
    assert (withdrawn.dense == 0).all()
    # Without consent no interests at all, declared ones included (targeting gives such a user none either).
    assert user.interests and (withdrawn.ids[0][user_slots.index("interests") :] == 0).all()
    assert len(withdrawn.declared) == 0


def test_cross_features_are_the_users_affinity_for_the_ads_values(parts: tuple) -> None:  # type: ignore[type-arg]
    users, behaviours, ads, campaigns = parts
    rows = [i for i, b in enumerate(behaviours) if b is not None and users[i].consent][:20]
    ub = SPEC.users([users[i] for i in rows], [behaviours[i] for i in rows])
    ab = SPEC.ads(ads, campaigns)
    u, a = np.meshgrid(np.arange(len(rows)), np.arange(len(ads)), indexing="ij")
    x = SPEC.assemble(ub, u.ravel(), ab, a.ravel(), SPEC.context([0.0], "feed"), 1)
    hits = lifted = matched = 0
    for j, (ui, ai) in enumerate(zip(u.ravel().tolist(), a.ravel().tolist(), strict=True)):
        behaviour, ad = behaviours[rows[ui]], ads[ai]
        assert behaviour is not None
        want_cat = behaviour.affinities("category").get(ad.category or "", 0.0)
        want_brand = behaviour.affinities("brand").get(ad.brand or "", 0.0)
        want_price = behaviour.affinities("price").get(price_band(ad.price) or "", 0.0)
        lifts = []
        for dimension, value in (("category", ad.category), ("brand", ad.brand), ("price", price_band(ad.price))):
            stats = behaviour.interests.get(dimension, {}).get(value or "")
            ctr = behaviour.ctr
            # (clicks + 20 ctr) / (impressions + 20) against ctr, written out; 0 for a value never shown
            lifts.append(0.0 if stats is None else np.log((stats.clicks + 20 * ctr) / (stats.impressions + 20) / ctr))
        declared = float(ad.category in users[rows[ui]].interests)
        got = x.dense[j, DENSE.index("affinity_category") :]
        np.testing.assert_allclose(got, [want_cat, want_brand, want_price, *lifts, declared], rtol=1e-5, atol=1e-6)
        hits += want_cat > 0
        lifted += lifts[0] > 0
        matched += declared
    assert hits > 50 and lifted > 5 and matched > 20  # the check saw real values, not only zeros


def test_declared_interest_matches_like_targeting_and_needs_consent() -> None:
    """A category tag matches the ad's category, ``brand:``/``price:`` tags its brand and price band; without
    consent a user has no interests (targeting gives them none)."""
    base = {"user_id": "u1", "gender": "female", "device": "mobile"}
    users = [
        User(**base, interests=["shoes"]),
        User(**base, interests=["brand:Acme"]),
        User(**base, interests=["price:10-25"]),
        User(**base, interests=["Acme", "beauty"]),
        User(**base, interests=["shoes"], consent=False),
    ]
    campaign = Campaign(campaign_id="c1", advertiser_id="v1", name="c", bid=1.0)
    ad = Ad(ad_id="a1", campaign_id="c1", title="t", category="shoes", brand="Acme", price=20.0)
    ub, ab = SPEC.users(users, [None] * 5), SPEC.ads([ad], {"c1": campaign})
    x = SPEC.assemble(ub, np.arange(5), ab, np.zeros(5, dtype=np.int64), SPEC.context([0.0], "feed"), 1)
    assert price_band(20.0) == "10-25"
    assert x.dense[:, DENSE.index("declared_interest")].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert (x.dense[:, DENSE.index("click_lift_category")] == 0).all()  # no behaviour: no evidence


def test_context_encodes_the_utc_hour_weekday_and_placement() -> None:
    monday = datetime(2025, 1, 6, 13, 30, tzinfo=UTC).timestamp()
    ctx = SPEC.context([monday, monday + 86_400 * 5 + 3600], ["feed", None])
    assert ctx[0].tolist() == [SPEC.bucket("hour", 13), SPEC.bucket("weekday", 0), SPEC.bucket("placement", "feed")]
    assert ctx[1].tolist() == [SPEC.bucket("hour", 14), SPEC.bucket("weekday", 5), SPEC.bucket("placement", None)]


def test_a_batch_encodes_each_triple_as_serving_encodes_it_alone(parts: tuple) -> None:  # type: ignore[type-arg]
    """The trainer encodes every user and ad once and assembles rows; serving encodes one user against the
    catalogue's ads with one context row. Both must give the same features for the same triple."""
    users, behaviours, ads, campaigns = parts
    rng = np.random.default_rng(0)
    n = 400
    u, a = rng.integers(0, len(users), n), rng.integers(0, len(ads), n)
    ts = 1.7e9 + rng.integers(0, 86_400 * 7, n)
    pos = rng.integers(1, 5, n)
    batch = SPEC.assemble(SPEC.users(users, behaviours), u, SPEC.ads(ads, campaigns), a, SPEC.context(ts, "feed"), pos)
    catalogue = SPEC.ads(ads, campaigns)
    for j in range(n):
        one = SPEC.users([users[u[j]]], [behaviours[u[j]]])
        alone = SPEC.assemble(one, 0, catalogue, [a[j]], SPEC.context([ts[j]], "feed"), pos[j])
        np.testing.assert_array_equal(alone.ids[0], batch.ids[j])
        np.testing.assert_array_equal(alone.dense[0], batch.dense[j])
        assert alone.position[0] == batch.position[j]


def test_ads_without_a_known_campaign_get_the_missing_value(parts: tuple) -> None:  # type: ignore[type-arg]
    _, _, ads, _ = parts
    block = SPEC.ads(ads[:1], {})
    ad_slots = [f for f, _ in AD_FIELDS]
    assert block.ids[0][ad_slots.index("advertiser")] == SPEC.bucket("advertiser", None)


def test_simulated_dataset_splits_by_time_after_the_profile_cut(market: Market) -> None:
    data = simulated_click_dataset(market, SPEC, profile_share=0.3, valid_share=0.1, test_share=0.2)
    total = len(data.train) + len(data.valid) + len(data.test)
    cfg = market.config
    assert 0.55 * cfg.n_impressions < total < 0.85 * cfg.n_impressions  # the impressions after the cut
    assert data.test_truth is not None and ((data.test_truth > 0) & (data.test_truth < 1)).all()
    assert len(data.test_users) == len(data.test) == len(data.test_fields["advertiser"])
    assert 0.0 < data.base_rate < 0.2
    # Test clicks follow the truth: the oracle's probabilities predict them (a broken alignment would not).
    assert abs(data.test_truth.sum() - data.test.labels.sum()) < 4 * np.sqrt(data.test_truth.sum())


def test_profile_snapshots_of_a_chunked_history_equal_a_profile_of_all_events_before_each_boundary(
    market: Market,
) -> None:
    """A simulated history comes in chunks whose clicks are later than the next chunk's first impressions: the
    snapshots taken in one pass over the chunks must still be the profiles of exactly the events before each
    boundary."""
    from adrec.data.schema import EventBatch

    chunked = Market.generate(market.config.model_copy(update={"chunk_size": 3_000}))
    logs = [log.to_event_batch(chunked) for log in simulate_history(chunked)]
    assert len(logs) > 1 and any(a.ts.max() > b.ts.min() for a, b in itertools.pairwise(logs))  # chunks overlap
    meta = {ad.ad_id: (ad.category, ad.brand, price_band(ad.price)) for ad in ad_records(chunked)}
    cfg = chunked.config
    boundaries = [cfg.start_ts + f * (cfg.end_ts - cfg.start_ts) for f in (0.3, 0.55, 0.9)]
    builder = ProfileBuilder()
    snapshots = list(builder.snapshots(iter(logs), boundaries, lambda ids: {a: meta[a] for a in ids.tolist()}))
    everything = EventBatch(**{c: np.concatenate([getattr(b, c) for b in logs]) for c in EventBatch.COLUMNS})
    assert len(snapshots) == len(boundaries)
    for boundary, snapshot in zip(boundaries, snapshots, strict=True):
        direct = builder.aggregate(everything.take(np.flatnonzero(everything.ts < boundary)), meta)
        assert snapshot.keys() == direct.keys()
        for user in list(direct)[:50]:
            a, b = snapshot[user], direct[user]
            assert (a.impressions, a.clicks, a.conversions, a.last_ts) == (
                b.impressions,
                b.clicks,
                b.conversions,
                b.last_ts,
            )
            assert a.affinities("category") == pytest.approx(b.affinities("category"), rel=1e-9)
    assert sum(b.impressions for b in snapshots[0].values()) < sum(b.impressions for b in snapshots[-1].values())


def test_simulated_examples_see_the_profiles_of_their_own_day(market: Market) -> None:
    once = simulated_click_dataset(market, SPEC, profile_every_s=None)
    daily = simulated_click_dataset(market, SPEC)  # a profile run a day
    activity = DENSE.index("log_impressions")
    # The same examples in the same order; later days see more of each user's history than the cut alone.
    np.testing.assert_array_equal(once.test.labels, daily.test.labels)
    grown = daily.test.dense[:, activity] - once.test.dense[:, activity]
    assert (grown >= -1e-6).all() and (grown > 0).mean() > 0.5
