"""Liveness, readiness and metrics: what a load balancer and Prometheus ask."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from .. import metrics
from ..errors import ServiceNotReady, envelope
from ..index import IndexMismatch
from .deps import ResourcesDep
from .schemas import errors

router = APIRouter()


@router.get("/healthz", tags=["health"], summary="Liveness and catalog size")
def healthz(resources: ResourcesDep) -> dict[str, object]:
    return {"status": "ok", "offers": resources.catalog.count(), "vectors": len(resources.index)}


@router.get(
    "/readyz",
    tags=["health"],
    summary="Ready to search: catalog readable, index loaded and current",
    responses=errors(503),
)
def readyz(resources: ResourcesDep) -> JSONResponse:
    try:
        resources.index.refresh()
        offers = resources.catalog.count()
    except IndexMismatch as exc:
        return JSONResponse(envelope(ServiceNotReady.status, f"Index unavailable: {exc}"), status_code=503)
    return JSONResponse({"status": "ready", "offers": offers, "vectors": len(resources.index)})


@router.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
def prometheus(resources: ResourcesDep) -> Response:
    metrics.OFFERS.set(resources.catalog.count())
    metrics.VECTORS.set(len(resources.index))
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
