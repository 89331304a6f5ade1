"""Signed impression tokens: what the server served, carried by the client back to ``POST /v1/events``.

A token is ``base64url(JSON payload) "." base64url(HMAC-SHA256(secret, payload))``. The payload is the
:class:`~adrec.data.records.Delivery` (user, ad, campaign, price charged per billable event, time, placement and
the slot it was served in, and, when the pipeline explores, the probability with which it put the ad there).
Tokens signed before the slot was carried (one field fewer) still verify, with no position; a token without a
propensity is the format before propensities were carried. The events endpoint
trusts prices and ids only from a verified token, never from the client, so a client cannot bill an ad it was not
served or change a price.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
import time

from pydantic_core import from_json

from adrec.data.records import Delivery
from adrec.exceptions import TokenError

__all__ = ["TokenSigner", "new_secret"]

_FIELDS = ("iid", "user_id", "ad_id", "campaign_id", "advertiser_id", "pricing_model", "price", "served_ts")
_PAYLOAD = (*_FIELDS, "placement", "position", "propensity")


def new_secret() -> str:
    """A random 256-bit signing secret (URL-safe text)."""
    return secrets.token_urlsafe(32)


_JSON = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(..., separators=...) builds one per call


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _unb64(data: bytes) -> bytes:
    # binascii directly: base64.urlsafe_b64decode wraps the same call in two Python-level layers.
    return binascii.a2b_base64(data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4))


_MAX_POSITION = 1000
_PRICING = frozenset({"CPC", "CPM", "CPA"})


def _sound(d: Delivery) -> bool:
    """Whether a signed payload holds what this server signs: text ids, a known pricing model, a finite price
    that is not negative and a finite time (a payload signed with a leaked secret, or by a buggy build, is refused
    rather than billed). Written out rather than looped: it runs for every event of every batch."""
    price, ts = d.price, d.served_ts
    return (
        (type(price) is float or type(price) is int)
        and 0.0 <= price < math.inf  # NaN fails both comparisons
        and (type(ts) is float or type(ts) is int)
        and -math.inf < ts < math.inf
        and d.pricing_model in _PRICING
        and type(d.iid) is str
        and type(d.user_id) is str
        and type(d.ad_id) is str
        and type(d.campaign_id) is str
        and type(d.advertiser_id) is str
        and bool(d.iid and d.user_id and d.ad_id and d.campaign_id and d.advertiser_id)
        and (d.placement is None or type(d.placement) is str)
        and (d.position is None or (type(d.position) is int and 1 <= d.position <= _MAX_POSITION))
        and (
            d.propensity is None
            or ((type(d.propensity) is float or type(d.propensity) is int) and 0 < d.propensity <= 1)
        )
    )


class TokenSigner:
    """Signs and verifies impression tokens.

    Parameters
    ----------
    secret
        The HMAC key; every server that verifies tokens needs the same one.
    max_age_s
        How long after serving a token is accepted (default 30 days: conversions can come late).
    """

    def __init__(self, secret: str, *, max_age_s: float = 30 * 86_400.0) -> None:
        if len(secret) < 16:
            raise TokenError("the token secret must be at least 16 characters")
        # Keyed once: copying a keyed HMAC costs less than keying one per token.
        self._hmac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self.max_age_s = max_age_s

    def _mac(self, body: bytes) -> bytes:
        h = self._hmac.copy()
        h.update(body)
        return base64.urlsafe_b64encode(h.digest()).rstrip(b"=")

    def sign(self, delivery: Delivery) -> str:
        payload = [getattr(delivery, f) for f in _PAYLOAD]
        if delivery.propensity is None:  # the format before propensities were carried: the same token as then
            payload.pop()
            if delivery.position is None:  # and before positions were
                payload.pop()
        body = base64.urlsafe_b64encode(_JSON(payload).encode()).rstrip(b"=")
        return (body + b"." + self._mac(body)).decode()

    def verify(self, token: str, *, now: float | None = None) -> Delivery:
        """The delivery a token carries; :class:`TokenError` when it is malformed, forged or expired."""
        body, sep, mac = token.partition(".")
        if not sep or not body or not mac:
            raise TokenError("malformed token (expected two dot-separated parts)")
        if not token.isascii():
            raise TokenError("malformed token (not base64url text)")
        data = body.encode()
        if not hmac.compare_digest(self._mac(data), mac.encode()):
            raise TokenError("token signature does not match (forged, altered or signed with another secret)")
        try:
            values = from_json(_unb64(data))
            if not isinstance(values, list) or not len(_FIELDS) + 1 <= len(values) <= len(_PAYLOAD):
                raise ValueError
            # The payload is in field order: _FIELDS, placement, then the position and the propensity (absent from
            # older tokens).
            delivery = Delivery(**dict(zip(_PAYLOAD, values, strict=False)))
        except (ValueError, TypeError):
            raise TokenError("malformed token payload") from None
        if not _sound(delivery):
            raise TokenError("malformed token payload (ids, pricing model, price or time out of range)")
        now = time.time() if now is None else now
        if now - delivery.served_ts > self.max_age_s:
            raise TokenError(f"token expired (served {now - delivery.served_ts:.0f} s ago)")
        return delivery
