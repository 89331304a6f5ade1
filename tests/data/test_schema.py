"""Validation of the ad-market records: every bad value is refused with the field named."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adrec.data.schema import (
    Ad,
    Campaign,
    Device,
    Event,
    EventBatch,
    EventType,
    Gender,
    Targeting,
    User,
    to_epoch,
)
from adrec.exceptions import AdrecError, ValidationError


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: User(user_id=""), "user.user_id"),
        (lambda: User(user_id=" u1"), "user.user_id"),
        (lambda: User(user_id="u1", age=130), "user.age"),
        (lambda: User(user_id="u1", gender="robot"), "user.gender"),
        (lambda: User(user_id="u1", device="fridge"), "user.device"),
        (lambda: User(user_id="u1", language="English"), "user.language"),
        (lambda: User(user_id="u1", city_tier=0), "user.city_tier"),
        (lambda: User(user_id="u1", favourite_colour="red"), "user.favourite_colour"),
        (lambda: Campaign(campaign_id="c", advertiser_id="a", name="n", bid=0), "campaign.bid"),
        (
            lambda: Campaign(campaign_id="c", advertiser_id="a", name="n", bid=1, pricing_model="CPX"),
            "campaign.pricing_model",
        ),
        (lambda: Campaign(campaign_id="c", advertiser_id="a", name="n", bid=float("nan")), "campaign.bid"),
        (
            lambda: Campaign(campaign_id="c", advertiser_id="a", name="n", bid=1, daily_budget=10, total_budget=5),
            "campaign",
        ),
        (
            lambda: Campaign(
                campaign_id="c",
                advertiser_id="a",
                name="n",
                bid=1,
                start=datetime(2026, 2, 1, tzinfo=UTC),
                end=datetime(2026, 1, 1, tzinfo=UTC),
            ),
            "campaign",
        ),
        (lambda: Ad(ad_id="a", campaign_id="c", image_url="ftp://x"), "ad.image_url"),
        (lambda: Ad(ad_id="a", campaign_id="c", price=-1), "ad.price"),
        (lambda: Targeting(hours={24}), "targeting.hours"),
        (lambda: Targeting(days_of_week={7}), "targeting.days_of_week"),
        (lambda: Targeting(age_min=40, age_max=30), "targeting"),
        (lambda: Targeting(interests_include={"x"}, interests_exclude={"x"}), "targeting"),
        (lambda: Event(event_id="e", type="like", user_id="u", ad_id="a", ts=0), "event.type"),
        (lambda: Event(event_id="e", type="click", user_id="u", ad_id="a", ts=0, cost=-1), "event.cost"),
        (
            lambda: Event(event_id="e", type="click", user_id="u", ad_id="a", ts=0, propensity=0),
            "event.propensity",
        ),
        (lambda: Event(event_id="e", type="click", user_id="u", ad_id="a"), "event.ts"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(factory: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        factory()  # type: ignore[operator]
    assert info.value.field.startswith(field)
    assert str(info.value).startswith(field)
    assert isinstance(info.value, AdrecError)


def test_records_are_immutable_and_enums_parse_from_strings() -> None:
    user = User(user_id="u1", gender="female", device="mobile")
    assert user.gender is Gender.FEMALE and user.device is Device.MOBILE
    with pytest.raises(Exception):  # noqa: B017, PT011  (pydantic's frozen-instance error)
        user.age = 3  # type: ignore[misc]
    assert user.model_copy(update={"age": 3}).age == 3


@pytest.mark.parametrize("value", ["click", "CLICK", " Click ", 1, EventType.CLICK])
def test_event_type_accepts_names_codes_and_members(value: object) -> None:
    assert EventType.parse(value) is EventType.CLICK  # type: ignore[arg-type]


def test_event_timestamp_from_datetime_is_utc_epoch() -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert Event(event_id="e", type=0, user_id="u", ad_id="a", ts=when).ts == when.timestamp()
    assert to_epoch(datetime(2026, 3, 1, 12, 0)) == when.timestamp()  # naive = UTC


def test_open_targeting_restricts_nothing() -> None:
    assert Targeting().is_open()
    assert not Targeting(devices={Device.MOBILE}).is_open()


@given(n=st.integers(0, 50), bad_row=st.integers(0, 49))
def test_event_batch_validate_names_the_first_bad_row(n: int, bad_row: int) -> None:
    batch = EventBatch(
        event_id=np.array([f"e{i}" for i in range(n)], dtype=object),
        type=np.zeros(n, dtype=np.int8),
        user_id=np.full(n, "u", dtype=object),
        ad_id=np.full(n, "a", dtype=object),
        ts=np.zeros(n),
    )
    assert batch.validate() is batch
    if bad_row < n:
        batch.ts[bad_row] = np.inf
        with pytest.raises(ValidationError, match=rf"events\[{bad_row}\]\.ts"):
            batch.validate()


def test_event_batch_from_records_round_trips_rows() -> None:
    events = [
        Event(event_id="e1", type="impression", user_id="u", ad_id="a", ts=1.0, placement="p", value=4.0),
        Event(event_id="e2", type="click", user_id="u", ad_id="a", ts=2.0, cost=0.3, propensity=0.5),
    ]
    batch = EventBatch.from_events(events).validate()
    assert batch.rows() == [
        ("e1", 0, "u", "a", 1.0, "p", 0.0, None, 4.0, None),
        ("e2", 1, "u", "a", 2.0, None, 0.3, None, None, 0.5),
    ]
    assert len(EventBatch.concat([batch, batch.take(slice(0, 1))])) == 3


def test_event_batch_columns_must_have_equal_length() -> None:
    with pytest.raises(ValidationError, match=r"events\.ts"):
        EventBatch(
            event_id=np.array(["a", "b"], dtype=object),
            type=np.zeros(2, dtype=np.int8),
            user_id=np.array(["u", "u"], dtype=object),
            ad_id=np.array(["a", "a"], dtype=object),
            ts=np.zeros(3),
        )
