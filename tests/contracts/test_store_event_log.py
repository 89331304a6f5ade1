"""The EventLog contract (append-only, idempotent by event id; CTR logs), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_records import add_market, make_events

from adrec.data.schema import (
    Event,
    EventBatch,
    EventType,
)
from adrec.exceptions import ValidationError
from adrec.store import CtrExample, Store


def test_events_are_idempotent_by_id(store: Store) -> None:
    first = store.append_events(make_events(100))
    assert (first.inserted, first.duplicates) == (100, 0)
    again = store.append_events(make_events(100))
    assert (again.inserted, again.duplicates) == (0, 100)
    overlap = store.append_events(make_events(150))  # 100 old + 50 new
    assert (overlap.inserted, overlap.duplicates) == (50, 100)
    assert store.count_events() == 150


def test_event_records_and_batches_are_interchangeable(store: Store) -> None:
    events = [
        Event(
            event_id="x1",
            type="impression",
            user_id="u1",
            ad_id="a1",
            ts=datetime(2026, 1, 1, tzinfo=UTC),
            placement="feed",
            request_id="r1",
        ),
        Event(
            event_id="x2",
            type=EventType.CLICK,
            user_id="u1",
            ad_id="a1",
            ts=1.7e9,
            value=3.0,
            propensity=0.25,
        ),
    ]
    assert store.append_events(events).inserted == 2
    (batch,) = list(store.iter_events())
    assert batch.event_id.tolist() == ["x2", "x1"] or batch.event_id.tolist() == ["x1", "x2"]
    got = {eid: i for i, eid in enumerate(batch.event_id.tolist())}
    i2 = got["x2"]
    assert batch.cost[i2] == 0.0 and batch.request_id[got["x1"]] == "r1"
    assert batch.value[i2] == 3.0
    assert batch.propensity[i2] == 0.25
    i1 = got["x1"]
    assert np.isnan(batch.value[i1])
    assert batch.placement[i1] == "feed"
    assert batch.ts[i1] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_invalid_batch_writes_nothing_and_keeps_earlier_data(store: Store) -> None:
    store.append_events(make_events(10))
    bad = make_events(5, prefix="new")
    bad.cost[3] = -1.0
    with pytest.raises(ValidationError, match=r"events\[3\]\.cost"):
        store.append_events(bad)
    dup = EventBatch.concat([make_events(2, prefix="d"), make_events(1, prefix="d")])
    with pytest.raises(ValidationError, match="appears twice"):
        store.append_events(dup)
    assert store.count_events() == 10


def test_iter_events_filters_and_pages(store: Store) -> None:
    store.append_events(make_events(30, prefix="a", user="u1"))
    store.append_events(make_events(20, prefix="b", user="u2", type_=1))
    pages = list(store.iter_events(batch_size=8))
    ts = np.concatenate([p.ts for p in pages])
    assert len(ts) == 50
    assert (np.diff(ts) >= 0).all()
    assert len({eid for p in pages for eid in p.event_id.tolist()}) == 50
    u2 = EventBatch.concat(list(store.iter_events(user_id="u2")))
    assert set(u2.user_id.tolist()) == {"u2"} and len(u2) == 20
    clicks = EventBatch.concat(list(store.iter_events(types=[EventType.CLICK])))
    assert len(clicks) == 20
    window = EventBatch.concat(list(store.iter_events(since=1005.0, until=1010.0)))
    assert len(window) == 10 and window.ts.min() >= 1005.0 and window.ts.max() < 1010.0
    assert store.count_events(user_id="u1") == 30
    assert store.count_events(type=EventType.CLICK) == 20


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, 40), max_size=30, unique=True), min_size=1, max_size=5))
def test_any_sequence_of_resends_stores_each_id_once(store: Store, batches: list[list[int]]) -> None:
    offset = store.count_events()
    seen: set[int] = set()
    tag = f"h{offset}-"  # a fresh id space per example; the store outlives examples
    for ids in batches:
        batch = EventBatch(
            event_id=np.array([f"{tag}{i}" for i in ids], dtype=object),
            type=np.zeros(len(ids), dtype=np.int8),
            user_id=np.full(len(ids), "u", dtype=object),
            ad_id=np.full(len(ids), "a", dtype=object),
            ts=np.zeros(len(ids)),
        )
        result = store.append_events(batch)
        assert result.inserted == len(set(ids) - seen)
        seen |= set(ids)
    assert store.count_events() - offset == len(seen)


def test_ctr_examples_round_trip_and_replace(store: Store) -> None:
    rows = [CtrExample("criteo.txt", i, i % 2, {"I1": float(i), "C1": "ab"}) for i in range(1, 6)]
    assert store.append_ctr_examples(rows) == 5
    store.append_ctr_examples(rows[:2])
    back = [x for batch in store.iter_ctr_examples("criteo.txt", batch_size=2) for x in batch]
    assert back == rows
    assert store.stats().ctr_examples == 5


def test_history_without_a_token_is_never_charged_and_counts_in_its_campaigns_delivery(store: Store) -> None:
    add_market(store)
    charged = make_events(3, prefix="x", type_=1)
    charged.cost[1] = 0.5
    with pytest.raises(ValidationError, match=r"events\[1\]\.cost.*never charged"):
        store.append_events(charged)
    assert store.count_events() == 0  # refused whole
    store.append_events(make_events(4, prefix="i", ad="a1"))
    store.append_events(make_events(2, prefix="c", ad="a2", type_=1))
    store.append_events(make_events(3, prefix="n", ad="not-in-the-library"))
    assert store.append_events(make_events(4, prefix="i", ad="a1")).duplicates == 4  # a resend adds nothing
    mixed = store.append_events(make_events(6, prefix="i", ad="a1"))  # four stored, two new: only those count
    assert (mixed.inserted, mixed.duplicates) == (2, 4)
    # In the log as imported, with no served-ad row and nothing charged; counted in its campaign's delivery.
    assert store.count_events() == 11
    assert store.delivery_times("u1", 0.0) == []
    (day,) = store.delivery_report()
    assert (day.campaign_id, day.impressions, day.clicks, day.spend, day.unbilled) == ("c1", 6, 2, 0.0, 0.0)
