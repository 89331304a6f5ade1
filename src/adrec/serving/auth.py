"""API keys of the HTTP API: created once (the secret is shown once), stored as SHA-256, checked per request.

Roles: ``admin`` (everything), ``advertiser`` (its own advertiser's campaigns, ads and reports only) and
``serving`` (the ad-request and event endpoints a publisher's servers call).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from adrec.exceptions import ValidationError
from adrec.store.base import ApiKeyRecord, Store

__all__ = ["ROLES", "KeyCache", "create_api_key", "hash_key"]

ROLES = ("admin", "advertiser", "serving")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    store: Store, role: str, *, name: str = "", advertiser_id: str | None = None
) -> tuple[ApiKeyRecord, str]:
    """Store a new key and return it with its secret (``adrec_<key id>_<random>``), which is not stored."""
    if role not in ROLES:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)} (got {role!r})")
    if (role == "advertiser") != (advertiser_id is not None):
        raise ValidationError("advertiser_id", "required for the advertiser role, and only for it")
    if advertiser_id is not None:
        store.get_advertiser(advertiser_id)  # NotFoundError for an unknown advertiser
    key_id = secrets.token_hex(6)
    secret = f"adrec_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(
        key_id=key_id,
        key_hash=hash_key(secret),
        role=role,
        name=name or role,
        created_ts=time.time(),
        advertiser_id=advertiser_id,
    )
    store.put_api_key(record)
    return record, secret


class KeyCache:
    """Looks keys up in the store, remembering answers for ``ttl_s`` seconds (revocation applies within it)."""

    def __init__(self, store: Store, ttl_s: float = 5.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, secret: str) -> ApiKeyRecord | None:
        """The key record of ``secret``, or ``None`` when unknown or revoked."""
        digest = hash_key(secret)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.ttl_s:
            record = hit[1]
        else:
            record = self.store.find_api_key(digest)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, record)
        if record is None or record.revoked:
            return None
        return record

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
