"""Click datasets from the store's ledger (``store:URL``): served ads labelled by their clicks, profiles from the
events before the cut only, the slot each ad was shown in."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from adrec.data.schema import Ad, Advertiser, Campaign, EventType, Gender, PricingModel, User
from adrec.exceptions import ValidationError
from adrec.feedback.clicks import served_click_dataset
from adrec.models.ctr import DENSE, FeatureSpec
from adrec.store import Delivery, Feedback, Store, open_store

T = 1.7e9
HAS_BEHAVIOUR, CATEGORY = DENSE.index("has_behaviour"), DENSE.index("affinity_category")


@pytest.fixture
def store(tmp_path: object) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/s.db") as s:
        s.upsert_users(
            [User(user_id="u1", gender=Gender.FEMALE, age=30), User(user_id="u3", gender=Gender.MALE, age=40)]
        )
        s.upsert_advertisers([Advertiser(advertiser_id="adv1", name="Acme")])
        s.upsert_campaigns(
            [
                Campaign(
                    campaign_id="c1",
                    advertiser_id="adv1",
                    name="Spring",
                    pricing_model=PricingModel.CPC,
                    bid=1.0,
                    start=datetime(2023, 1, 1, tzinfo=UTC),
                )
            ]
        )
        s.upsert_ads(
            [
                Ad(ad_id="a1", campaign_id="c1", title="Red shoes", category="shoes", brand="Acme", price=59.0),
                Ad(ad_id="a2", campaign_id="c1", title="Blue bag", category="bags", brand="Bagco", price=20.0),
            ]
        )
        yield s


#: (seconds after T, user, ad, position or None, clicked, converted). The span is 0..9 s: with profile_share 0.3
#: the cut is at 2.7 s, so the first three are profile history only.
SERVED = [
    (0, "u1", "a1", 1, True, False),  # u1 clicks shoes before the cut: u1's later examples know it
    (1, "u1", "a2", 2, False, False),
    (2, "u2", "a2", None, False, False),  # a token without a slot
    (3, "u1", "a1", 1, True, True),
    (4, "u1", "a2", 2, False, False),
    (5, "u3", "a1", 1, True, False),  # u3's first click is after the cut: u3 never has a behaviour profile
    (6, "u3", "a2", 3, False, False),
    (7, "u2", "a1", None, True, True),  # an anonymous user (no record) and no slot: position 1
    (8, "u3", "a1", 1, False, False),
    (9, "u1", "a2", 2, True, False),
]


def _serve(store: Store) -> None:
    feedback = []
    for i, (dt, user, ad, position, clicked, converted) in enumerate(SERVED):
        d = Delivery(f"r{i}-1", user, ad, "c1", "adv1", "CPC", 0.5, T + dt, "feed", position=position)
        feedback.append(Feedback(f"e{i}-i", EventType.IMPRESSION, T + dt, d))
        if clicked:
            feedback.append(Feedback(f"e{i}-c", EventType.CLICK, T + dt + 0.1, d))
        if converted:
            feedback.append(Feedback(f"e{i}-v", EventType.CONVERSION, T + dt + 0.2, d, 10.0))
    assert store.apply_feedback(feedback).rejected == []


def test_examples_are_the_ads_served_after_the_cut_with_their_clicks_slots_and_earlier_profiles(store: Store) -> None:
    _serve(store)
    data = served_click_dataset(store, FeatureSpec(hash_bits=12), valid_share=0.3, test_share=0.2)
    # Examples 3..9 s (span 6 s): test from 7.8 s, validation from 6.0 s.
    assert (len(data.train), len(data.valid), len(data.test)) == (3, 2, 2)
    later = SERVED[3:]
    labels = np.concatenate([data.train.labels, data.valid.labels, data.test.labels])
    assert labels.tolist() == [float(c) for *_, c, _ in later]
    positions = np.concatenate([data.train.position, data.valid.position, data.test.position])
    assert positions.tolist() == [p or 1 for _, _, _, p, _, _ in later]
    dense = np.concatenate([data.train.dense, data.valid.dense, data.test.dense])
    users = [u for _, u, *_ in later]
    # Before the cut u1 clicked shoes and saw a bag (weights 1 + 0.1 and 0.1; decay over seconds is nil): a
    # behaviour profile with those category shares. u2 has no user record (anonymous): no behaviour, as serving.
    share = {"a1": 1.1 / 1.2, "a2": 0.1 / 1.2}
    for row, (_, user, ad, *_) in enumerate(later):
        assert dense[row, HAS_BEHAVIOUR] == (1.0 if user == "u1" else 0.0), (user, ad)
        assert dense[row, CATEGORY] == pytest.approx(share[ad] if user == "u1" else 0.0, rel=1e-4), (user, ad)
    assert users.count("u3") == 3  # its click after the cut never reached its own features
    assert data.test_users.tolist() == ["u3", "u1"]
    assert data.test_fields["advertiser"].tolist() == ["adv1", "adv1"]
    assert data.test_fields["category"].tolist() == ["shoes", "bags"]


def test_conversion_target_takes_the_clicked_ads_and_reports_the_campaign_rate(store: Store) -> None:
    _serve(store)
    data = served_click_dataset(store, FeatureSpec(hash_bits=12), target="conversion", valid_share=0.3, test_share=0.2)
    clicked_later = [(dt, conv) for dt, _, _, _, c, conv in SERVED[3:] if c]
    assert len(data.train) + len(data.valid) + len(data.test) == len(clicked_later) == 4
    labels = np.concatenate([data.train.labels, data.valid.labels, data.test.labels])
    assert labels.tolist() == [float(conv) for _, conv in clicked_later]
    # One campaign: its rate over the train and validation clicks (3 s: 1 of 1, 5 s: 0, 7 s: 1) shrunk to the
    # overall (2 + 1) / (3 + 2) with the weight of 50 clicks.
    overall = 3 / 5
    assert data.baselines["campaign rate"] == pytest.approx([(2 + 50 * overall) / (3 + 50)] * len(data.test))


def test_a_store_without_served_ads_or_without_clicks_is_a_clear_error(store: Store) -> None:
    with pytest.raises(ValidationError, match="no served ads"):
        served_click_dataset(store)
    d = Delivery("r0-1", "u1", "a1", "c1", "adv1", "CPC", 0.5, T, "feed", position=1)
    later = dataclasses.replace(d, iid="r1-1", served_ts=T + 10)
    store.apply_feedback(
        [Feedback("i0", EventType.IMPRESSION, T, d), Feedback("i1", EventType.IMPRESSION, T + 10, later)]
    )
    with pytest.raises(ValidationError, match="all negative"):
        served_click_dataset(store)


def test_profiles_are_refreshed_period_by_period_as_a_profile_job_would(store: Store) -> None:
    _serve(store)
    # The cut at 2.7 s, a profile run every 2 s: periods from 2.7, 4.7, 6.7 and 8.7 s.
    data = served_click_dataset(store, FeatureSpec(hash_bits=12), valid_share=0.3, test_share=0.2, profile_every_s=2)
    dense = np.concatenate([data.train.dense, data.valid.dense, data.test.dense])
    has = {(dt, user): dense[row, HAS_BEHAVIOUR] for row, (dt, user, *_) in enumerate(SERVED[3:])}
    # u3's first events (5 s) reach the profiles of the period from 6.7 s: its 8 s example, not its 5 and 6 s ones.
    assert (has[5, "u3"], has[6, "u3"], has[8, "u3"]) == (0.0, 0.0, 1.0)
    # u1's click at 3 s: the 9 s example sees it (a1's category share up), the 4 s one does not.
    rows = {dt: row for row, (dt, *_) in enumerate(SERVED[3:])}
    assert dense[rows[9], CATEGORY] < dense[rows[4], CATEGORY]  # a2's (bags) share falls as shoes clicks add up
    assert has[9, "u1"] == has[4, "u1"] == 1.0
    with pytest.raises(ValueError, match="profile_every_s"):
        served_click_dataset(store, profile_every_s=0)
