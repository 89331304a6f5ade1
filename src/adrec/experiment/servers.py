"""Where an arm's requests go: the decision pipeline in this process, or a real ``adrec serve`` process over HTTP.

Both answer the same calls: an ad request at a simulated time, a batch of events, a retrained model swapped in, a
catalogue refresh. :class:`InProcess` calls the :class:`~adrec.serving.Pipeline` directly. :class:`OverHttp`
starts ``adrec serve --simulated-clock`` on the arm's store (a file the server process opens), with a new admin key,
the arm's pipeline settings and its models folder, and then speaks to it only through the API: ``GET
/v1/recommendations`` and ``POST /v1/events`` carry their simulated time in ``X-Adrec-Clock``; a retrained model is
saved atomically into the models folder and swapped in with ``POST /v1/admin/models/reload``; a bid change is
followed by ``POST /v1/admin/catalog/refresh``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from adrec.data.schema import EventType
from adrec.exceptions import ConfigError
from adrec.feedback.ingest import RawFeedback, ingest_feedback
from adrec.feedback.tokens import TokenSigner
from adrec.models.artifact import Artifact
from adrec.models.ctr import ClickModel
from adrec.serving.api.state import CLOCK_HEADER
from adrec.serving.auth import create_api_key
from adrec.serving.pipeline import CLICK_MODEL_DIR, Pipeline, PipelineConfig, ServingModel
from adrec.store.base import Store

__all__ = ["ArmServer", "InProcess", "OverHttp", "Served"]


@dataclass(frozen=True)
class Served:
    """What the loop needs of a served ad."""

    ad_id: str
    pricing_model: str
    price: float
    token: str
    pctr: float


class ArmServer(Protocol):
    """An arm's serving, wherever it runs."""

    def recommend(self, user_id: str, k: int, now: float, placement: str, request_id: str) -> list[Served]: ...
    def send(self, events: Sequence[RawFeedback], now: float) -> list[tuple[int, str, str]]: ...
    def swap(self, artifact: Artifact, version: str, click: ClickModel | None = None) -> None: ...
    def refresh_catalog(self) -> None: ...
    def close(self) -> None: ...


class InProcess:
    """The arm's pipeline in this process (the fast path, and the only one for the reference arms)."""

    def __init__(self, store: Store, model: ServingModel | None, signer: TokenSigner, config: PipelineConfig) -> None:
        self.store, self.signer = store, signer
        self.pipeline = Pipeline(store, model, signer, config)

    def recommend(self, user_id: str, k: int, now: float, placement: str, request_id: str) -> list[Served]:
        response = self.pipeline.recommend(user_id, k=k, now=now, placement=placement, request_id=request_id)
        return [Served(a.ad_id, a.pricing_model, a.price, a.token, a.pctr) for a in response.ads]

    def send(self, events: Sequence[RawFeedback], now: float) -> list[tuple[int, str, str]]:
        report = ingest_feedback(self.store, self.signer, events, now=now)
        self.pipeline.refresh_spend()
        return report.rejected

    def swap(self, artifact: Artifact, version: str, click: ClickModel | None = None) -> None:
        model = ServingModel.from_artifact(artifact, self.store, version=version, click=click)
        self.pipeline.swap_model(model, relearn=True)

    def refresh_catalog(self) -> None:
        self.pipeline.refresh_catalog()  # as the API does after a campaign write

    def close(self) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_TYPES = {EventType.IMPRESSION: "impression", EventType.CLICK: "click", EventType.CONVERSION: "conversion"}


