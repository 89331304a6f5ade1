"""The money rules of the serving ledger, on every backend: charges never exceed a campaign's budgets (the rest is
unbilled delivery), frequency caps hold however impressions are batched, an ended campaign is not billed, an event
id names one served ad, and only ads of the library are billed. Each test failed on the ledger before these rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from adrec.data.schema import (
    Ad,
    Advertiser,
    Campaign,
    CampaignStatus,
    EventType,
    FrequencyCap,
    Pacing,
    PricingModel,
)
from adrec.store import Delivery, Feedback, Store, open_store
from adrec.store import tables as t

DAY = 86_400.0
T0 = 1_750_000_000.0 - 1_750_000_000.0 % DAY + 3_600.0  # 01:00 UTC on some day


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        s.upsert_advertisers([Advertiser(advertiser_id="adv", name="Acme")])
        yield s


def _campaign(store: Store, cid: str = "c", **terms: Any) -> None:
    fields: dict[str, Any] = {"pricing_model": PricingModel.CPC, "bid": 1.0, "pacing": Pacing.ASAP, **terms}
    store.upsert_campaigns([Campaign(campaign_id=cid, advertiser_id="adv", name=cid, **fields)])
    store.upsert_ads([Ad(ad_id=f"{cid}-a{j}", campaign_id=cid) for j in range(3)])


def _token(n: int, *, cid: str = "c", ad: int = 0, user: str = "u", price: float = 0.9, ts: float = T0) -> Delivery:
    return Delivery(f"{cid}-r{n}", user, f"{cid}-a{ad}", cid, "adv", "CPC", price, ts, None)


def _imp(d: Delivery, dt: float = 0.0, eid: str | None = None) -> Feedback:
    return Feedback(eid or f"i-{d.iid}", EventType.IMPRESSION, d.served_ts + dt, d)


def _click(d: Delivery, dt: float = 1.0) -> Feedback:
    return Feedback(f"c-{d.iid}", EventType.CLICK, d.served_ts + dt, d)


def test_forty_outstanding_tokens_clicked_at_once_never_charge_above_the_daily_budget(store: Store) -> None:
    # The probe's case: daily budget 20, CPC, asap pacing, 40 users served, then one batch of 40 clicks.
    _campaign(store, daily_budget=20.0)
    tokens = [_token(n, user=f"u{n}", price=0.9 + n / 100) for n in range(40)]
    result = store.apply_feedback([_imp(d) for d in tokens] + [_click(d) for d in tokens])
    assert (result.accepted, result.rejected) == (80, [])
    assert result.spend == pytest.approx(20.0)
    assert result.spend + result.unbilled == pytest.approx(sum(d.price for d in tokens))
    (row,) = store.delivery_report()
    assert (row.clicks, row.spend) == (40, pytest.approx(20.0))
    assert row.unbilled == pytest.approx(result.unbilled)
    # Later clicks that day cost nothing; the next day's budget is fresh.
    late = _token(99, user="late")
    again = store.apply_feedback([_imp(late, 10), _click(late, 11)])
    assert (again.accepted, again.spend, again.unbilled) == (2, 0.0, pytest.approx(0.9))
    tomorrow = _token(100, user="t", ts=T0 + DAY)
    assert store.apply_feedback([_imp(tomorrow), _click(tomorrow)]).spend == pytest.approx(0.9)


def test_the_total_budget_caps_across_days_and_batches(store: Store) -> None:
    _campaign(store, daily_budget=5.0, total_budget=6.0)
    first = [_token(n, user=f"a{n}", price=1.0) for n in range(8)]
    second = [_token(10 + n, user=f"b{n}", price=1.0, ts=T0 + DAY) for n in range(8)]
    r1 = store.apply_feedback([_imp(d) for d in first] + [_click(d) for d in first])
    r2 = store.apply_feedback([_imp(d) for d in second] + [_click(d) for d in second])
    assert (r1.spend, r1.unbilled) == (pytest.approx(5.0), pytest.approx(3.0))
    assert (r2.spend, r2.unbilled) == (pytest.approx(1.0), pytest.approx(7.0))
    spend = {r.day: r.spend for r in store.delivery_report()}
    assert sorted(spend.values()) == [pytest.approx(1.0), pytest.approx(5.0)]
    # What the ledger charged per served ad adds up to the daily rows and to the campaign's running total.
    assert sum(c for b in store.iter_events() for c in b.cost.tolist()) == pytest.approx(6.0)
    second_day = max(spend)
    assert store.campaign_spend(second_day) == {"c": (pytest.approx(1.0), pytest.approx(6.0))}


def test_a_partial_charge_takes_exactly_what_is_left(store: Store) -> None:
    _campaign(store, daily_budget=2.0)
    a, b = _token(1, user="x", price=1.5), _token(2, user="y", price=1.5)
    result = store.apply_feedback([_imp(a), _imp(b), _click(a, 1), _click(b, 2)])
    costs = {e: c for batch in store.iter_events() for e, c in zip(batch.event_id, batch.cost.tolist(), strict=True)}
    assert costs["c-c-r1"] == pytest.approx(1.5) and costs["c-c-r2"] == pytest.approx(0.5)
    assert (result.spend, result.unbilled) == (pytest.approx(2.0), pytest.approx(1.0))


def test_batched_impressions_cannot_pass_the_campaign_frequency_cap(store: Store) -> None:
    # The probe's case: cap 2 per campaign per hour, 10 requests for one user, then the 10 impressions in one batch.
    _campaign(store, frequency=FrequencyCap(per_campaign=2, window_s=3_600.0))
    tokens = [_token(n, ad=n % 3, ts=T0 + n) for n in range(10)]
    result = store.apply_feedback([_imp(d) for d in tokens])
    assert result.accepted == 2
    assert len(result.rejected) == 8 and all("frequency cap" in why for _, why in result.rejected)
    # A click on a refused impression has nothing to click; another user is not affected; after the window, again.
    clicks = store.apply_feedback([_click(tokens[5], 2)])
    assert clicks.accepted == 0 and "without a recorded impression" in clicks.rejected[0][1]
    other = store.apply_feedback([_imp(_token(50, user="v")), _imp(_token(51, user="v", ts=T0 + 1))])
    assert other.accepted == 2
    later = [_token(60 + n, ts=T0 + 3_700.0 + n) for n in range(3)]
    assert store.apply_feedback([_imp(d) for d in later]).accepted == 2
    (row,) = store.delivery_report()
    assert row.impressions == 6


def test_the_per_ad_cap_counts_one_ad(store: Store) -> None:
    _campaign(store, frequency=FrequencyCap(per_ad=1, window_s=DAY))
    tokens = [_token(n, ad=n % 2, ts=T0 + n) for n in range(4)]  # ads 0, 1, 0, 1
    result = store.apply_feedback([_imp(d) for d in tokens])
    assert result.accepted == 2 and sorted(i for i, _ in result.rejected) == [2, 3]
    assert "of the ad" in result.rejected[0][1]


def test_an_ended_campaign_is_not_billed_for_later_clicks(store: Store) -> None:
    _campaign(store)
    d = _token(1)
    assert store.apply_feedback([_imp(d)]).accepted == 1
    ended = store.get_campaign("c").model_copy(update={"status": CampaignStatus.ENDED})
    store.upsert_campaigns([ended])
    result = store.apply_feedback([_click(d, 30)])
    assert (result.accepted, result.spend, result.unbilled) == (1, 0.0, pytest.approx(0.9))
    # A campaign whose end time passed bills nothing after it either.
    _campaign(store, "s", end=datetime.fromtimestamp(T0 + 10, UTC))
    before, after = _token(1, cid="s", user="p"), _token(2, cid="s", user="q", ts=T0 + 5)
    r = store.apply_feedback([_imp(before), _click(before, 2), _imp(after), _click(after, 20)])
    assert (r.accepted, r.spend, r.unbilled) == (4, pytest.approx(0.9), pytest.approx(0.9))


def test_an_event_id_reused_for_another_token_is_rejected_not_a_duplicate(store: Store) -> None:
    _campaign(store)
    a, b = _token(1), _token(2, user="w")
    assert store.apply_feedback([_imp(a, eid="e1")]).accepted == 1
    result = store.apply_feedback([_imp(b, eid="e1"), _imp(a, eid="e1")])
    assert (result.accepted, result.duplicates) == (0, 1)
    assert result.rejected == [(0, "event id 'e1' was already used for another served ad")]
    within = store.apply_feedback([_imp(b, eid="e2"), _click(a), Feedback("e2", EventType.CLICK, T0 + 2, a)])
    assert within.accepted == 2 and [i for i, _ in within.rejected] == [2]


def test_tokens_of_ads_outside_the_library_are_not_billed(store: Store) -> None:
    _campaign(store)
    _campaign(store, "other")
    unknown = Delivery("r-x", "u", "nope", "c", "adv", "CPC", 0.9, T0, None)
    foreign = Delivery("r-y", "u", "other-a0", "c", "adv", "CPC", 0.9, T0, None)  # ad of another campaign
    result = store.apply_feedback([_imp(unknown), _imp(foreign), _imp(_token(1))])
    assert result.accepted == 1
    assert [i for i, _ in result.rejected] == [0, 1] and "not an ad of campaign" in result.rejected[0][1]


def test_a_store_at_schema_3_gains_unbilled_delivery_and_campaign_totals(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with open_store(url) as s:
        s.upsert_advertisers([Advertiser(advertiser_id="adv", name="Acme")])
        _campaign(s, daily_budget=1.0)
        d = _token(1)
        s.apply_feedback([_imp(d), _click(d)])
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE delivery_daily DROP COLUMN unbilled"))
        conn.execute(text("DROP TABLE campaign_totals"))
        conn.execute(text("UPDATE adrec_meta SET value = '3' WHERE key = 'schema_version'"))
    engine.dispose()
    with open_store(url) as s:
        assert s.schema_version() == t.SCHEMA_VERSION == 6
        (row,) = s.delivery_report()
        assert (row.clicks, row.spend, row.unbilled) == (1, pytest.approx(0.9), 0.0)
        assert s.campaign_spend(row.day) == {"c": (pytest.approx(0.9), pytest.approx(0.9))}  # totals backfilled
        e = _token(2, user="z")
        assert s.apply_feedback([_imp(e), _click(e)]).unbilled == pytest.approx(0.8)
        assert s.campaign_spend(row.day) == {"c": (pytest.approx(1.0), pytest.approx(1.0))}
