"""The API's documentation page, /docs (Swagger UI), with its script and style served from the
package (fastapi-offline ships them): FastAPI's own page loads them from a CDN, and shows nothing on
a machine without the internet. ReDoc is off: its page fetches its logo from a CDN whatever it is
given."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(str(files("fastapi_offline") / "static"))  # swagger-ui-bundle.js, swagger-ui.css, favicon.png
PREFIX = "/docs-static"

router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=ASSETS)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
    )
