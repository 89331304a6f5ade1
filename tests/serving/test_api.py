"""The HTTP API through FastAPI's test client: auth (401/403), validation (422 naming the field), the ad library,
events, reports, cold start, OpenAPI and model reload. The real-process test is test_serve_process.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from serving_helpers import SECRET, ad_id, blocks_model, fill, user_id

from adrec.serving.api import ServerState, create_app
from adrec.serving.auth import create_api_key
from adrec.serving.tokens import TokenSigner
from adrec.store import Delivery, Store, open_store


@pytest.fixture
def env() -> Iterator[tuple[TestClient, Store, dict[str, dict[str, str]]]]:
    with open_store("sqlite://") as store:
        fill(store)
        state = ServerState(store, None, TokenSigner(SECRET))
        state.pipeline.swap_model(blocks_model())
        keys = {
            "admin": create_api_key(store, "admin")[1],
            "serving": create_api_key(store, "serving")[1],
            "adv0": create_api_key(store, "advertiser", advertiser_id="adv-0")[1],
        }
        with TestClient(create_app(state)) as client:
            yield client, store, {name: {"X-API-Key": key} for name, key in keys.items()}


def test_missing_or_wrong_key_is_401_and_wrong_role_is_403(env: tuple[TestClient, Store, dict]) -> None:
    client, _, h = env
    assert client.get("/v1/recommendations", params={"user_id": "x"}).status_code == 401
    assert client.get("/v1/recommendations", params={"user_id": "x"}, headers={"X-API-Key": "nope"}).status_code == 401
    assert client.get("/v1/recommendations", params={"user_id": "x"}, headers=h["adv0"]).status_code == 403
    assert client.put("/v1/users/x", json={"user_id": "x"}, headers=h["serving"]).status_code == 403
    assert client.get("/v1/campaigns/cmp-1", headers=h["adv0"]).status_code == 403  # another advertiser's
    assert client.get("/v1/campaigns/cmp-0", headers=h["adv0"]).status_code == 200
    own = client.get("/v1/campaigns", headers=h["adv0"]).json()
    assert [c["campaign_id"] for c in own] == ["cmp-0"]
    assert client.get("/health").status_code == 200 and client.get("/ready").json()["status"] == "ready"


def test_input_errors_are_422_naming_the_field(env: tuple[TestClient, Store, dict]) -> None:
    client, _, h = env
    r = client.get("/v1/recommendations", params={"user_id": "x", "k": 0}, headers=h["serving"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "k"]
    r = client.get("/v1/recommendations", params={"user_id": "x", "device": "fridge"}, headers=h["serving"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "device"]
    r = client.get("/v1/recommendations", params={"k": 3}, headers=h["serving"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "user_id"]
    body = {"campaign_id": "c9", "advertiser_id": "adv-0", "name": "x", "bid": -1}
    r = client.put("/v1/campaigns/c9", json=body, headers=h["admin"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "bid"]
    r = client.put("/v1/campaigns/other", json={**body, "bid": 1}, headers=h["admin"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["campaign_id"]
    r = client.post(
        "/v1/events", json={"events": [{"event_id": "e", "type": "view", "token": "x" * 20}]}, headers=h["serving"]
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 0, "type"]


def _events(*events: str) -> str:
    """A raw events body (raw: JSON encoders refuse NaN and Infinity)."""
    return '{"events": [' + ", ".join(events) + "]}"


_TOKEN = '"token": "xxxxxxxxxxxxxxxxxxxx"'
_GOOD = f'{{"event_id": "e", "type": "impression", {_TOKEN}}}'


@pytest.mark.parametrize(
    ("content", "content_type", "loc"),
    [
        (_events(_GOOD, _GOOD, _GOOD, '{"event_id": "e3", "type": "click", "token": "short"}'), None, [3, "token"]),
        (_events(f'{{"event_id": "e0", "type": "click", "ts": NaN, {_TOKEN}}}'), None, [0, "ts"]),
        (_events(f'{{"event_id": "e0", "type": "click", "value": Infinity, {_TOKEN}}}'), None, [0, "value"]),
        (_events(f'{{"type": "click", {_TOKEN}}}'), None, [0, "event_id"]),
        (_events(), None, []),
        ('{"events": [', None, None),
        ("", None, None),
        (_events(_GOOD), "text/plain", None),
    ],
)
def test_malformed_event_bodies_are_422_naming_the_field(
    env: tuple[TestClient, Store, dict], content: str, content_type: str | None, loc: list[object] | None
) -> None:
    client, store, h = env
    headers = {**h["serving"], "Content-Type": content_type or "application/json"}
    r = client.post("/v1/events", content=content, headers=headers)
    assert r.status_code == 422
    where = r.json()["detail"][0]["loc"]
    assert where[0] == "body"
    if loc is not None:
        assert where == ["body", "events", *loc]
    assert store.count_events() == 0
    # Authentication comes first: without a key the body is not looked at.
    assert client.post("/v1/events", content=content, headers={"Content-Type": "application/json"}).status_code == 401


def test_unknown_user_is_served_by_cold_start(env: tuple[TestClient, Store, dict]) -> None:
    client, _, h = env
    r = client.get("/v1/recommendations", params={"user_id": "stranger", "k": 3}, headers=h["serving"])
    assert r.status_code == 200
    assert r.json()["cold_start"] is True and len(r.json()["ads"]) == 3


def test_query_options_reach_the_pipeline(env: tuple[TestClient, Store, dict]) -> None:
    client, _, h = env
    params = {"user_id": user_id(0, 1), "k": 20, "exclude_advertisers": ["adv-0", "adv-2"]}
    ads = client.get("/v1/recommendations", params=params, headers=h["serving"]).json()["ads"]
    assert ads and {a["advertiser_id"] for a in ads} <= {"adv-1", "adv-3"}
    assert len(client.get("/v1/recommendations", params={**params, "k": 1}, headers=h["serving"]).json()["ads"]) == 1


def test_advertiser_cannot_write_into_another_advertiser(env: tuple[TestClient, Store, dict]) -> None:
    client, _, h = env
    body = {"campaign_id": "cmp-1", "advertiser_id": "adv-0", "name": "takeover", "bid": 9}
    assert client.put("/v1/campaigns/cmp-1", json=body, headers=h["adv0"]).status_code == 403
    ad = {"ad_id": "x1", "campaign_id": "cmp-1", "title": "x"}
    assert client.put("/v1/ads/x1", json=ad, headers=h["adv0"]).status_code == 403
    r = client.get("/v1/reports/campaigns", params={"campaign_id": "cmp-1"}, headers=h["adv0"])
    assert r.status_code == 403


def test_serve_click_report_flow(env: tuple[TestClient, Store, dict]) -> None:
    client, store, h = env
    rec = client.get("/v1/recommendations", params={"user_id": user_id(0, 1), "k": 2}, headers=h["serving"]).json()
    top = rec["ads"][0]
    assert top["ad_id"] == ad_id(0, 1) and top["explanation"]["source"] == "model"
    token = top["token"]
    events = [
        {"event_id": "i1", "type": "impression", "token": token},
        {"event_id": "c1", "type": "click", "token": token},
        {"event_id": "f1", "type": "click", "token": token[:-3] + "abc"},  # forged
    ]
    r = client.post("/v1/events", json={"events": events}, headers=h["serving"]).json()
    assert (r["accepted"], r["duplicates"]) == (2, 0)
    assert [x["index"] for x in r["rejected"]] == [2] and "signature" in r["rejected"][0]["error"]
    assert r["rejected"][0]["event_id"] == "f1"
    assert r["spend"] == pytest.approx(top["price"])
    again = client.post("/v1/events", json={"events": events[:2]}, headers=h["serving"]).json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    report = client.get("/v1/reports/campaigns", headers=h["adv0"]).json()
    assert [(x["campaign_id"], x["impressions"], x["clicks"]) for x in report] == [("cmp-0", 1, 1)]
    assert report[0]["cpc"] == pytest.approx(top["price"])
    assert client.delete(f"/v1/users/{user_id(0, 1)}", headers=h["admin"]).json()["events"] == 2
    assert store.delivery_times(user_id(0, 1), 0.0) == []


def test_events_are_each_accepted_rejected_or_acknowledged(env: tuple[TestClient, Store, dict]) -> None:
    client, store, h = env
    signer = TokenSigner(SECRET)
    now = time.time()
    a, b = (
        signer.sign(Delivery(f"r-{x}", user_id(0, 0), ad_id(0, 0), "cmp-0", "adv-0", "CPC", 0.7, now)) for x in "ab"
    )
    events = [
        {"event_id": "ia", "type": "impression", "token": a, "ts": now},
        {"event_id": "ia", "type": "impression", "token": a, "ts": now},  # the same event twice in one batch
        {"event_id": "cb", "type": "click", "token": b, "ts": now + 1},  # no impression of b
        {"event_id": "cf", "type": "click", "token": a[:-4] + "AAAA", "ts": now + 1},  # forged
        {"event_id": "ca", "type": "click", "token": a, "ts": now + 1},
    ]
    r = client.post("/v1/events", json={"events": events}, headers=h["serving"]).json()
    assert (r["received"], r["accepted"], r["duplicates"], r["spend"]) == (5, 2, 1, pytest.approx(0.7))
    rejected = {x["index"]: (x["event_id"], x["error"]) for x in r["rejected"]}
    assert rejected.keys() == {2, 3}
    assert rejected[2][0] == "cb" and "without a recorded impression" in rejected[2][1]
    assert rejected[3][0] == "cf" and "signature" in rejected[3][1]
    again = client.post("/v1/events", json={"events": events}, headers=h["serving"]).json()
    assert (again["accepted"], again["duplicates"], again["spend"]) == (0, 3, 0.0)
    assert [x["index"] for x in again["rejected"]] == [2, 3]
    (row,) = store.delivery_report()
    assert (row.campaign_id, row.impressions, row.clicks, row.spend) == ("cmp-0", 1, 1, pytest.approx(0.7))


def test_openapi_is_served_and_valid(env: tuple[TestClient, Store, dict]) -> None:
    from openapi_spec_validator import validate

    client, _, _ = env
    spec = client.get("/openapi.json").json()
    validate(spec)
    assert {"/v1/recommendations", "/v1/events", "/v1/reports/campaigns"} <= set(spec["paths"])
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]
    assert body["required"] is True
    events = body["content"]["application/json"]["schema"]["properties"]["events"]
    assert events["type"] == "array" and events["minItems"] == 1
    assert set(events["items"]["required"]) == {"event_id", "type", "token"}
    assert set(events["items"]["properties"]) == {"event_id", "type", "token", "ts", "value"}
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    params = {p["name"]: p for p in spec["paths"]["/v1/recommendations"]["get"]["parameters"]}
    assert params["user_id"]["required"] is True and params["k"]["schema"]["maximum"] == 100
    assert params["exclude_advertisers"]["schema"]["type"] == "array"
    assert "mobile" in str(params["device"]["schema"])  # the enum is inlined, not a dangling $ref
    assert spec["paths"]["/v1/recommendations"]["get"]["security"] == [{"APIKeyHeader": []}]
