"""The decay, the aggregation of events into behaviour, and merging: known answers and a naive reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profile_helpers import ADS, DAY, T0, batch

from adrec.data.schema import EventType, User
from adrec.exceptions import ValidationError
from adrec.profiles import Behaviour, Profile, ProfileBuilder, price_band

IMP, CLK, CONV = EventType.IMPRESSION, EventType.CLICK, EventType.CONVERSION
META = {a.ad_id: (a.category, a.brand, price_band(a.price)) for a in ADS}


@pytest.mark.parametrize(
    ("price", "band"),
    [(None, None), (0.0, "0-10"), (9.99, "0-10"), (10.0, "10-25"), (99.5, "50-100"), (1000.0, "1000+"), (5e6, "1000+")],
)
def test_price_bands_are_fixed_with_inclusive_lower_edges(price: float | None, band: str | None) -> None:
    assert price_band(price) == band


def test_one_half_life_halves_a_contribution() -> None:
    builder = ProfileBuilder(half_life_days=14)
    h = 14 * DAY
    # A click on cosmetics, then an impression of shoes one half-life later (the reference time).
    b = builder.aggregate(batch([("ann", "cos1", CLK, T0), ("ann", "shoe", IMP, T0 + h)]), META)["ann"]
    assert b.ref_ts == b.last_ts == T0 + h
    assert b.first_ts == T0
    cos, shoe = b.interests["category"]["cosmetics"], b.interests["category"]["shoes"]
    assert cos.score == pytest.approx(0.5)  # click weight 1, one half-life old
    assert shoe.score == pytest.approx(0.1)  # impression weight 0.1, fresh
    assert b.affinities("category") == pytest.approx({"cosmetics": 0.5 / 0.6, "shoes": 0.1 / 0.6})
    assert list(b.affinities("category")) == ["cosmetics", "shoes"]
    assert (cos.clicks, cos.impressions, cos.last_ts) == (1, 0, T0)
    assert b.decayed == pytest.approx((1.0, 0.5, 0.0))
    assert (b.impressions, b.clicks, b.conversions) == (1, 1, 0)
    assert b.ctr == pytest.approx((1 + 0.02 * 100) / (1 + 100))
    assert b.interests["brand"].keys() == {"Glow", "Stride"}
    assert b.interests["price"].keys() == {"10-25", "50-100"}
    hour_click, hour_imp = int(T0 // 3600 % 24), int((T0 + h) // 3600 % 24)
    expected = np.zeros(24)
    expected[hour_click] += 0.5
    expected[hour_imp] += 0.1
    assert b.hours == pytest.approx(tuple(expected))


def test_ads_without_metadata_count_in_statistics_only() -> None:
    b = ProfileBuilder().aggregate(batch([("ann", "bare", CLK, T0), ("ann", "gone", CONV, T0)]), META)["ann"]
    assert (b.clicks, b.conversions) == (1, 1)
    assert b.interests == {}
    assert b.affinities("category") == {}
    assert sum(b.active_hours()) == pytest.approx(1.0)


def _naive(rows: list[tuple[str, str, EventType, float]], half_life: float) -> dict[str, dict[str, float]]:
    """The decay definition, summed event by event: category scores at each user's latest event time."""
    weight = {IMP: 0.1, CLK: 1.0, CONV: 3.0}
    out: dict[str, dict[str, float]] = {}
    for user in {r[0] for r in rows}:
        mine = [r for r in rows if r[0] == user]
        ref = max(r[3] for r in mine)
        scores: dict[str, float] = {}
        for _, ad, kind, ts in mine:
            category = META.get(ad, (None, None, None))[0]
            if category is not None:
                scores[category] = scores.get(category, 0.0) + weight[kind] * 2 ** (-(ref - ts) / half_life)
        out[user] = scores
    return out


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["ann", "bob", "dan"]),
        st.sampled_from(["cos1", "cos2", "shoe", "bare", "gone"]),
        st.sampled_from([IMP, CLK, CONV]),
        st.floats(T0, T0 + 90 * DAY),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows=events_strategy, half_life_days=st.floats(0.5, 60))
def test_aggregate_matches_the_definition_summed_event_by_event(
    rows: list[tuple[str, str, EventType, float]], half_life_days: float
) -> None:
    got = ProfileBuilder(half_life_days=half_life_days).aggregate(batch(rows), META)
    want = _naive(rows, half_life_days * DAY)
    assert got.keys() == want.keys()
    for user, scores in want.items():
        have = {v: s.score for v, s in got[user].interests.get("category", {}).items()}
        assert have.keys() == scores.keys()
        for v, s in scores.items():
            assert have[v] == pytest.approx(s, rel=1e-12, abs=1e-300)


@settings(max_examples=40, deadline=None)
@given(rows=events_strategy, cut=st.integers(0, 60))
def test_merge_is_symmetric_and_equals_aggregating_together(
    rows: list[tuple[str, str, EventType, float]], cut: int
) -> None:
    rows = [("ann", *r[1:]) for r in rows] + [("ann", "cos1", CLK, T0)]
    cut = max(1, min(cut, len(rows) - 1))
    builder = ProfileBuilder(half_life_days=7)
    whole = builder.aggregate(batch(rows), META)["ann"]
    a = builder.aggregate(batch(rows[:cut]), META)["ann"]
    b = builder.aggregate(batch(rows[cut:]), META)["ann"]
    for merged in (builder.merge(a, b), builder.merge(b, a)):
        assert (merged.impressions, merged.clicks, merged.conversions) == (
            whole.impressions,
            whole.clicks,
            whole.conversions,
        )
        assert merged.ref_ts == whole.ref_ts
        assert merged.decayed == pytest.approx(whole.decayed, rel=1e-9)
        assert merged.affinities("brand") == pytest.approx(whole.affinities("brand"), rel=1e-9)


def test_invalid_parameters_and_records_are_refused() -> None:
    with pytest.raises(ValidationError, match="half_life_days"):
        ProfileBuilder(half_life_days=0).aggregate(batch([("ann", "cos1", CLK, T0)]), META)
    with pytest.raises(ValidationError, match="half_life_days"):
        ProfileBuilder(half_life_days=0).rebuild(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="ctr_prior"):
        ProfileBuilder(ctr_prior=2).rebuild(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="click_weight"):
        ProfileBuilder(click_weight=-1).rebuild(None)  # type: ignore[arg-type]
    good = ProfileBuilder().aggregate(batch([("ann", "cos1", CLK, T0)]), META)["ann"]
    with pytest.raises(ValidationError, match="hours"):
        Behaviour(**{**good.__dict__, "hours": (0.0,) * 23})
    with pytest.raises(ValidationError, match="dimensions"):
        Behaviour(**{**good.__dict__, "interests": {"colour": {}}})
    with pytest.raises(ValidationError, match="embedding"):
        Profile(User(user_id="ann"), embedding=(1.0, math.nan))
    assert Profile(User(user_id="ann")).with_embedding([1, 2]).embedding == (1.0, 2.0)
