"""A real ``adrec serve`` process driven over HTTP: create a campaign → recommend → impression → click →
conversion → report, with the frequency cap and the daily budget enforced."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import blocks_interactions, fill, user_id

from adrec.models.artifact import Artifact
from adrec.models.itemknn import ItemKNN
from adrec.store import open_store

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    cmd += ["--port", str(port), "--explore-share", "1.0"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                pytest.fail(f"adrec serve exited: {server.stdout.read() if server.stdout else ''}")
            time.sleep(0.1)
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

            # Frequency cap: x-1 was shown once to this user; x-2 was not.
            again = http.get("/v1/recommendations", params={"user_id": user, "k": 2}, headers=s).json()
            assert "x-1" not in [x["ad_id"] for x in again["ads"]]
            assert "x-2" in [x["ad_id"] for x in again["ads"]]

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
