"""The KeyStore contract (API keys by hash), on every backend."""

from __future__ import annotations

import pytest

from adrec.exceptions import NotFoundError
from adrec.store import ApiKeyRecord, Store


def test_api_keys_are_stored_by_hash_and_revocable(store: Store) -> None:
    key = ApiKeyRecord("k1", "ab" * 32, "serving", "edge", 1.0)
    store.put_api_key(key)
    assert store.find_api_key("ab" * 32) == key
    assert store.find_api_key("cd" * 32) is None
    store.revoke_api_key("k1")
    found = store.find_api_key("ab" * 32)
    assert found is not None and found.revoked
    assert [k.key_id for k in store.list_api_keys()] == ["k1"]
    with pytest.raises(NotFoundError):
        store.revoke_api_key("nope")
