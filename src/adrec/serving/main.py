"""The ASGI application factory ``adrec serve`` runs (``uvicorn adrec.serving.main:app --factory``).

``adrec serve`` resolves the settings (defaults < TOML file < ``ADREC_*`` environment < its options, the token
secret included) and hands them to every worker process as JSON in ``ADREC_SERVE_SETTINGS``; each worker builds its
own state from them at start-up (:func:`adrec.serving.api.create_app`'s lifespan).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from adrec.config import Settings
from adrec.exceptions import ConfigError
from adrec.serving.api import create_app

__all__ = ["SETTINGS_VARIABLE", "app"]

SETTINGS_VARIABLE = "ADREC_SERVE_SETTINGS"


def app() -> FastAPI:
    resolved = os.environ.get(SETTINGS_VARIABLE)
    if not resolved:
        raise ConfigError(f"{SETTINGS_VARIABLE} is not set: start the server with `adrec serve`")
    return create_app(settings=Settings.model_validate_json(resolved))
