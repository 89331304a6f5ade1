"""Request limits of the HTTP API: 413 for bodies over the limit (by Content-Length and as a chunked body arrives),
429 with Retry-After past a key's burst (in memory, and in Redis shared by two apps), 405 with Allow, /ready on an
empty catalogue, and no key material in the logs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serving_helpers import SECRET, ad_id, blocks_model, fill, user_id

from adrec.config import Settings
from adrec.exceptions import ConfigError, NotFoundError
from adrec.feedback.tokens import TokenSigner
from adrec.serving.api import ServerState, create_app
from adrec.serving.auth import create_api_key
from adrec.serving.limits import REDIS_PREFIX, Limits, TokenBuckets
from adrec.store import Store, open_store

SMALL = Limits(max_body_bytes=2_000, max_events_body_bytes=20_000, rate_limit_rps=0.01, rate_limit_burst=3)
Keys = dict[str, dict[str, str]]


@contextmanager
def _store() -> Iterator[tuple[Store, Keys]]:
    with open_store("sqlite://") as store:
        fill(store)
        keys = {
            "admin": create_api_key(store, "admin")[1],
            "serving": create_api_key(store, "serving")[1],
            "other": create_api_key(store, "serving")[1],
        }
        yield store, {name: {"X-API-Key": key} for name, key in keys.items()}


def _state(store: Store) -> ServerState:
    state = ServerState(store, None, TokenSigner(SECRET))
    state.pipeline.swap_model(blocks_model())
    return state


@pytest.fixture
def small() -> Iterator[tuple[TestClient, Store, Keys]]:
    with _store() as (store, keys), TestClient(create_app(_state(store), limits=SMALL)) as client:
        yield client, store, keys


def _rec(client: TestClient, headers: dict[str, str]) -> Any:
    return client.get("/v1/recommendations", params={"user_id": user_id(0, 0), "k": 2}, headers=headers)


def _events_body(size: int) -> bytes:
    """A well-formed events body (one event, whose token does not verify) padded with whitespace to ``size``."""
    event = {"event_id": "e1", "type": "impression", "token": "x" * 40}
    body = json.dumps({"events": [event]}).encode()
    return body + b" " * (size - len(body))


def _ad(ad: str) -> dict[str, Any]:
    return {"ad_id": ad, "campaign_id": "cmp-0", "title": "a new ad", "category": "shoes"}


# -- body size ----------------------------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413_by_its_content_length(small: tuple[TestClient, Store, Keys]) -> None:
    client, store, h = small
    headers = {**h["admin"], "Content-Type": "application/json"}
    big = json.dumps({**_ad("big"), "description": "y" * 3_000}).encode()
    r = client.put("/v1/ads/big", content=big, headers=headers)
    assert r.status_code == 413 and "2,000 bytes" in r.json()["detail"]
    assert r.headers["connection"] == "close"
    with pytest.raises(NotFoundError):
        store.get_ad("big")
    assert client.put("/v1/ads/x1", json=_ad("x1"), headers=headers).status_code == 200


def test_events_have_their_own_larger_limit(small: tuple[TestClient, Store, Keys]) -> None:
    client, store, h = small
    headers = {**h["serving"], "Content-Type": "application/json"}
    r = client.post("/v1/events", content=_events_body(15_000), headers=headers)  # over 2,000, under 20,000
    assert r.status_code == 200 and r.json()["received"] == 1 and r.json()["rejected"]
    r = client.post("/v1/events", content=_events_body(20_001), headers=headers)
    assert r.status_code == 413 and "20,000 bytes" in r.json()["detail"]
    # Another path keeps the small limit, whatever its method.
    r = client.put("/v1/users/x", content=_events_body(15_000), headers={**h["admin"], **headers})
    assert r.status_code == 413
    assert store.count_events() == 0


def test_a_chunked_body_is_refused_once_it_passes_the_limit(small: tuple[TestClient, Store, Keys]) -> None:
    client, _, h = small

    def chunks() -> Iterator[bytes]:
        body = _events_body(25_000)
        for i in range(0, len(body), 1_000):
            yield body[i : i + 1_000]

    r = client.post("/v1/events", content=chunks(), headers={**h["serving"], "Content-Type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413 and "20,000 bytes" in r.json()["detail"]
    small_chunks = iter([_events_body(1_500)])
    r = client.post("/v1/events", content=small_chunks, headers={**h["serving"], "Content-Type": "application/json"})
    assert r.status_code == 200


def test_an_endless_chunked_body_is_read_only_up_to_the_limit() -> None:
    """Through the ASGI interface: the app never pulls more than the limit (plus one chunk) of a body that never
    ends, and answers 413."""
    with _store() as (store, h):
        app = create_app(_state(store), limits=SMALL)
        pulled = 0
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal pulled
            pulled += 1
            return {"type": "http.request", "body": b" " * 1_000, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/events",
            "raw_path": b"/v1/events",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"x-api-key", h["serving"]["X-API-Key"].encode()),
                (b"content-type", b"application/json"),
                (b"transfer-encoding", b"chunked"),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=10))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert pulled <= SMALL.max_events_body_bytes // 1_000 + 1


# -- rate per key ---------------------------------------------------------------------------------------------------
def test_a_key_past_its_burst_gets_429_with_retry_after(small: tuple[TestClient, Store, Keys]) -> None:
    client, _, h = small
    assert [_rec(client, h["serving"]).status_code for _ in range(3)] == [200, 200, 200]
    r = _rec(client, h["serving"])
    assert r.status_code == 429 and "too many requests" in r.json()["detail"]
    assert int(r.headers["retry-after"]) >= 1
    assert _rec(client, h["other"]).status_code == 200  # one bucket per key
    # Without a key there is no bucket to take from: 401, never 429.
    assert [_rec(client, {}).status_code for _ in range(5)] == [401] * 5


def test_rate_limit_zero_turns_it_off() -> None:
    off = Limits(rate_limit_rps=0, rate_limit_burst=1)
    with _store() as (store, h), TestClient(create_app(_state(store), limits=off)) as client:
        assert {_rec(client, h["serving"]).status_code for _ in range(5)} == {200}


def test_token_buckets_refill_at_the_rate_up_to_the_burst() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(1) == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take(1) == 0.0
    now[0] += 3600  # refilled to the burst, not beyond
    assert [buckets.take(1) for _ in range(3)] == [0.0, 0.0, 0.0] and buckets.take(1) > 0
    assert buckets.take(2) == 0.0  # another key, another bucket


def test_token_buckets_forget_full_buckets_first_when_there_are_too_many_keys() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, burst=2, max_keys=3, clock=lambda: now[0])
    for key in (1, 2):
        buckets.take(key)
    now[0] += 10  # keys 1 and 2 have refilled
    for _ in range(3):
        buckets.take(3)  # key 3 is throttled
    buckets.take(4)  # at the limit: 1 and 2 go, 3 stays throttled
    assert buckets.take(3) > 0


def test_limits_defaults_are_the_settings_defaults() -> None:
    assert Limits.from_settings(Settings.model_construct()) == Limits()
    with pytest.raises(ConfigError, match="rate_limit_burst"):
        Limits(rate_limit_burst=0)


@pytest.mark.integration
def test_two_apps_share_one_bucket_per_key_in_redis(redis_server: str) -> None:
    import redis

    shared = Limits(rate_limit_rps=0.01, rate_limit_burst=3, redis_url=redis_server)
    with (
        _store() as (store, h),
        TestClient(create_app(_state(store), limits=shared)) as a,
        TestClient(create_app(_state(store), limits=shared)) as b,
    ):
        assert [_rec(a, h["serving"]).status_code, _rec(b, h["serving"]).status_code] == [200, 200]
        assert _rec(a, h["serving"]).status_code == 200
        for client in (b, a):  # the third request emptied the one bucket both apps take from
            r = _rec(client, h["serving"])
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert _rec(b, h["other"]).status_code == 200
    # The bucket is named by the key's hash, and expires once it would have refilled (burst / rate, + 1 s).
    name = REDIS_PREFIX + hashlib.sha256(h["serving"]["X-API-Key"].encode()).hexdigest()
    with redis.Redis.from_url(redis_server) as client:
        assert 0 < client.pttl(name) <= 301_000


def test_requests_pass_when_redis_does_not_answer(caplog: pytest.LogCaptureFixture) -> None:
    gone = Limits(rate_limit_rps=0.01, rate_limit_burst=1, redis_url="redis://127.0.0.1:1/0")
    with _store() as (store, h), TestClient(create_app(_state(store), limits=gone)) as client:
        assert [_rec(client, h["serving"]).status_code for _ in range(3)] == [200] * 3
    warnings = [r for r in caplog.records if "rate limit not enforced" in r.getMessage()]
    assert len(warnings) == 1 and h["serving"]["X-API-Key"] not in caplog.text


# -- protocol edges -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", f"/v1/ads/{ad_id(0, 0)}", "DELETE, GET, PUT"),
        ("POST", f"/v1/ads/{ad_id(0, 0)}", "DELETE, GET, PUT"),
        ("OPTIONS", "/v1/events", "POST"),
        ("GET", "/v1/events", "POST"),
        ("PATCH", "/v1/campaigns", "GET"),
        ("OPTIONS", "/ready", "GET"),
    ],
)
def test_405_lists_every_allowed_method(
    small: tuple[TestClient, Store, Keys], method: str, path: str, allow: str
) -> None:
    client, _, h = small
    r = client.request(method, path, headers=h["admin"])
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert method in r.json()["detail"] and allow in r.json()["detail"]


def test_ready_is_503_with_a_reason_on_an_empty_catalogue() -> None:
    with open_store("sqlite://") as store:
        state = ServerState(store, None, TokenSigner(SECRET))
        with TestClient(create_app(state)) as client:
            r = client.get("/ready")
            assert r.status_code == 503
            assert r.json()["status"] == "catalogue empty" and "empty" in r.json()["detail"]
            assert (r.json()["ads"], r.json()["campaigns"]) == (0, 0)
            fill(store)
            key = {"X-API-Key": create_api_key(store, "admin")[1]}
            assert client.post("/v1/admin/catalog/refresh", headers=key).status_code == 200
            assert client.get("/ready").status_code == 200


# -- logs -----------------------------------------------------------------------------------------------------------
def test_no_key_material_in_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with _store() as (store, h), TestClient(create_app(_state(store), limits=SMALL)) as client:
        secrets = [v["X-API-Key"] for v in h.values()]
        wrong = "adrec_000000000000_not-a-key-but-secret-looking-0123456789"
        assert _rec(client, h["serving"]).status_code == 200
        assert _rec(client, {"X-API-Key": wrong}).status_code == 401
        statuses = [_rec(client, h["serving"]).status_code for _ in range(3)]
        assert statuses[-1] == 429
        big = {**h["admin"], "Content-Type": "application/json"}
        assert client.put("/v1/ads/x", content=b" " * 3_000, headers=big).status_code == 413
        events = {**h["other"], "Content-Type": "application/json"}
        assert client.post("/v1/events", content=_events_body(200), headers=events).status_code == 200
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    for secret in [*secrets, wrong]:
        assert secret not in logged
        assert secret.split("_", 2)[-1] not in logged  # not even the random part


def test_health_probes_are_not_rate_limited() -> None:
    # A load balancer probing with a key must not be answered 429 (the bench's health ceiling met it at 16k/s).
    with open_store("sqlite://") as store:
        fill(store)
        state = ServerState(store, None, TokenSigner(SECRET), sync_interval_s=0)
        key = {"X-API-Key": create_api_key(store, "admin")[1]}
        with TestClient(create_app(state, limits=Limits(rate_limit_rps=0.01, rate_limit_burst=2))) as client:
            assert {client.get("/health", headers=key).status_code for _ in range(10)} == {200}
            assert {client.get("/ready", headers=key).status_code for _ in range(10)} == {200}
            assert [client.get("/v1/campaigns", headers=key).status_code for _ in range(3)][-1] == 429
