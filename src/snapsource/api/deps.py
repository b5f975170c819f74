"""Request-scoped helpers shared by the routes."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request

from snapsource.errors import Unauthorized
from snapsource.resources import Resources


async def get_resources(request: Request) -> Resources:  # async: no thread hop for a lookup
    return request.app.state.resources


def check_token(request: Request, token: str | None) -> None:
    """TMAPI's first check: a known, unrevoked `apiToken` (limits aside), else 401."""
    if not request.app.state.resources.tokens.valid(token):
        raise Unauthorized(
            "apiToken is missing" if not token else "apiToken is not valid: check it or create one with `snapsource token create`"
        )


def require_token(request: Request, apiToken: Annotated[str | None, Query()] = None) -> str:  # noqa: N803
    """TMAPI's auth and limits: the call is admitted (counted against the token's quota, rate and
    concurrency) or refused with 401, 439 or 503; the app's middleware releases and meters it."""
    request.state.lease = request.app.state.resources.tokens.admit(apiToken)
    return apiToken or ""


def public_base(request: Request) -> str:
    """Base for absolute image URLs: the configured public URL, else the request's own."""
    configured = request.app.state.resources.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def own_hosts(request: Request) -> set[str]:
    hosts = {request.url.netloc.lower()}
    configured = request.app.state.resources.settings.public_url
    if configured:
        hosts.add(urlsplit(configured).netloc.lower())
    return hosts


ResourcesDep = Annotated[Resources, Depends(get_resources)]
TokenDep = Annotated[str, Depends(require_token)]
