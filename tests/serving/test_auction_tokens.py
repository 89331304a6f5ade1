"""GSP prices and impression tokens, on hand-computed answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from adrec.exceptions import TokenError
from adrec.feedback.tokens import TokenSigner
from adrec.serving.auction import ecpm, gsp_prices
from adrec.store import Delivery


def test_ecpm_per_pricing_model() -> None:
    got = ecpm(["CPC", "CPM", "CPA"], [0.5, 3.0, 20.0], [0.02, 0.02, 0.02], [0.1, 0.1, 0.1])
    np.testing.assert_allclose(got, [10.0, 3.0, 40.0])


def test_each_slot_pays_the_next_ecpm_in_its_own_unit() -> None:
    # CPM 30, CPC bid 1 at pCTR 0.02 (eCPM 20), CPM 10; the best loser has eCPM 5.
    prices = gsp_prices(
        [30.0, 20.0, 10.0], 5.0, ["CPM", "CPC", "CPM"], [30.0, 1.0, 10.0], [0.01, 0.02, 0.01], [0, 0, 0]
    )
    np.testing.assert_allclose(prices, [20.0 / 1000, 10.0 / (0.02 * 1000), 5.0 / 1000])


def test_reserve_is_a_floor_and_the_bid_a_ceiling() -> None:
    prices = gsp_prices([30.0, 20.0], 0.0, ["CPM", "CPM"], [30.0, 20.0], [0.01, 0.01], [0, 0], reserve_ecpm=8.0)
    np.testing.assert_allclose(prices, [20.0 / 1000, 8.0 / 1000])
    # After diversity re-ranking a lower-eCPM ad can sit above a higher one: it still never pays above its bid.
    prices = gsp_prices([10.0, 40.0], 0.0, ["CPC", "CPM"], [0.5, 40.0], [0.02, 0.02], [0, 0])
    assert prices[0] <= 0.5 + 1e-12
    assert prices[0] == pytest.approx(0.5)


def test_cpa_price_converts_through_ctr_and_cvr() -> None:
    (price,) = gsp_prices([40.0], 20.0, ["CPA"], [20.0], [0.02], [0.1])
    assert price == pytest.approx(20.0 / (0.02 * 0.1 * 1000))


def _delivery() -> Delivery:
    return Delivery("req-1", "u1", "a1", "c1", "adv1", "CPC", 0.37, 1_700_000_000.0, "feed")


def test_token_round_trip() -> None:
    signer = TokenSigner("s" * 32)
    token = signer.sign(_delivery())
    assert signer.verify(token, now=1_700_000_100.0) == _delivery()
    # The format is fixed: tokens issued by one server version verify on the next.
    assert token == (
        "WyJyZXEtMSIsInUxIiwiYTEiLCJjMSIsImFkdjEiLCJDUEMiLDAuMzcsMTcwMDAwMDAwMC4wLCJmZWVkIl0"
        ".JI7h8A3GPQIobGwknLnmhD72QxIk6Q9H4myRTD9qKrE"
    )


def test_tokens_carry_the_slot_and_tokens_signed_without_one_still_verify() -> None:
    signer = TokenSigner("s" * 32)
    placed = dataclasses.replace(_delivery(), position=3)
    token = signer.sign(placed)
    assert signer.verify(token, now=1_700_000_100.0) == placed
    assert token != signer.sign(_delivery())  # the slot is signed: it cannot be changed without the secret
    # A token from before positions were carried (the payload one field shorter) verifies, with no position.
    old = signer.verify(
        "WyJyZXEtMSIsInUxIiwiYTEiLCJjMSIsImFkdjEiLCJDUEMiLDAuMzcsMTcwMDAwMDAwMC4wLCJmZWVkIl0"
        ".JI7h8A3GPQIobGwknLnmhD72QxIk6Q9H4myRTD9qKrE",
        now=1_700_000_100.0,
    )
    assert old.position is None and old.iid == "req-1"


def test_tokens_carry_the_propensity_and_older_formats_still_verify() -> None:
    signer = TokenSigner("s" * 32)
    explored = dataclasses.replace(_delivery(), position=2, propensity=0.125)
    token = signer.sign(explored)
    assert signer.verify(token, now=1_700_000_100.0) == explored
    # Without a propensity the token is byte for byte the format before propensities were carried.
    placed = dataclasses.replace(_delivery(), position=2)
    assert signer.sign(placed) == signer.sign(dataclasses.replace(explored, propensity=None))
    assert signer.verify(signer.sign(placed), now=1_700_000_100.0).propensity is None
    # A propensity with no slot keeps the slot's place empty.
    no_slot = dataclasses.replace(_delivery(), propensity=0.5)
    assert signer.verify(signer.sign(no_slot), now=1_700_000_100.0) == no_slot
    for bad in (0.0, 1.5, float("nan")):
        forged = signer.sign(dataclasses.replace(explored, propensity=bad))
        with pytest.raises(TokenError, match="out of range"):
            signer.verify(forged, now=1_700_000_100.0)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "signature"),
        (lambda t: "x" + t, "signature"),
        (lambda t: t.replace(".", ""), "malformed"),
        (lambda t: t[:-1] + "é", "malformed"),  # not ASCII: rejected, not a TypeError from compare_digest
        (lambda t: t.partition(".")[0] + ".x" + t.partition(".")[2], "signature"),
    ],
)
def test_altered_tokens_are_rejected(mutate: object, message: str) -> None:
    signer = TokenSigner("s" * 32)
    token = signer.sign(_delivery())
    with pytest.raises(TokenError, match=message):
        signer.verify(mutate(token), now=1_700_000_100.0)  # type: ignore[operator]


def test_other_secret_and_expiry_are_rejected() -> None:
    token = TokenSigner("s" * 32).sign(_delivery())
    with pytest.raises(TokenError, match="signature"):
        TokenSigner("t" * 32).verify(token, now=1_700_000_100.0)
    with pytest.raises(TokenError, match="expired"):
        TokenSigner("s" * 32, max_age_s=60).verify(token, now=1_700_000_100.0)
    with pytest.raises(TokenError, match="16 characters"):
        TokenSigner("short")


@pytest.mark.parametrize(
    "change",
    [
        {"price": -0.5},
        {"price": float("inf")},
        {"price": True},
        {"pricing_model": "CPX"},
        {"ad_id": ""},
        {"user_id": 7},
        {"served_ts": float("nan")},
        {"position": 0},
        {"position": 1001},
        {"position": True},
        {"position": "1"},
    ],
)
def test_validly_signed_payloads_out_of_range_are_refused(change: dict[str, object]) -> None:
    # Signed with the right secret (a leaked one, or a buggy build): still never billed.
    signer = TokenSigner("s" * 32)
    token = signer.sign(dataclasses.replace(_delivery(), **change))  # type: ignore[arg-type]
    with pytest.raises(TokenError, match="out of range"):
        signer.verify(token, now=1_700_000_100.0)
