"""The Ledger contract (served ads, charges, daily delivery), on every backend."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from store_records import add_market, make_delivery, make_feedback

from adrec.data.schema import (
    Event,
    EventType,
    Gender,
    User,
)
from adrec.store import Delivery, Feedback, Store


def test_feedback_charges_each_billable_event_once(store: Store) -> None:
    add_market(store)  # the ledger bills only ads of the library
    cpc, cpm, cpa = (
        make_delivery("r1-1", "CPC", 0.4),
        make_delivery("r1-2", "CPM", 0.002),
        make_delivery("r1-3", "CPA", 5.0),
    )
    batch = [
        make_feedback("i1", EventType.IMPRESSION, cpc),
        make_feedback("c1", EventType.CLICK, cpc, 5),
        make_feedback("v1", EventType.CONVERSION, cpc, 50),
        make_feedback("i2", EventType.IMPRESSION, cpm),
        make_feedback("i3", EventType.IMPRESSION, cpa),
        make_feedback("c3", EventType.CLICK, cpa, 3),
        make_feedback("v3", EventType.CONVERSION, cpa, 30),
    ]
    result = store.apply_feedback(batch)
    assert (result.received, result.accepted, result.duplicates, result.rejected) == (7, 7, 0, [])
    assert result.spend == pytest.approx(0.4 + 0.002 + 5.0)
    (row,) = store.delivery_report()
    assert (row.impressions, row.clicks, row.conversions) == (3, 2, 2)
    assert row.spend == pytest.approx(5.402)
    assert row.ctr == pytest.approx(2 / 3)
    day = row.day
    assert store.campaign_spend(day) == {"c1": (pytest.approx(5.402), pytest.approx(5.402))}
    assert store.count_events() == 7
    # The resend is acknowledged and changes nothing.
    again = store.apply_feedback(batch)
    assert (again.accepted, again.duplicates, again.spend) == (0, 7, 0.0)
    assert store.delivery_report()[0].spend == pytest.approx(5.402)


def test_feedback_rejects_what_the_ledger_does_not_allow_and_keeps_the_rest(store: Store) -> None:
    add_market(store)  # the ledger bills only ads of the library
    d = make_delivery("r2-1")
    other = make_delivery("r2-2")
    result = store.apply_feedback(
        [
            make_feedback("c0", EventType.CLICK, other),  # click before any impression of its token
            make_feedback("i1", EventType.IMPRESSION, d),
            make_feedback("i1b", EventType.IMPRESSION, d, 1),  # a second impression of the same token
            make_feedback("c1", EventType.CLICK, d, 2),
            make_feedback("c1b", EventType.CLICK, d, 3),  # a second click
            make_feedback("v0", EventType.CONVERSION, other, 4),  # conversion without click
        ]
    )
    assert result.accepted == 2
    reasons = dict(result.rejected)
    assert set(reasons) == {0, 2, 4, 5}
    assert "without a recorded impression" in reasons[0]
    assert "already recorded" in reasons[2]
    assert "already clicked" in reasons[4]
    assert "without a recorded click" in reasons[5]
    (row,) = store.delivery_report()
    assert (row.impressions, row.clicks, row.spend) == (1, 1, pytest.approx(0.4))
    # A later batch can click a token whose impression came earlier, once.
    later = store.apply_feedback(
        [make_feedback("c2", EventType.CLICK, other, 9), make_feedback("i2", EventType.IMPRESSION, other, 1)]
    )
    assert later.accepted == 2 and later.rejected == []


def test_feedback_event_ids_count_once_within_and_across_batches(store: Store) -> None:
    add_market(store)  # the ledger bills only ads of the library
    d, other = make_delivery("r4-1", "CPM", 0.5), make_delivery("r4-2", "CPC", 0.4)
    batch = [
        make_feedback("i1", EventType.IMPRESSION, d),
        make_feedback("i1", EventType.IMPRESSION, d),  # the same event sent twice in one batch
        make_feedback("i2", EventType.IMPRESSION, other),
        make_feedback("i2", EventType.CLICK, other, 1),  # a click reusing an event id: a duplicate, not a click
    ]
    result = store.apply_feedback(batch)
    assert (result.accepted, result.duplicates, result.rejected) == (2, 2, [])
    assert result.spend == pytest.approx(0.5)
    again = store.apply_feedback([*batch, make_feedback("c2", EventType.CLICK, other, 2)])
    assert (again.accepted, again.duplicates, again.rejected, again.spend) == (1, 4, [], pytest.approx(0.4))
    (row,) = store.delivery_report()
    assert (row.impressions, row.clicks, row.spend) == (2, 1, pytest.approx(0.9))
    assert store.count_events() == 3


def test_feedback_applies_a_batch_in_time_order_and_the_ledger_remembers_it(store: Store) -> None:
    add_market(store)  # the ledger bills only ads of the library
    a, b = make_delivery("r5-1", "CPA", 2.0), make_delivery("r5-2", "CPC", 0.3)
    placed = Delivery("r5-3", "u2", "a1", "c1", "adv1", "CPM", 0.01, 1.7e9, None)
    first = store.apply_feedback(
        [
            make_feedback("ca", EventType.CLICK, a, 5),  # listed before its impression, but later in time
            make_feedback("ia", EventType.IMPRESSION, a),
            make_feedback("ib", EventType.IMPRESSION, b),
            make_feedback("ip", EventType.IMPRESSION, placed),
        ]
    )
    assert (first.accepted, first.rejected) == (4, [])
    # The ledger rows of the first batch: a was clicked, b was not; neither converted.
    later = store.apply_feedback(
        [
            make_feedback("ca2", EventType.CLICK, a, 6),
            make_feedback("vb", EventType.CONVERSION, b, 8),
            make_feedback("cb", EventType.CLICK, b, 7),
            Feedback("va", EventType.CONVERSION, a.served_ts + 9, a, 42.0),
        ]
    )
    assert later.accepted == 3 and later.rejected == [(0, "this token was already clicked")]
    assert later.spend == pytest.approx(2.0 + 0.3)
    # NULLs and values of one column mixed in a batch are each stored as sent.
    stored = {
        str(e): (p, v, r)
        for batch in store.iter_events()
        for e, p, v, r in zip(batch.event_id, batch.placement, batch.value, batch.request_id, strict=True)
    }
    assert set(stored) == {"ca", "ia", "ib", "ip", "vb", "cb", "va"}
    assert stored["va"][:2] == ("feed", 42.0) and stored["ip"][0] is None
    assert all(np.isnan(v) for e, (_, v, _) in stored.items() if e != "va")
    assert all(p == "feed" for e, (p, _, _) in stored.items() if e != "ip")
    assert stored["ca"][2] == "r5-1" and stored["ip"][2] == "r5-3"
    report = {r.campaign_id: r for r in store.delivery_report()}
    assert (report["c1"].impressions, report["c1"].clicks, report["c1"].conversions) == (3, 2, 2)
    assert report["c1"].spend == pytest.approx(2.0 + 0.3 + 0.01)
    assert store.apply_feedback([make_feedback("va2", EventType.CONVERSION, a, 10)]).rejected == [
        (0, "this token already converted")
    ]


def test_segment_click_counts_by_gender_and_age_band(store: Store) -> None:
    store.upsert_users(
        [
            User(user_id="f30", gender=Gender.FEMALE, age=30),
            User(user_id="f33", gender=Gender.FEMALE, age=33),
            User(user_id="m50", gender=Gender.MALE, age=50),
        ]
    )
    clicks = [("f30", "a1"), ("f33", "a1"), ("f33", "a2"), ("m50", "a2"), ("anon", "a3")]
    store.append_events(
        [Event(event_id=f"k{i}", type=EventType.CLICK, user_id=u, ad_id=a, ts=1.0) for i, (u, a) in enumerate(clicks)]
        + [Event(event_id="imp", type=EventType.IMPRESSION, user_id="f30", ad_id="a3", ts=1.0)]
    )
    assert store.segment_click_counts() == {"female|25-34": [("a1", 2), ("a2", 1)], "male|45-54": [("a2", 1)]}
    assert store.segment_click_counts(limit=1)["female|25-34"] == [("a1", 2)]


def test_iter_served_reads_each_served_ad_with_its_slot_and_outcome(store: Store) -> None:
    add_market(store)
    top = dataclasses.replace(make_delivery("r7-1", "CPC", 0.4, ts=1.7e9 + 10), position=1)
    second = dataclasses.replace(make_delivery("r7-2", "CPA", 2.0, user="u2", ts=1.7e9 + 10), position=2)
    old = make_delivery("r6-1", "CPM", 0.002, ts=1.7e9)  # a token that carried no slot
    later = dataclasses.replace(make_delivery("r8-1", "CPC", 0.4, ts=1.7e9 + 20), position=1)
    result = store.apply_feedback(
        [
            make_feedback("i1", EventType.IMPRESSION, top),
            make_feedback("c1", EventType.CLICK, top, 4),
            make_feedback("i2", EventType.IMPRESSION, second),
            make_feedback("c2", EventType.CLICK, second, 5),
            make_feedback("v2", EventType.CONVERSION, second, 9),
            make_feedback("i0", EventType.IMPRESSION, old),
            make_feedback("i3", EventType.IMPRESSION, later),
        ]
    )
    assert (result.accepted, result.rejected) == (7, [])
    batches = list(store.iter_served(batch_size=2))
    assert [len(b) for b in batches] == [2, 2]
    rows = {
        iid: (user, pos, served, click, conv)
        for b in batches
        for iid, user, pos, served, click, conv in zip(
            b.iid, b.user_id, b.position, b.served_ts, b.click_ts, b.conversion_ts, strict=True
        )
    }
    assert [str(i) for b in batches for i in b.iid] == ["r6-1", "r7-1", "r7-2", "r8-1"]  # by serving time
    assert rows["r7-1"][:4] == ("u1", 1, 1.7e9 + 10, 1.7e9 + 14) and np.isnan(rows["r7-1"][4])
    assert rows["r7-2"][1:] == (2, 1.7e9 + 10, 1.7e9 + 15, 1.7e9 + 19)
    assert rows["r6-1"][1] == 0 and np.isnan(rows["r6-1"][3])
    assert batches[0].placement.tolist() == ["feed", "feed"] and batches[0].campaign_id.tolist() == ["c1", "c1"]
    money = {
        str(iid): (str(pm), float(price), float(cost))
        for b in batches
        for iid, pm, price, cost in zip(b.iid, b.pricing_model, b.price, b.cost, strict=True)
    }
    # The token's pricing model and price; the cost the ledger charged for its events (a CPA ad's conversion).
    assert money["r7-1"] == ("CPC", 0.4, 0.4) and money["r7-2"] == ("CPA", 2.0, 2.0)
    assert money["r6-1"] == ("CPM", 0.002, 0.002) and money["r8-1"] == ("CPC", 0.4, 0.0)
    window = [str(i) for b in store.iter_served(since=1.7e9 + 10, until=1.7e9 + 20) for i in b.iid]
    assert window == ["r7-1", "r7-2"]
