"""The ASGI application factory ``adrec serve`` runs (``uvicorn adrec.serving.main:app --factory``).

Configured by the environment ``adrec serve`` sets: ``ADREC_SERVE_DB``, ``ADREC_SERVE_MODELS``,
``ADREC_TOKEN_SECRET``, ``ADREC_SERVE_PIPELINE`` (JSON of :class:`PipelineConfig` fields),
``ADREC_SERVE_INDEX`` (JSON ``{"kind": ..., "params": {...}}`` of the vector index) and ``ADREC_SERVE_LIMITS``
(JSON of :class:`~adrec.serving.limits.Limits` fields: body sizes, rate limit, Redis). Each worker process builds
its own state from them.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from fastapi import FastAPI

from adrec.exceptions import ConfigError
from adrec.config import Settings
from adrec.serving.api import ServerState, create_app
from adrec.serving.limits import Limits
from adrec.serving.pipeline import PipelineConfig
from adrec.serving.tokens import TokenSigner
from adrec.store import open_store

__all__ = ["app"]


def app() -> FastAPI:
    db = os.environ.get("ADREC_SERVE_DB")
    secret = os.environ.get("ADREC_TOKEN_SECRET")
    if not db or not secret:
        raise ConfigError("ADREC_SERVE_DB and ADREC_TOKEN_SECRET must be set (start the server with `adrec serve`)")
    models = os.environ.get("ADREC_SERVE_MODELS") or None
    config = PipelineConfig(**json.loads(os.environ.get("ADREC_SERVE_PIPELINE") or "{}"))
    index = json.loads(os.environ.get("ADREC_SERVE_INDEX") or "{}")
    limits = Limits(**json.loads(os.environ.get("ADREC_SERVE_LIMITS") or "{}"))
    state = ServerState(
        open_store(db, create=False),
        Path(models) if models else None,
        TokenSigner(secret),
        config,
        index_kind=index.get("kind", "auto"),
        index_params=index.get("params"),
        sync_interval_s=Settings.load().sync_interval_s,
    )
    # The catalogue, model and index are built once and live as long as the worker: moved out of the garbage
    # collector's generations, full collections no longer walk them (each walk cost ~100 ms of a request's time).
    gc.collect()
    gc.freeze()
    return create_app(state, limits=limits)
