"""Liveness: the process answers and the catalog is readable."""

from __future__ import annotations

from fastapi import APIRouter

from .deps import ResourcesDep

router = APIRouter()


@router.get("/healthz", tags=["health"], summary="Liveness and catalog size")
def healthz(resources: ResourcesDep) -> dict[str, object]:
    return {"status": "ok", "offers": resources.catalog.count(), "vectors": len(resources.index)}
