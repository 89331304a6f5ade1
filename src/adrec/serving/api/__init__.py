"""The HTTP API (FastAPI): ad requests, feedback events, the ad library, users, reports and model swaps.

:func:`create_app` builds the application (``app.py``) from one router per resource (``routers/``), the
dependencies that check API keys, roles and tenancy (``deps.py``), the request and response models its OpenAPI
document declares (``schemas.py``), the error answers (``errors.py``) and the state one server process holds
(``state.py``). ``adrec serve`` runs it with uvicorn (:mod:`adrec.serving.main`).
"""

from adrec.serving.api.app import create_app
from adrec.serving.api.schemas import EventIn, EventsIn
from adrec.serving.api.state import ServerState

__all__ = ["EventIn", "EventsIn", "ServerState", "create_app"]
