"""What a running server holds: the store, the decision pipeline, API keys and the models folder; and how each
serving process keeps up with changes that other processes make."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from adrec.config import Settings
from adrec.exceptions import ConfigError, NotFoundError, ValidationError
from adrec.feedback.tokens import TokenSigner
from adrec.serving.auth import KeyCache
from adrec.serving.pipeline import Pipeline, PipelineConfig, ServingModel
from adrec.store.base import Store, open_store

__all__ = ["CLOCK_HEADER", "ServerState"]

#: The header that carries a request's time to a server on the simulated clock.
CLOCK_HEADER = "X-Adrec-Clock"

log = logging.getLogger(__name__)


class ServerState:
    """What the running app holds: the store, the pipeline (model + catalogue), keys and the models folder.

    Several processes may serve one store (``adrec serve --workers N``, or several servers): each holds its own
    catalogue and model. Every change that one of them makes or sees is stamped in the store (:meth:`Store.versions`:
    ``catalog`` rises with every write of campaigns or ads, by anyone; ``model`` with every model reload), and
    :meth:`sync`, which the app runs every ``sync_interval_s`` seconds, brings this process up to the stamps.
    """

    def __init__(
        self,
        store: Store,
        models_dir: Path | None,
        signer: TokenSigner,
        config: PipelineConfig | None = None,
        *,
        index_kind: str = "auto",
        index_params: dict[str, Any] | None = None,
        sync_interval_s: float = 1.0,
        simulated_clock: bool = False,
    ) -> None:
        self.store = store
        self.simulated_clock = simulated_clock
        """Requests carry their time (:meth:`request_time`) instead of the server reading the wall clock."""
        self.models_dir = models_dir
        self.signer = signer
        self.index_kind = index_kind
        self.index_params = index_params or {}
        self.sync_interval_s = sync_interval_s
        self.seen = store.versions()  # read before loading: a change made meanwhile is caught by the next sync
        model = self._load(models_dir) if models_dir is not None else None
        self.pipeline = Pipeline(store, model, signer, config)
        self.keys = KeyCache(store)
        self._reload_lock = threading.Lock()
        self.started = time.time()

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerState:
        """Open the store (it must exist) and load the model the settings name."""
        if not settings.token_secret:
            raise ConfigError("token_secret is not set (start the server with `adrec serve`, which resolves it)")
        params = {"nprobe": settings.nprobe} if settings.index == "ivf" else {"ef_search": settings.ef_search}
        store = open_store(settings.db_url, create=False)
        try:
            return cls(
                store,
                settings.models_dir,
                TokenSigner(settings.token_secret),
                PipelineConfig.from_settings(settings),
                index_kind=settings.index,
                index_params=params,
                sync_interval_s=settings.sync_interval_s,
                simulated_clock=settings.simulated_clock,
            )
        except BaseException:
            store.close()
            raise

    def request_time(self, header: str | None) -> float | None:
        """The time a request is served at: with the simulated clock, its ``X-Adrec-Clock`` header (required);
        else None (the wall clock), and the header is refused."""
        if not self.simulated_clock:
            if header is not None:
                raise ValidationError(
                    CLOCK_HEADER, "only a server started with --simulated-clock takes its time from requests"
                )
            return None
        if header is None:
            raise ValidationError(CLOCK_HEADER, "required: this server runs on a simulated clock (--simulated-clock)")
        try:
            now = float(header)
        except ValueError:
            now = math.nan
        if not math.isfinite(now) or now < 0:
            raise ValidationError(CLOCK_HEADER, f"must be Unix seconds (a finite number >= 0), got {header[:40]!r}")
        return now

    def _load(self, models_dir: Path) -> ServingModel:
        return ServingModel.load(models_dir, self.store, index_kind=self.index_kind, index_params=self.index_params)

    def reload_model(self, *, announce: bool = True) -> ServingModel:
        """Load the current model of the models folder and swap it in; requests never see a half-loaded model.

        ``announce`` raises the store's ``model`` version first, so that every other serving process reloads too.
        """
        if self.models_dir is None:
            raise NotFoundError("the server was started without --models")
        with self._reload_lock:
            version = self.store.bump_version("model") if announce else self.store.versions().get("model", 0)
            self.seen["model"] = max(self.seen.get("model", 0), version)  # tried once, even if it fails
            model = self._load(self.models_dir)
            self.pipeline.swap_model(model, relearn=True)
        return model

    def refresh_catalog(self) -> None:
        """Re-read the ad library from the store."""
        version = self.store.versions().get("catalog", 0)
        self.pipeline.refresh_catalog()
        self.seen["catalog"] = max(self.seen.get("catalog", 0), version)

    def sync(self) -> None:
        """Catch up with what other processes changed: reload the catalogue or the model when its version rose."""
        now = self.store.versions()
        if now.get("catalog", 0) > self.seen.get("catalog", 0):
            self.refresh_catalog()
        if now.get("model", 0) > self.seen.get("model", 0) and self.models_dir is not None:
            self.reload_model(announce=False)

    async def sync_forever(self) -> None:
        """:meth:`sync` every ``sync_interval_s`` seconds (in a worker thread: loading blocks), until cancelled;
        a failure is logged and retried at the next tick."""
        while True:
            await asyncio.sleep(self.sync_interval_s)
            try:
                await asyncio.to_thread(self.sync)
            except Exception:  # a sync must never stop the server; the next tick tries again
                log.exception("syncing the catalogue or model with the store failed")
