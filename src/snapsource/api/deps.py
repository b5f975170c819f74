"""Request-scoped helpers shared by the routes."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request

from ..errors import Unauthorized
from ..resources import Resources


def get_resources(request: Request) -> Resources:
    return request.app.state.resources


def require_token(request: Request, apiToken: Annotated[str | None, Query()] = None) -> str:  # noqa: N803
    """TMAPI's auth: the `apiToken` query parameter, checked against stored digests."""
    if not get_resources(request).tokens.valid(apiToken):
        raise Unauthorized(
            "apiToken is missing" if not apiToken else "apiToken is not valid: check it or create one "
            "with `snapsource token create`"
        )
    return apiToken or ""


def public_base(request: Request) -> str:
    """Base for absolute image URLs: the configured public URL, else the request's own."""
    configured = get_resources(request).settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def own_hosts(request: Request) -> set[str]:
    hosts = {request.url.netloc.lower()}
    configured = get_resources(request).settings.public_url
    if configured:
        hosts.add(urlsplit(configured).netloc.lower())
    return hosts


ResourcesDep = Annotated[Resources, Depends(get_resources)]
TokenDep = Annotated[str, Depends(require_token)]
