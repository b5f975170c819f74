"""Errors that reach API clients, each carrying its TMAPI status.

TMAPI reports failures with the HTTP status and the same number in ``code``; ``data`` is null.

    ApiError (500)
    ├── Unauthorized (401)       missing, unknown or revoked apiToken (or admin key)
    ├── Forbidden (403)          a valid token without the scope the API needs
    ├── NotFound (404)           no such image or token
    ├── ParameterError (422)     bad query parameter or image
    ├── QuotaExceeded (439)      subscription expired or balance insufficient
    ├── ConcurrencyLimit (503)   too many concurrent requests for this token
    ├── ServiceNotReady (503)    index or model not loaded yet
    └── UpstreamError (its code) the upstream (TMAPI behind us) failed and nothing local answers
"""

from __future__ import annotations

import math
from typing import Any


class ApiError(Exception):
    status: int = 500
    default_msg: str = "Unexpected error"

    def __init__(self, msg: str | None = None, *, retry_after: float | None = None) -> None:
        self.msg = msg or self.default_msg
        self.retry_after = retry_after
        super().__init__(self.msg)

    @property
    def headers(self) -> dict[str, str]:
        """`Retry-After` in whole seconds (at least 1) when the client should simply wait."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class Unauthorized(ApiError):
    status = 401
    default_msg = "Invalid apiToken: pass a valid token as the apiToken query parameter"


class Forbidden(ApiError):
    status = 403
    default_msg = "This token lacks the scope this API needs"


class NotFound(ApiError):
    status = 404
    default_msg = "Not found"


class ParameterError(ApiError):
    status = 422
    default_msg = "Parameter error"


class QuotaExceeded(ApiError):
    status = 439
    default_msg = "Subscription expired or insufficient balance"


class ConcurrencyLimit(ApiError):
    status = 503
    default_msg = "API request concurrency limit exceeded"


class ServiceNotReady(ApiError):
    status = 503
    default_msg = "Service is starting: the index is not loaded yet"


class CatalogBusy(ApiError):
    status = 503
    default_msg = "Another import is writing the catalog: retry shortly"


class PayloadTooLarge(ApiError):
    status = 413
    default_msg = "The request body is too large"


class UpstreamError(ApiError):
    """The upstream's failure, passed on with its own TMAPI code (417, 439, 499, 503, ...)."""

    def __init__(self, status: int, msg: str, *, retry_after: float | None = None) -> None:
        super().__init__(msg, retry_after=retry_after)
        self.status = status


def envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """The TMAPI body: ``{"code", "msg", "data"}``, the same for success and failure."""
    return {"code": code, "msg": msg, "data": data}


class DecodersBusy(ApiError):
    status = 503
    default_msg = "Too many large images are being decoded at once: retry shortly"
