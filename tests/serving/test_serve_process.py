"""A real ``adrec serve`` process driven over HTTP: create a campaign → recommend → impression → click →
conversion → report, with the frequency cap and the daily budget enforced."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import blocks_interactions, fill, user_id

from adrec.data.schema import Ad
from adrec.models.artifact import Artifact
from adrec.models.itemknn import ItemKNN
from adrec.store import open_store

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(server: subprocess.Popen[Any], url: str, output: Callable[[], str], seconds: float = 20.0) -> None:
    """Until ``url`` answers 200; fail with the server's output if it exits first or never answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            pytest.fail(f"adrec serve exited: {output()}")
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {seconds} s")


def _adrec(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "adrec.cli.main", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_campaign_to_report_through_a_real_server(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'market.db'}"
    with open_store(db) as store:
        fill(store)
    data = blocks_interactions()
    Artifact.create(ItemKNN().fit(data), data).save(tmp_path / "models" / "knn")
    env = {**os.environ, "ADREC_PROGRESS": "false"}
    admin = _adrec("keys", "create", "--role", "admin", "--db", db, env=env).strip().splitlines()[-1]
    serving = _adrec("keys", "create", "--role", "serving", "--db", db, env=env).strip().splitlines()[-1]
    port = _free_port()
    cmd = [sys.executable, "-m", "adrec.cli.main", "serve", "--db", db, "--models", str(tmp_path / "models")]
    cmd += ["--port", str(port), "--explore-share", "1.0", "--create-token-secret"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(server, f"{base}/ready", lambda: server.stdout.read() if server.stdout else "")
        a = {"X-API-Key": admin}
        s = {"X-API-Key": serving}
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.put("/v1/advertisers/adv-x", json={"advertiser_id": "adv-x", "name": "X"}, headers=a).is_success
            campaign = {
                "campaign_id": "camp-x",
                "advertiser_id": "adv-x",
                "name": "launch",
                "pricing_model": "CPC",
                "bid": 5.0,
                "daily_budget": 100.0,
                "pacing": "asap",
                "frequency": {"per_ad": 1},
            }
            assert http.put("/v1/campaigns/camp-x", json=campaign, headers=a).is_success
            for ad in ("x-1", "x-2"):
                body = {"ad_id": ad, "campaign_id": "camp-x", "title": f"launch {ad}", "category": "new"}
                assert http.put(f"/v1/ads/{ad}", json=body, headers=a).is_success
            adv_key = _adrec("keys", "create", "--role", "advertiser", "--advertiser", "adv-x", "--db", db, env=env)
            adv = {"X-API-Key": adv_key.strip().splitlines()[-1]}

            user = user_id(0, 0)
            rec = http.get("/v1/recommendations", params={"user_id": user, "k": 2}, headers=s).json()
            served = {x["ad_id"]: x for x in rec["ads"]}
            assert set(served) == {"x-1", "x-2"}  # fresh ads, explored (share 1.0)
            x1 = served["x-1"]
            assert x1["explanation"]["source"] == "explore" and 0 < x1["price"] <= 5.0
            events = [
                {"event_id": "imp-1", "type": "impression", "token": x1["token"]},
                {"event_id": "clk-1", "type": "click", "token": x1["token"]},
                {"event_id": "cnv-1", "type": "conversion", "token": x1["token"], "value": 42.0},
            ]
            ack = http.post("/v1/events", json={"events": events}, headers=s).json()
            assert (ack["accepted"], ack["rejected"]) == (3, [])
            resend = http.post("/v1/events", json={"events": events}, headers=s).json()
            assert (resend["accepted"], resend["duplicates"]) == (0, 3)

            (row,) = http.get("/v1/reports/campaigns", headers=adv).json()
            assert (row["campaign_id"], row["impressions"], row["clicks"], row["conversions"]) == ("camp-x", 1, 1, 1)
            assert row["spend"] == pytest.approx(x1["price"]) and row["cpa"] == pytest.approx(x1["price"])

            # Frequency cap (1 per ad): x-1 was shown once to this user, and x-2 was served to them too — its token
            # is outstanding (no impression reported yet) and serving counts it, so neither is served again.
            again = http.get("/v1/recommendations", params={"user_id": user, "k": 2}, headers=s).json()
            assert "x-1" not in [x["ad_id"] for x in again["ads"]]
            assert "x-2" not in [x["ad_id"] for x in again["ads"]]

            # Budget: below what was spent today, the campaign stops serving.
            lowered = {**campaign, "daily_budget": x1["price"] / 2}
            assert http.put("/v1/campaigns/camp-x", json=lowered, headers=adv).is_success
            other = http.get("/v1/recommendations", params={"user_id": user_id(1, 1), "k": 3}, headers=s).json()
            assert other["ads"] and all(x["campaign_id"] != "camp-x" for x in other["ads"])
            assert http.get("/v1/campaigns/camp-x", headers={"X-API-Key": "wrong"}).status_code == 401

            # Hot swap: a newly trained model is loaded while clients keep asking; no request fails.
            Artifact.create(ItemKNN(k_neighbors=5).fit(data), data).save(tmp_path / "models" / "knn-2")
            statuses: list[int] = []
            versions: set[str] = set()
            stop = threading.Event()

            def client() -> None:
                with httpx.Client(base_url=base, timeout=10, headers=s) as c:
                    while not stop.is_set():
                        r = c.get("/v1/recommendations", params={"user_id": user_id(2, 2), "k": 3})
                        statuses.append(r.status_code)
                        if r.status_code == 200:
                            versions.add(r.json()["model_version"])

            threads = [threading.Thread(target=client) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            swapped = http.post("/v1/admin/models/reload", headers=a)
            time.sleep(0.3)
            stop.set()
            for t in threads:
                t.join()
            assert swapped.status_code == 200 and swapped.json()["model_version"] == "knn-2"
            assert statuses and set(statuses) == {200}
            assert versions == {"knn", "knn-2"}
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def test_a_real_server_refuses_a_missing_store_enforces_its_limits_and_logs_no_keys(tmp_path: Path) -> None:
    """`adrec serve` refuses a store that does not exist; with --create it starts on an empty one (not ready), and
    its workers apply the limits of the settings: 413 by Content-Length and for a chunked body, 429 past the
    burst. Its log, at debug level with uvicorn's access log, holds no key."""
    db_path = tmp_path / "store" / "market.db"
    db = f"sqlite:///{db_path}"
    env = {
        **os.environ,
        "ADREC_PROGRESS": "false",
        "ADREC_MAX_BODY_BYTES": "1000",
        "ADREC_RATE_LIMIT_RPS": "0.01",
        "ADREC_RATE_LIMIT_BURST": "5",
    }
    port = _free_port()
    # Without --models (no model: cold start only) the secret is kept in the working directory.
    cmd = [sys.executable, "-m", "adrec.cli.main", "serve", "--db", db, "--port", str(port)]
    run = {"env": env, "cwd": tmp_path}
    refused = subprocess.run([*cmd, "--create-token-secret"], capture_output=True, text=True, timeout=60, **run)
    assert refused.returncode == 1 and "no adrec store" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [*cmd, "--create", "--create-token-secret", "--log-level", "debug"], stdout=log, stderr=log, **run
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(server, f"{base}/health", log_path.read_text)
        assert httpx.get(f"{base}/ready", timeout=5).status_code == 503  # an empty catalogue
        key = _adrec("keys", "create", "--role", "admin", "--db", db, env=env).strip().splitlines()[-1]
        h = {"X-API-Key": key, "Content-Type": "application/json"}
        with httpx.Client(base_url=base, timeout=10) as http:
            big = http.put("/v1/advertisers/a", content=b" " * 5_000, headers=h)
            assert big.status_code == 413 and "1,000 bytes" in big.json()["detail"]
            chunked = http.put("/v1/advertisers/a", content=iter([b" " * 800] * 4), headers=h)
            assert chunked.status_code == 413 and "1,000 bytes" in chunked.json()["detail"]
            statuses = [http.get("/v1/campaigns", headers=h) for _ in range(5)]
            assert statuses[-1].status_code == 429 and int(statuses[-1].headers["retry-after"]) >= 1
            assert http.get("/v1/campaigns", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)
    logged = log_path.read_text()
    assert "GET /v1/campaigns" in logged and " 429" in logged  # the access log was on
    assert key not in logged and key.split("_", 2)[-1] not in logged and "wrong-key-0123456789" not in logged


def test_two_workers_agree_within_two_seconds_on_library_changes_and_model_reloads(tmp_path: Path) -> None:
    """`adrec serve --workers 2`: a campaign written through one worker, an ad written around the API (a script on
    the store) and a model reload asked of one worker reach both workers within 2 s (each polls the store's
    versions every second)."""
    db = f"sqlite:///{tmp_path / 'market.db'}"
    with open_store(db) as store:
        fill(store)
    data = blocks_interactions()
    Artifact.create(ItemKNN().fit(data), data).save(tmp_path / "models" / "knn")
    env = {**os.environ, "ADREC_PROGRESS": "false"}
    admin = {"X-API-Key": _adrec("keys", "create", "--role", "admin", "--db", db, env=env).strip().splitlines()[-1]}
    port = _free_port()
    cmd = [sys.executable, "-m", "adrec.cli.main", "serve", "--db", db, "--models", str(tmp_path / "models")]
    cmd += ["--port", str(port), "--workers", "2", "--create-token-secret"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def every_worker(check: object, within: float = 2.0) -> float:
        """Seconds until /ready of both workers (fresh connections spread over them) passes ``check``."""
        t0 = time.monotonic()
        good: set[int] = set()
        workers: set[int] = set()
        while time.monotonic() - t0 < within + 1.0:
            try:
                r = httpx.get(f"{base}/ready", timeout=2, headers={"Connection": "close"}).json()
            except httpx.TransportError:
                continue
            workers.add(r["worker"])
            if check(r):  # type: ignore[operator]
                good.add(r["worker"])
            else:
                good.discard(r["worker"])
            if len(workers) == 2 and good == workers:
                return time.monotonic() - t0
        pytest.fail(f"workers {workers}, up to date: {good} after {within + 1.0} s")

    try:
        _wait_for(server, f"{base}/ready", lambda: server.stdout.read() if server.stdout else "", seconds=30)
        assert every_worker(lambda r: r["campaigns"] == 4 and r["model_version"] == "knn", within=30) < 30
        camp = {"campaign_id": "new", "advertiser_id": "adv-0", "name": "new", "bid": 1.0}
        assert httpx.put(f"{base}/v1/campaigns/new", json=camp, headers=admin).status_code == 200
        assert every_worker(lambda r: r["campaigns"] == 5) <= 2.0
        with open_store(db) as store:  # around the API
            store.upsert_ads([Ad(ad_id="script-ad", campaign_id="new")])
        assert every_worker(lambda r: r["ads"] == 21) <= 2.0
        Artifact.create(ItemKNN(k_neighbors=5).fit(data), data).save(tmp_path / "models" / "knn-2")
        swapped = httpx.post(f"{base}/v1/admin/models/reload", headers=admin, timeout=30)
        assert swapped.status_code == 200 and swapped.json()["model_version"] == "knn-2"
        assert every_worker(lambda r: r["model_version"] == "knn-2") <= 2.0
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
