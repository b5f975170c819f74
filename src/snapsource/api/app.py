"""The ASGI application: routes, and one place that turns every failure into TMAPI's envelope."""

from __future__ import annotations

import logging
import re
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from snapsource import __version__, metrics
from snapsource.api.routes import admin, health, images, search, uploads, web
from snapsource.api.deps import check_token
from snapsource.config import Settings
from snapsource.errors import ApiError, ServiceNotReady, Unauthorized, envelope
from snapsource.store.vectors.faiss_store import Compactor, IndexMismatch
from snapsource.resources import Resources

log = logging.getLogger("snapsource")


class MaskToken(logging.Filter):
    """Access logs never show an apiToken (installed in every worker process by create_app)."""

    PATTERN = re.compile(r"(apiToken=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def _mask_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, MaskToken) for f in access.filters):
        access.addFilter(MaskToken())


def error_response(status: int, msg: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(envelope(status, msg), status_code=status, headers=headers)


def _describe(exc: RequestValidationError) -> str:
    """'page_size: Input should be less than or equal to 20', for each bad parameter."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body")]
        name = ".".join(loc) or "request"
        msg = "is required" if err.get("type") == "missing" else err.get("msg", "is invalid")
        parts.append(f"{name}: {msg}")
    return "Parameter error: " + "; ".join(parts)


def _methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for this path (its templates as patterns)."""
    found: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            found |= {method.upper() for method in operations}
    return sorted(found)


class Measure:
    """Metrics for every answer; an admitted token call is released and metered here, so a
    failure anywhere still frees its concurrency slot. A plain ASGI middleware: Starlette's
    BaseHTTPMiddleware costs a task and a stream per request."""

    def __init__(self, app, resources: Resources) -> None:
        self.app = app
        self.resources = resources

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        done = False

        async def finish() -> None:
            """Once per request, before its last byte leaves: a client that reads its usage
            right after an answer finds that answer counted."""
            nonlocal done
            if done:
                return
            done = True
            label = getattr(scope.get("route"), "path", "other")
            seconds = time.perf_counter() - started
            metrics.REQUESTS.labels(label, str(status)).inc()
            metrics.LATENCY.labels(label).observe(seconds)
            lease = scope.get("state", {}).get("lease")
            if lease is not None:
                await run_in_threadpool(self.resources.tokens.release, lease, label, status, seconds)

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await finish()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            await finish()


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> FastAPI:
    resources = resources or Resources.open(settings or Settings.load())
    _mask_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        compactor = Compactor(resources.index, resources.settings.compact_interval).start()
        yield
        compactor.stop()
        resources.close()

    app = FastAPI(
        title="snapsource",
        version=__version__,
        description="Search products by image in your own catalog; wire-compatible with TMAPI's "
        "`GET /1688/search/image`.",
        lifespan=lifespan,
    )
    app.state.resources = resources
    metrics.VECTORS.set(len(resources.index))  # each worker shows up in /metrics from its start

    app.add_middleware(Measure, resources=resources)
    app.include_router(search.router)
    app.include_router(uploads.router)
    app.include_router(images.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(web.router)
    app.mount("/static", web.static, name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.msg, exc.headers)

    @app.exception_handler(IndexMismatch)
    async def index_mismatch(request: Request, exc: IndexMismatch) -> JSONResponse:
        log.error("%s", exc)  # an ingest with another model replaced the index under this server
        return error_response(ServiceNotReady.status, f"Index unavailable: {exc}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path.startswith("/1688/"):
            try:  # TMAPI checks the token before the parameters
                check_token(request, request.query_params.get("apiToken"))
            except Unauthorized as denied:
                return error_response(denied.status, denied.msg)
        return error_response(422, _describe(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that does not parse: TMAPI answers 422 for every bad parameter
            return error_response(422, f"Parameter error: the request body could not be read ({exc.detail})")
        headers = exc.headers
        if exc.status_code == 405:  # Starlette's Allow names one route's methods; a path may have several
            headers = {**(headers or {}), "Allow": ", ".join(_methods(app, request.url.path))}
        return error_response(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, "Unexpected error: the server logged the details")

    return app
