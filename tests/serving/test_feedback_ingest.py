"""Feedback ingestion (adrec.feedback.ingest_feedback): each event checked on its own against its signed token,
the valid ones recorded; a token shared by several events of a batch is verified once, and only that exact token."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from adrec.data.schema import Ad, Advertiser, Campaign, EventType
from adrec.feedback import RawFeedback, ingest_feedback
from adrec.feedback.tokens import TokenSigner
from adrec.store import Delivery, Store, open_store

NOW = 1_700_000_000.0


class CountingSigner(TokenSigner):
    def __init__(self) -> None:
        super().__init__("s" * 32)
        self.verified: list[str] = []

    def verify(self, token: str, *, now: float | None = None) -> Delivery:
        self.verified.append(token)
        return super().verify(token, now=now)


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store("sqlite://") as s:
        s.upsert_advertisers([Advertiser(advertiser_id="adv1", name="Acme")])
        s.upsert_campaigns([Campaign(campaign_id="c1", advertiser_id="adv1", name="Spring", bid=1.0)])
        s.upsert_ads([Ad(ad_id="a1", campaign_id="c1")])
        yield s


def _token(signer: TokenSigner, iid: str, pricing: str = "CPC", price: float = 0.5) -> str:
    return signer.sign(Delivery(iid, "u1", "a1", "c1", "adv1", pricing, price, NOW - 60, "feed"))


def test_valid_events_are_recorded_next_to_rejected_ones(store: Store) -> None:
    signer = TokenSigner("s" * 32)
    token, other = _token(signer, "r1"), _token(signer, "r2")
    body, _, mac = token.partition(".")
    forged_body = other.partition(".")[0]
    events = [
        RawFeedback("i1", "impression", token, ts=NOW - 50),
        RawFeedback("x1", "click", f"{body}.{mac[:-2]}AA"),  # altered signature
        RawFeedback("x2", "click", f"{forged_body}.{mac}"),  # another payload under this token's signature
        RawFeedback("c0", "click", other),  # no impression of this token recorded
        RawFeedback("c1", "click", token, ts=NOW - 30),
        RawFeedback("x3", "view", token),
        RawFeedback("x4", "click", token[:20] + "é" + token[21:]),
        RawFeedback("i1", "impression", token, ts=NOW - 50),  # the first event again
    ]
    report = ingest_feedback(store, signer, events, now=NOW)
    assert (report.received, report.accepted, report.duplicates) == (8, 2, 1)
    reasons = {i: (eid, msg) for i, eid, msg in report.rejected}
    assert sorted(reasons) == [1, 2, 3, 5, 6]
    assert reasons[1][0] == "x1" and "signature" in reasons[1][1]
    assert reasons[2][0] == "x2" and "signature" in reasons[2][1]
    assert "without a recorded impression" in reasons[3][1]
    assert "unknown event type" in reasons[5][1]
    assert "malformed" in reasons[6][1]
    assert report.spend == pytest.approx(0.5)
    again = ingest_feedback(store, signer, events[:1] + events[4:5], now=NOW)
    assert (again.accepted, again.duplicates, again.spend) == (0, 2, 0.0)
    assert store.count_events() == 2


def test_a_token_is_verified_once_per_batch(store: Store) -> None:
    signer = CountingSigner()
    token = _token(signer, "r1", "CPA", 3.0)
    events = [
        RawFeedback("i1", EventType.IMPRESSION, token, ts=NOW - 50),
        RawFeedback("c1", EventType.CLICK, token, ts=NOW - 10),
        RawFeedback("v1", EventType.CONVERSION, token, ts=NOW - 5, value=99.0),
    ]
    report = ingest_feedback(store, signer, events, now=NOW)
    assert (report.accepted, report.rejected, report.spend) == (3, [], pytest.approx(3.0))
    assert signer.verified == [token]


@pytest.mark.parametrize(
    ("ts", "value", "field", "message"),
    [
        (math.nan, None, "ts", "not a finite number"),
        (math.inf, None, "ts", "not a finite number"),
        (NOW - 3600, None, "ts", "before the ad was served"),
        (NOW + 3600, None, "ts", "in the future"),
        (None, math.nan, "value", "not a finite number"),
    ],
)
def test_times_and_values_are_checked_per_event(
    store: Store, ts: float | None, value: float | None, field: str, message: str
) -> None:
    signer = TokenSigner("s" * 32)
    token, other = _token(signer, "r1"), _token(signer, "r2")
    events = [RawFeedback("bad", "impression", token, ts=ts, value=value), RawFeedback("ok", "impression", other)]
    report = ingest_feedback(store, signer, events, now=NOW)
    assert report.accepted == 1
    ((index, event_id, reason),) = report.rejected
    assert (index, event_id) == (0, "bad") and reason.startswith(f"{field}: ") and message in reason


def test_the_propensity_an_impression_logs_is_the_one_its_token_signed(store: Store) -> None:
    """An explored ad's token carries its propensity: the impression stores it, clicks do not (the column is the
    serving policy's, per impression), and a client cannot change it without breaking the signature."""
    signer = TokenSigner("s" * 32)
    explored = Delivery("r9-1", "u1", "a1", "c1", "adv1", "CPC", 0.5, NOW - 60, "feed", propensity=0.25, position=1)
    token = signer.sign(explored)
    late = [RawFeedback("i9", "impression", token, ts=NOW - 50), RawFeedback("c9", "click", token, ts=NOW - 40)]
    report = ingest_feedback(store, signer, late, now=NOW + 3600)  # one late batch, impression and click together
    assert report.accepted == 2
    batch = next(store.iter_events())
    stored = dict(zip(batch.event_id.tolist(), batch.propensity.tolist(), strict=True))
    assert stored["i9"] == 0.25 and math.isnan(stored["c9"])
    mac = token.partition(".")[2]
    other = signer.sign(Delivery("r9-1", "u1", "a1", "c1", "adv1", "CPC", 0.5, NOW - 60, "feed", 1.0, 1))
    forged_token = f"{other.partition('.')[0]}.{mac}"  # propensity 1.0 under the 0.25 token's signature
    forged = ingest_feedback(store, signer, [RawFeedback("i10", "impression", forged_token)], now=NOW + 3600)
    assert forged.accepted == 0 and "signature" in forged.rejected[0][2]
