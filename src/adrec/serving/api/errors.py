"""How errors are answered, and the error responses each route declares in the OpenAPI document.

Every error body is ``{"detail": ...}``: a sentence, or for 422 a list of ``{loc, msg, type}`` naming each field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from adrec.exceptions import AdrecError, NotFoundError, ValidationError
from adrec.serving.api.schemas import ErrorOut, ValidationErrorOut

__all__ = ["CONFLICT", "KEYED", "NOT_FOUND", "install_handlers"]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


KEYED: dict[int | str, dict[str, Any]] = {
    400: _error("The request could not be carried out (the reason says why)"),
    401: _error("Missing, unknown or revoked API key"),
    403: _error("The key's role may not do this"),
    413: _error("The request body is larger than the server accepts"),
    422: {"model": ValidationErrorOut, "description": "Invalid input; each entry names the field"},
    429: {
        "model": ErrorOut,
        "description": "Too many requests for this key; retry after the seconds in Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    },
}
"""What every route behind an API key may answer besides its success."""

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _error("No such record, or not one this key may see (the two are answered alike)")
}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _error("The id is held by another advertiser's record")}


def install_handlers(app: FastAPI) -> None:
    """Answer adrec's errors and request validation errors in the declared shapes."""

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Records raise adrec's ValidationError naming "record.field": report it at body.field.
        detail = []
        for e in exc.errors():
            err = (e.get("ctx") or {}).get("error")
            if isinstance(err, ValidationError):
                loc = [*e["loc"], *err.field.split(".")[1:]]
                detail.append({"loc": loc, "msg": err.message, "type": "value_error"})
            else:
                detail.append({"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]})
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError) -> JSONResponse:
        detail = [{"loc": exc.field.split("."), "msg": exc.message, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)

    @app.exception_handler(AdrecError)
    async def _adrec(_: Request, exc: AdrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)
