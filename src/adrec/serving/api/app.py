"""The FastAPI application: routers per resource, error handlers, request limits and a lifespan that builds the
server state from the settings (or takes one built by the caller) and keeps it in step with the store."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI

from adrec.config import Settings
from adrec.serving.api.errors import install_handlers
from adrec.serving.api.routers import ROUTERS
from adrec.serving.api.state import ServerState
from adrec.serving.limits import Limits, install

__all__ = ["create_app"]


def create_app(
    state: ServerState | None = None, *, settings: Settings | None = None, limits: Limits | None = None
) -> FastAPI:
    """The HTTP API.

    Either over ``state``, which the caller built and closes (tests, embedding), or over the state its lifespan
    builds from ``settings`` at start-up (the store opened, the model loaded) and closes at shutdown (what each
    ``adrec serve`` worker runs). ``limits`` default to the settings' (body sizes, rate per key).
    """
    if state is None and settings is None:
        raise TypeError("create_app needs a state or settings")
    limits = limits or (Limits.from_settings(settings) if settings is not None else Limits())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = state
        if current is None:
            assert settings is not None
            current = await asyncio.to_thread(ServerState.from_settings, settings)
            # The catalogue, model and index live as long as the worker: moved out of the garbage collector's
            # generations, full collections no longer walk them (each walk cost ~100 ms of a request's time).
            gc.collect()
            gc.freeze()
        app.state.adrec = current
        syncing = asyncio.create_task(current.sync_forever()) if current.sync_interval_s > 0 else None
        try:
            yield
        finally:
            if syncing is not None:
                syncing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await syncing
            if state is None:
                current.store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="adrec",
        version="0.1.0",
        description="Personalized ad recommendation: ad requests, feedback events, ad library, reports.",
    )
    if state is not None:
        app.state.adrec = state  # usable before the lifespan runs, as tests do
    install(app, limits)
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
