"""The HTTP API through FastAPI's test client: auth (401/403), validation (422 naming the field), the ad library,
events, reports, cold start, OpenAPI and model reload. The real-process test is test_serve_process.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_helpers import SECRET, ad_id, blocks_interactions, blocks_model, fill, user_id

from adrec.feedback.tokens import TokenSigner
from adrec.models.artifact import Artifact
from adrec.models.popularity import Popularity
from adrec.serving.api import ServerState, create_app
from adrec.serving.auth import create_api_key
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
    assert client.get("/v1/campaigns/cmp-1", headers=h["adv0"]).status_code == 404  # another advertiser's: as missing
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
    assert client.put("/v1/campaigns/cmp-1", json=body, headers=h["adv0"]).status_code == 409
    ad = {"ad_id": "x1", "campaign_id": "cmp-1", "title": "x"}
    assert client.put("/v1/ads/x1", json=ad, headers=h["adv0"]).status_code == 404
    r = client.get("/v1/reports/campaigns", params={"campaign_id": "cmp-1"}, headers=h["adv0"])
    assert r.status_code == 404


def test_an_advertiser_key_cannot_read_change_delete_or_adopt_another_advertisers_records(
    env: tuple[TestClient, Store, dict],
) -> None:
    # adv-0's key against adv-1's advertiser, campaign cmp-1 and ads ad-1-*. Before the fix, PUT /v1/ads/ad-1-0
    # with adv-0's own campaign in the body took the ad over (only the body's campaign was checked).
    client, store, h = env
    b = h["adv0"]
    before = (store.get_campaign("cmp-1"), store.get_ad(ad_id(1, 0)))

    def same_as_missing(method: str, path: str, missing: str, **kw: object) -> None:
        theirs = client.request(method, path, headers=b, **kw)  # type: ignore[arg-type]
        absent = client.request(method, missing, headers=b, **kw)  # type: ignore[arg-type]
        assert theirs.status_code == absent.status_code == 404, (path, theirs.text)
        # Nothing in the answer tells an existing foreign id from a missing one, the id itself aside.
        assert theirs.json()["detail"].replace(path.rsplit("/", 1)[1], "ID") == absent.json()["detail"].replace(
            missing.rsplit("/", 1)[1], "ID"
        )

    same_as_missing("GET", "/v1/advertisers/adv-1", "/v1/advertisers/nobody")
    same_as_missing("GET", "/v1/campaigns/cmp-1", "/v1/campaigns/nothing")
    same_as_missing("DELETE", "/v1/campaigns/cmp-1", "/v1/campaigns/nothing")
    same_as_missing("GET", f"/v1/ads/{ad_id(1, 0)}", "/v1/ads/nothing")
    same_as_missing("DELETE", f"/v1/ads/{ad_id(1, 0)}", "/v1/ads/nothing")
    r1 = client.get("/v1/reports/campaigns", params={"campaign_id": "cmp-1"}, headers=b)
    r2 = client.get("/v1/reports/campaigns", params={"campaign_id": "nothing"}, headers=b)
    assert r1.status_code == r2.status_code == 404
    # By body: a campaign under adv-1, an ad into cmp-1 — refused as if they did not exist.
    camp = {"campaign_id": "mine-2", "advertiser_id": "adv-1", "name": "x", "bid": 1}
    assert client.put("/v1/campaigns/mine-2", json=camp, headers=b).status_code == 404
    assert client.put("/v1/ads/new-1", json={"ad_id": "new-1", "campaign_id": "cmp-1"}, headers=b).status_code == 404
    # By id: taking over cmp-1 or adopting adv-1's ad into adv-0's own campaign — refused (409: the id is taken).
    camp = {"campaign_id": "cmp-1", "advertiser_id": "adv-0", "name": "mine now", "bid": 9}
    assert client.put("/v1/campaigns/cmp-1", json=camp, headers=b).status_code == 409
    adopt = {"ad_id": ad_id(1, 0), "campaign_id": "cmp-0", "title": "mine now"}
    r = client.put(f"/v1/ads/{ad_id(1, 0)}", json=adopt, headers=b)
    assert r.status_code == 409 and "not available" in r.json()["detail"]
    assert (store.get_campaign("cmp-1"), store.get_ad(ad_id(1, 0))) == before
    # Its own records it still reads and writes; admin keys may write anywhere.
    mine = {"ad_id": ad_id(0, 0), "campaign_id": "cmp-0", "title": "renamed"}
    assert client.put(f"/v1/ads/{ad_id(0, 0)}", json=mine, headers=b).status_code == 200
    assert client.put(f"/v1/ads/{ad_id(1, 0)}", json=adopt, headers=h["admin"]).status_code == 200


def test_serving_keys_never_see_bids(env: tuple[TestClient, Store, dict]) -> None:
    client, _, h = env
    params = {"user_id": user_id(0, 1), "k": 3}
    served = client.get("/v1/recommendations", params=params, headers=h["serving"]).json()["ads"]
    assert served and all("bid" not in a and "ecpm" not in a["explanation"] for a in served)
    assert all(a["price"] >= 0 and a["token"] and a["explanation"]["pctr"] > 0 for a in served)
    full = client.get("/v1/recommendations", params=params, headers=h["admin"]).json()["ads"]
    assert all(a["bid"] == 1.0 and a["explanation"]["ecpm"] > 0 for a in full)


def test_report_dates_must_be_real_days(env: tuple[TestClient, Store, dict]) -> None:
    client, _, h = env
    r = client.get("/v1/reports/campaigns", params={"start": "2026-13-45"}, headers=h["admin"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "start"]
    assert client.get("/v1/reports/campaigns", params={"end": "2026-02-28"}, headers=h["admin"]).status_code == 200


@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", " a", "x" * 201])
def test_user_ids_are_checked_alike_by_every_endpoint(env: tuple[TestClient, Store, dict], bad: str) -> None:
    client, _, h = env
    r = client.get("/v1/recommendations", params={"user_id": bad}, headers=h["serving"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "user_id"]
    assert client.put("/v1/users/x", json={"user_id": bad}, headers=h["admin"]).status_code == 422


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


def test_out_of_range_numbers_are_refused_before_the_write(env: tuple[TestClient, Store, dict]) -> None:
    # The probe's case: frequency.per_campaign = 10^30 was saved, then every catalogue rebuild answered 500.
    client, _, h = env
    base = {"campaign_id": "big", "advertiser_id": "adv-0", "name": "x", "bid": 1}
    for extra, loc in [
        ({"frequency": {"per_campaign": 10**30}}, ["body", "frequency", "per_campaign"]),
        ({"bid": 1e300}, ["body", "bid"]),
        ({"daily_budget": 1e12}, ["body", "daily_budget"]),
        ({"frequency": {"window_s": 1e15}}, ["body", "frequency", "window_s"]),
    ]:
        r = client.put("/v1/campaigns/big", json={**base, **extra}, headers=h["adv0"])
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, r.text
    assert client.get("/v1/campaigns/big", headers=h["admin"]).status_code == 404  # nothing was saved
    r = client.put("/v1/ads/big", json={"ad_id": "big", "campaign_id": "cmp-0", "price": 1e40}, headers=h["adv0"])
    assert r.status_code == 422


def test_one_bad_stored_row_is_quarantined_not_fatal(env: tuple[TestClient, Store, dict]) -> None:
    # A row out of range written around the API (an older version, by hand): the catalogue reloads without it,
    # says so, and a new server over the same store starts and serves.
    from sqlalchemy import text

    client, store, h = env
    engine = store._engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(text("""UPDATE campaigns SET frequency = '{"per_campaign": 1e30}' WHERE campaign_id = 'cmp-2'"""))
        conn.execute(text("UPDATE ads SET price = -5 WHERE ad_id = :a"), {"a": ad_id(0, 3)})
    r = client.post("/v1/admin/catalog/refresh", headers=h["admin"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert {(q["kind"], q["id"]) for q in body["quarantined"]} == {("campaign", "cmp-2"), ("ad", ad_id(0, 3))}
    assert "per_campaign" in next(q["error"] for q in body["quarantined"] if q["kind"] == "campaign")
    assert (body["campaigns"], body["ads"]) == (3, 19)
    served = client.get("/v1/recommendations", params={"user_id": user_id(2, 0), "k": 5}, headers=h["serving"])
    assert served.status_code == 200 and all(a["campaign_id"] != "cmp-2" for a in served.json()["ads"])
    # Other tenants' writes still work, and a server started now comes up.
    ok = {"campaign_id": "cmp-0", "advertiser_id": "adv-0", "name": "still fine", "bid": 2}
    assert client.put("/v1/campaigns/cmp-0", json=ok, headers=h["adv0"]).status_code == 200
    fresh = ServerState(store, None, TokenSigner(SECRET))
    assert fresh.pipeline.catalog.n_campaigns == 3 and len(fresh.pipeline.catalog.quarantined) == 2


def test_outstanding_tokens_clicked_in_one_batch_never_overspend(env: tuple[TestClient, Store, dict]) -> None:
    # The probe's case over HTTP: daily budget 20, CPC, asap; many users served, then every click in one batch.
    client, _, h = env
    camp = {"campaign_id": "cmp-0", "advertiser_id": "adv-0", "name": "x", "bid": 5, "daily_budget": 20}
    assert client.put("/v1/campaigns/cmp-0", json={**camp, "pacing": "asap"}, headers=h["adv0"]).status_code == 200
    tokens = []
    for n in range(40):
        r = client.get("/v1/recommendations", params={"user_id": user_id(0, n % 5), "k": 2}, headers=h["admin"])
        tokens += [(a["token"], a["price"]) for a in r.json()["ads"] if a["campaign_id"] == "cmp-0"]
    assert sum(p for _, p in tokens) > 20  # enough outstanding to overspend 20 without the ledger's cap
    events = [{"event_id": f"i{n}", "type": "impression", "token": t} for n, (t, _) in enumerate(tokens)]
    events += [{"event_id": f"c{n}", "type": "click", "token": t} for n, (t, _) in enumerate(tokens)]
    r = client.post("/v1/events", json={"events": events}, headers=h["serving"]).json()
    assert r["accepted"] == 2 * len(tokens) and r["rejected"] == []
    assert r["spend"] == pytest.approx(20.0)
    assert r["spend"] + r["unbilled"] == pytest.approx(sum(p for _, p in tokens))
    (row,) = client.get("/v1/reports/campaigns", params={"campaign_id": "cmp-0"}, headers=h["adv0"]).json()
    assert (row["spend"], row["unbilled"]) == (pytest.approx(20.0), pytest.approx(r["unbilled"]))
    # Spent: the campaign is no longer served.
    after = client.get("/v1/recommendations", params={"user_id": user_id(0, 1), "k": 5}, headers=h["serving"])
    assert all(a["campaign_id"] != "cmp-0" for a in after.json()["ads"])


def test_batched_impressions_over_http_cannot_pass_a_frequency_cap(env: tuple[TestClient, Store, dict]) -> None:
    # The probe's case: cap 2 per campaign per hour, 10 requests for one user, then the 10 impressions in one batch.
    client, _, h = env
    signer = TokenSigner(SECRET)
    camp = {"campaign_id": "cmp-0", "advertiser_id": "adv-0", "name": "x", "bid": 1}
    capped = {**camp, "frequency": {"per_campaign": 2, "window_s": 3600}}
    assert client.put("/v1/campaigns/cmp-0", json=capped, headers=h["adv0"]).status_code == 200
    served = []
    for _ in range(10):
        r = client.get("/v1/recommendations", params={"user_id": user_id(0, 1), "k": 1}, headers=h["serving"])
        served += [a["token"] for a in r.json()["ads"] if a["campaign_id"] == "cmp-0"]
    assert len(served) == 2  # serving counts its outstanding tokens
    # Tokens minted elsewhere (another worker, a replay) still meet the ledger's cap.
    now = time.time()
    minted = [
        signer.sign(Delivery(f"m{n}", user_id(0, 1), ad_id(0, n % 5), "cmp-0", "adv-0", "CPC", 0.5, now))
        for n in range(10)
    ]
    events = [{"event_id": f"i{n}", "type": "impression", "token": t} for n, t in enumerate(served + minted)]
    r = client.post("/v1/events", json={"events": events}, headers=h["serving"]).json()
    assert r["accepted"] == 2 and len(r["rejected"]) == 10
    assert all("frequency cap" in x["error"] for x in r["rejected"])


def test_a_second_process_catches_up_with_library_writes_and_model_reloads(tmp_path: Path) -> None:
    # Two ServerStates over one store file stand for two workers; sync() is what each runs every second.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    data = blocks_interactions()
    Artifact.create(Popularity().fit(data), data).save(tmp_path / "models" / "pop")
    with open_store(url) as a_store, open_store(url) as b_store:
        fill(a_store)
        a = ServerState(a_store, tmp_path / "models", TokenSigner(SECRET), sync_interval_s=0)
        b = ServerState(b_store, tmp_path / "models", TokenSigner(SECRET), sync_interval_s=0)
        key = {"X-API-Key": create_api_key(a_store, "admin")[1]}
        with TestClient(create_app(a)) as client:
            camp = {"campaign_id": "new", "advertiser_id": "adv-0", "name": "new", "bid": 1.0}
            assert client.put("/v1/campaigns/new", json=camp, headers=key).status_code == 200
            assert (a.pipeline.catalog.n_campaigns, b.pipeline.catalog.n_campaigns) == (5, 4)
            b.sync()
            assert b.pipeline.catalog.n_campaigns == 5
            Artifact.create(Popularity().fit(data), data).save(tmp_path / "models" / "pop-2")
            assert client.post("/v1/admin/models/reload", headers=key).json()["model_version"] == "pop-2"
        assert b.pipeline.model is not None and b.pipeline.model.version == "pop"
        b.sync()
        assert b.pipeline.model.version == "pop-2"
        # Nothing changed since: a sync reloads nothing (the same objects stay).
        model, catalog = b.pipeline.model, b.pipeline.catalog
        b.sync()
        a.sync()  # a made both changes itself: it does not redo them
        assert b.pipeline.model is model and b.pipeline.catalog is catalog
        assert a.seen == b.seen == a_store.versions()


def test_a_server_on_the_simulated_clock_serves_at_the_time_each_request_names() -> None:
    with open_store("sqlite://") as store:
        fill(store)
        key = {"X-API-Key": create_api_key(store, "serving")[1]}
        wall = ServerState(store, None, TokenSigner(SECRET))
        simulated = ServerState(store, None, TokenSigner(SECRET), simulated_clock=True)
        with TestClient(create_app(simulated)) as client, TestClient(create_app(wall)) as other:
            then = 1_600_000_000.5  # 2020: far from the wall clock
            params = {"user_id": user_id(1, 1), "k": 1}
            r = client.get("/v1/recommendations", params=params, headers={**key, "X-Adrec-Clock": str(then)})
            assert r.status_code == 200
            token = r.json()["ads"][0]["token"]
            assert TokenSigner(SECRET).verify(token, now=then).served_ts == then
            # Its events are checked against the time they name too (a token from 2020 is long expired by now).
            event = {"event_id": "e1", "type": "impression", "token": token, "ts": then + 1}
            ok = client.post("/v1/events", json={"events": [event]}, headers={**key, "X-Adrec-Clock": str(then + 2)})
            assert ok.status_code == 200 and ok.json()["accepted"] == 1
            for headers, message in (
                (key, "required"),
                ({**key, "X-Adrec-Clock": "soon"}, "must be Unix seconds"),
                ({**key, "X-Adrec-Clock": "nan"}, "must be Unix seconds"),
            ):
                bad = client.get("/v1/recommendations", params=params, headers=headers)
                assert bad.status_code == 422 and message in bad.text and "X-Adrec-Clock" in bad.text
            # A server on the wall clock refuses the header rather than ignore it.
            refused = other.get("/v1/recommendations", params=params, headers={**key, "X-Adrec-Clock": str(then)})
            assert refused.status_code == 422 and "--simulated-clock" in refused.text
            spec = client.get("/openapi.json").json()["paths"]
            for path, method in (("/v1/recommendations", "get"), ("/v1/events", "post")):
                assert "X-Adrec-Clock" in [p["name"] for p in spec[path][method]["parameters"]]


def test_a_client_request_id_is_echoed_and_seeds_the_draws_while_impression_ids_stay_unique() -> None:
    from adrec.data.schema import Ad
    from adrec.serving.pipeline import PipelineConfig

    with open_store("sqlite://") as store:
        fill(store)
        # Fresh ads the model never saw: half of every response's slots are drawn among them at random.
        store.upsert_ads([Ad(ad_id=f"fresh-{i}", campaign_id=f"cmp-{i % 4}", title=f"fresh {i}") for i in range(40)])
        state = ServerState(store, None, TokenSigner(SECRET), PipelineConfig(explore_share=0.5))
        state.pipeline.swap_model(blocks_model())
        key = {"X-API-Key": create_api_key(store, "serving")[1]}
        with TestClient(create_app(state)) as client:

            def ask(request_id: str | None) -> dict:
                params = {"user_id": user_id(1, 2), "k": 6, **({"request_id": request_id} if request_id else {})}
                r = client.get("/v1/recommendations", params=params, headers=key)
                assert r.status_code == 200, r.text
                return r.json()  # type: ignore[no-any-return]

            first, again, other = ask("client-7:a"), ask("client-7:a"), ask("client-8:b")
            assert first["request_id"] == again["request_id"] == "client-7:a"
            drawn = [a["ad_id"] for a in first["ads"] if a["ad_id"].startswith("fresh-")]
            assert len(drawn) >= 3 and drawn == [a["ad_id"] for a in again["ads"] if a["ad_id"].startswith("fresh-")]
            assert drawn != [a["ad_id"] for a in other["ads"] if a["ad_id"].startswith("fresh-")]
            # The same id twice: the tokens still name distinct served ads, so the ledger bills each on its own.
            signer = TokenSigner(SECRET)
            iids = [signer.verify(a["token"]).iid for a in first["ads"] + again["ads"]]
            assert len(set(iids)) == len(iids)
            for bad in ("x" * 41, "has space", ""):
                r = client.get("/v1/recommendations", params={"user_id": "u", "request_id": bad}, headers=key)
                assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "request_id"], bad