class OverHttp:
    """A real ``adrec serve`` process serving the arm's store, driven over HTTP (see the module docs).

    Parameters
    ----------
    store, url
        The arm's store, and the URL the server opens it by (a file or a database server: not in memory).
    name
        The arm's name (the models folder's and the log's).
    secret
        The token secret the server signs with.
    config
        The arm's pipeline settings (the server reads them from its environment).
    artifact
        The initial model (None: the server serves without one).
    workdir
        Where the models folder and the server's log go (a temporary folder by default).
    """

    def __init__(
        self,
        store: Store,
        url: str,
        name: str,
        secret: str,
        config: PipelineConfig,
        artifact: Artifact | None,
        workdir: Path | None = None,
        *,
        click: ClickModel | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        if url in ("sqlite://", "sqlite:///:memory:") or not url:
            raise ConfigError(
                f"arm {name}: an arm served over HTTP needs a store a server process can open, not {url!r}"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix=f"adrec-arm-{name}-") if workdir is None else None
        self.root = Path(self._tmp.name if self._tmp is not None else str(workdir))
        self.models = self.root / "models"
        self.models.mkdir(parents=True, exist_ok=True)
        self.name = name
        _, self.key = create_api_key(store, "admin", name=f"experiment arm {name}")
        if artifact is not None:
            self._save(artifact, f"{name}-0", click)
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "ADREC_TOKEN_SECRET": secret, "ADREC_SIMULATED_CLOCK": "true"}
        env.update({f"ADREC_{f.name.upper()}": str(getattr(config, f.name)) for f in dataclasses.fields(config)})
        env.pop("ADREC_SERVE_SETTINGS", None)
        command = [sys.executable, "-m", "adrec.cli.main", "serve", "--db", url, "--port", str(port)]
        command += ["--models", str(self.models)] if artifact is not None else []
        self.log = self.root / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.base, headers={"X-API-Key": self.key}, timeout=60.0)
        self._wait(start_timeout_s)

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"adrec serve for arm {self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if self.client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"adrec serve for arm {self.name} did not get ready within {seconds:g} s")

    def _save(self, artifact: Artifact, version: str, click: ClickModel | None = None) -> None:
        """Save (the click model in the version's ``ctr/``) and point ``CURRENT`` at it, atomically (written
        whole, then renamed: a reader never sees half)."""
        artifact.save(self.models / version)
        if click is not None:
            click.save(self.models / version / CLICK_MODEL_DIR)
        partial = self.models / ".CURRENT.partial"
        partial.write_text(version + "\n", encoding="utf-8")
        os.replace(partial, self.models / "CURRENT")

    def _call(self, method: str, path: str, now: float | None = None, **kwargs: Any) -> Any:
        headers = {CLOCK_HEADER: repr(now)} if now is not None else {}
        response = self.client.request(method, path, headers=headers, **kwargs)
        if response.status_code != 200:
            raise RuntimeError(
                f"arm {self.name}: {method} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return response.json()

    def recommend(self, user_id: str, k: int, now: float, placement: str, request_id: str) -> list[Served]:
        # The loop's request id seeds the server's draws as it seeds the in-process pipeline's: the same exploration.
        params = {"user_id": user_id, "k": k, "placement": placement, "request_id": request_id}
        body = self._call("GET", "/v1/recommendations", now, params=params)
        return [
            Served(a["ad_id"], a["pricing_model"], a["price"], a["token"], a["explanation"]["pctr"])
            for a in body["ads"]
        ]

    def send(self, events: Sequence[RawFeedback], now: float) -> list[tuple[int, str, str]]:
        payload = []
        for e in events:
            kind = e.type if isinstance(e.type, str) else _TYPES[EventType(int(e.type))]
            item: dict[str, Any] = {"event_id": e.event_id, "type": kind, "token": e.token}
            if e.ts is not None:
                item["ts"] = e.ts
            if e.value is not None:
                item["value"] = e.value
            payload.append(item)
        rejected = []
        for start in range(0, len(payload), 50_000):
            body = self._call("POST", "/v1/events", now, json={"events": payload[start : start + 50_000]})
            rejected += [(r["index"] + start, r["event_id"], r["error"]) for r in body["rejected"]]
        return rejected

    def swap(self, artifact: Artifact, version: str, click: ClickModel | None = None) -> None:
        self._save(artifact, version, click)
        self._call("POST", "/v1/admin/models/reload")

    def refresh_catalog(self) -> None:
        self._call("POST", "/v1/admin/catalog/refresh")

    def close(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
