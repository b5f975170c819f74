"""Liveness, readiness and metrics: what a load balancer and Prometheus ask."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from snapsource import metrics
from snapsource.api.deps import ResourcesDep
from snapsource.api.schemas import errors
from snapsource.resources import Resources

router = APIRouter()


def _offers(resources: Resources) -> int:
    """From the filter columns: SQLite's count(*) reads the whole offers table (a second or more
    at a million offers), too much for a probe called every few seconds."""
    return len(resources.columns.current().item_id)


@router.get("/healthz", tags=["health"], summary="Liveness and catalog size")
def healthz(resources: ResourcesDep) -> dict[str, object]:
    return {"status": "ok", "offers": _offers(resources), "vectors": len(resources.index)}


@router.get(
    "/readyz",
    tags=["health"],
    summary="Ready to search: catalog readable, index loaded and current",
    responses=errors(503),
)
def readyz(resources: ResourcesDep) -> JSONResponse:
    resources.index.refresh()  # an index made by another model: 503, as for a search (api.errors.index_mismatch)
    offers = _offers(resources)
    return JSONResponse({"status": "ready", "offers": offers, "vectors": len(resources.index)})


@router.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
def prometheus(resources: ResourcesDep) -> Response:
    metrics.OFFERS.set(_offers(resources))
    metrics.VECTORS.set(len(resources.index))
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
