"""The search page at / and the console at /console: static files, no build step, same origin as the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from snapsource.api.deps import ResourcesDep

WEB = Path(__file__).resolve().parents[2] / "web"

# the pages run only their own scripts and talk only to this server; product photos may be anywhere
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' http: https: data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=WEB)


@router.get("/")
def search_page(resources: ResourcesDep) -> HTMLResponse:
    """The page, told the catalog's currency (a setting of 3 capitals: nothing to escape)."""
    page = (WEB / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page.replace('data-currency="CNY"', f'data-currency="{resources.settings.currency}"', 1), headers=HEADERS)


@router.get("/sample")
def sample_photo(resources: ResourcesDep) -> dict[str, str | None]:
    """A catalog photo for the search page's "Try a sample photo" (public, as every /img/ is)."""
    image = resources.catalog.example_image()
    return {"img_url": f"/img/{image.name}" if image else None}


@router.get("/categories/{cat_id}")
def category_name(cat_id: str, resources: ResourcesDep) -> dict[str, str | None]:
    """A category id's name and path for the search page's chip (the `categories` setting's file),
    public as /sample is; unknown ids answer nulls and the page shows the id."""
    found = resources.category_names.get(cat_id)
    return {"cat_id": cat_id, "name": found.name if found else None, "path": found.path if found else None}


@router.get("/console")
def console_page() -> FileResponse:
    return FileResponse(WEB / "console.html", headers=HEADERS)
