"""The ASGI application: resources, middleware, routes and error handlers, put together."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from snapsource import __version__, metrics
from snapsource.api import errors
from snapsource.api.middleware import BodyLimit, Measure, SecurityHeaders, mask_access_log
from snapsource.api.routes import admin, catalog, docs, health, images, search, uploads, web
from snapsource.config import Settings
from snapsource.ingest import jobs
from snapsource.resources import Resources
from snapsource.store.vectors.base import Compactor
from snapsource.upstream.proxy import Upstream


class App(FastAPI):
    """FastAPI with SecurityHeaders outside everything, Starlette's own 500 answers included."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), web.HEADERS["Content-Security-Policy"])


def streamed_bodies(settings: Settings) -> dict[str, int]:
    """The routes that read their body as a stream after their credentials, with their own caps:
    BodyLimit gives every other route `max_body_bytes`."""
    image = uploads.body_limit(settings.max_image_bytes)
    return {
        "/1688/tools/image/upload": image,
        "/1688/search/image": image,
        "/catalog/offers": settings.catalog_max_bytes,
        "/catalog/offers/delete": catalog.DELETION_MAX_BYTES,
        "/catalog/imports": settings.catalog_max_bytes,
    }


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> FastAPI:
    """One app per worker process (uvicorn calls this as a factory: see cli.main)."""
    resources = resources or Resources.open(settings or Settings.load())
    mask_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        compactor = Compactor(resources.index, resources.settings.compact_interval).start()
        runner = jobs.Runner(resources).start() if resources.settings.import_jobs else None
        app.state.import_runner = runner
        yield
        if runner is not None:
            runner.stop()
        compactor.stop()
        if app.state.upstream is not None:
            app.state.upstream.close()
        resources.close()

    app = App(
        title="snapsource",
        version=__version__,
        description="Search products by image in your own catalog; wire-compatible with TMAPI's `GET /1688/search/image`.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: routes/docs.py serves it from the package
        redoc_url=None,  # ReDoc's page reaches a CDN whatever it is given
    )
    app.state.resources = resources
    app.state.import_runner = None

    def landed() -> None:
        """The upstream queued offers to import: this server's runner looks now."""
        if app.state.import_runner is not None:
            app.state.import_runner.wake()

    app.state.upstream = Upstream.open(resources, on_landing=landed)
    metrics.VECTORS.set(len(resources.index))  # each worker shows up in /metrics from its start

    settings = resources.settings
    app.add_middleware(
        BodyLimit, limits=streamed_bodies(settings), default=settings.max_body_bytes, timeout=settings.body_timeout
    )
    app.add_middleware(Measure, resources=resources)  # outside BodyLimit: its refusals are counted too
    app.include_router(search.router)
    app.include_router(uploads.router)
    app.include_router(images.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(catalog.router)
    app.include_router(web.router)
    app.include_router(docs.router)
    app.mount("/static", web.static, name="static")
    app.mount(docs.PREFIX, docs.static, name="docs-static")
    errors.install(app)
    return app
