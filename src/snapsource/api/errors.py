"""One place that turns every failure into TMAPI's envelope: `install(app)` registers the handlers.

Our own code raises `snapsource.errors.ApiError` (each subclass knows its status); the store's
`IndexMismatch` becomes a 503 here, whichever route met it. Starlette still raises its
`HTTPException` for unknown paths (404), wrong methods (405) and unreadable bodies (400, which
TMAPI calls a parameter error, 422).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from snapsource.api.deps import check_token
from snapsource.errors import ApiError, ServiceNotReady, Unauthorized, envelope
from snapsource.store.vectors.base import IndexMismatch

log = logging.getLogger("snapsource")


def install(app: FastAPI) -> None:
    """Every exception handler of the app. Starlette picks one by the exception's class (nearest
    in its MRO); the one for Exception runs in the outermost middleware, after a route failed.
    Starlette types every handler as taking any Exception, so each one narrows what it was given."""
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(IndexMismatch, index_mismatch)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def error_response(status: int, msg: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(envelope(status, msg), status_code=status, headers=headers)


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.msg, exc.headers)


async def index_mismatch(request: Request, exc: Exception) -> JSONResponse:
    """An ingest with another model replaced the index under this server: its vectors cannot be
    compared with the queries', so every search and /readyz answer 503 until it restarts."""
    assert isinstance(exc, IndexMismatch)
    log.error("%s", exc)
    return await api_error(request, ServiceNotReady(f"Index unavailable: {exc}"))


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if request.url.path.startswith("/1688/"):
        try:  # TMAPI checks the token before the parameters
            check_token(request, request.query_params.get("apiToken"))
        except Unauthorized as denied:
            return await api_error(request, denied)
    return error_response(422, _describe(exc))


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals; our routes raise ApiError."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # a body that does not parse: TMAPI answers 422 for every bad parameter
        return error_response(422, f"Parameter error: the request body could not be read ({exc.detail})")
    headers = exc.headers
    if exc.status_code == 405:  # Starlette's Allow names one route's methods; a path may have several
        headers = {**(headers or {}), "Allow": ", ".join(_methods(request))}
    return error_response(exc.status_code, str(exc.detail), headers)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return error_response(500, "Unexpected error: the server logged the details")


def _describe(exc: RequestValidationError) -> str:
    """'page_size: Input should be less than or equal to 20', for each bad parameter."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body")]
        name = ".".join(loc) or "request"
        msg = "is required" if err.get("type") == "missing" else err.get("msg", "is invalid")
        parts.append(f"{name}: {msg}")
    return "Parameter error: " + "; ".join(parts)


def _methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for this path: its templates as patterns, an integer
    parameter as digits (/catalog/offers/delete is not /catalog/offers/{item_id})."""
    found: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(_pattern(template, operations), request.url.path):
            found |= {method.upper() for method in operations}
    return sorted(found)


def _pattern(template: str, operations: dict) -> str:
    integers = {
        p["name"]
        for operation in operations.values()
        for p in operation.get("parameters", [])
        if p.get("in") == "path" and p.get("schema", {}).get("type") == "integer"
    }
    parts = re.split(r"\{([^}]+)\}", template)
    return "".join(re.escape(part) if i % 2 == 0 else ("[0-9]+" if part in integers else "[^/]+") for i, part in enumerate(parts))
