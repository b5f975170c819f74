"""A typed client for snapsource and TMAPI alike: the same paths, parameters and envelopes.

    from snapsource.client import Client

    with Client("http://127.0.0.1:8000", token="ss_...") as api:
        page = api.search_image(file="shelf.jpg", sort="sales", is_factory=True)
        for item in page.items:
            print(item.title, item.price, item.product_url)

Errors come back as exceptions carrying TMAPI's `code` and `msg`. 503 (too many requests) and 499
(took too long) are retried with exponential backoff and jitter, honouring `Retry-After`; 401, 422
and 439 are not, since asking again changes nothing. `AsyncClient` has the same methods.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from snapsource.offer import Item

RETRIED = (499, 503)
SEARCH = "/1688/search/image"
CONVERT = "/1688/tools/image/convert_url"
UPLOAD = "/1688/tools/image/upload"


class ApiError(Exception):
    """A failure answered in TMAPI's envelope (or an HTTP failure without one)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code, self.msg = code, msg


class Unauthorized(ApiError):
    """401: missing or invalid apiToken."""


class InvalidRequest(ApiError):
    """422: a parameter or the image is not usable; the message says which and why."""


class QuotaExceeded(ApiError):
    """439: subscription expired or balance insufficient."""


class Busy(ApiError):
    """503: too many requests for this token (raised once retries are used up)."""


class TimedOut(ApiError):
    """499: the request took too long upstream (raised once retries are used up)."""


_ERRORS: dict[int, type[ApiError]] = {401: Unauthorized, 422: InvalidRequest, 439: QuotaExceeded, 503: Busy, 499: TimedOut}


class SearchPage(BaseModel):
    """`data` of a search answer; snapsource's extra fields are optional, others are kept."""

    model_config = ConfigDict(extra="allow")

    page: int
    page_size: int
    total_count: int
    keyword: str = ""
    sort: str = "default"
    cat_id: int | None = None
    filters: dict[str, Any] = {}
    items: list[Item]
    has_next_page: bool
    region: list[int] | None = None
    regions: list[list[int]] | None = None
    image_url: str | None = None


def search_params(
    *,
    page: int = 1,
    page_size: int = 20,
    sort: str = "default",
    price_start: str | float | None = None,
    price_end: str | float | None = None,
    support_dropshipping: bool = False,
    is_factory: bool = False,
    verified_supplier: bool = False,
    free_shipping: bool = False,
    new_arrival: bool = False,
    region: str | None = None,
) -> dict[str, Any]:
    """The query parameters of a search, as TMAPI names them; unset filters are left out."""
    params: dict[str, Any] = {"page": page, "page_size": page_size, "sort": sort}
    for name, value in (("price_start", price_start), ("price_end", price_end), ("region", region)):
        if value is not None:
            params[name] = str(value)
    for name, flag in (
        ("support_dropshipping", support_dropshipping),
        ("is_factory", is_factory),
        ("verified_supplier", verified_supplier),
        ("free_shipping", free_shipping),
        ("new_arrival", new_arrival),
    ):
        if flag:
            params[name] = "true"
    return params


def _image_bytes(file: str | Path | bytes) -> bytes:
    return file if isinstance(file, bytes) else Path(file).read_bytes()


def _data(response: httpx.Response) -> Any:
    """The envelope's `data`, or the matching ApiError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        code, msg = int(body["code"]), str(body.get("msg", ""))
    else:
        code, msg = response.status_code, response.reason_phrase or "no TMAPI envelope in the answer"
    if response.status_code == 200 and code == 200:
        return body.get("data")
    status = code if code in _ERRORS else response.status_code
    raise _ERRORS.get(status, ApiError)(status, msg)


def _search_request(
    img_url: str | None, file: str | Path | bytes | None, options: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(method, params, body) of a search: the photo in a POST, or img_url in a GET."""
    params = search_params(**options)
    if file is not None:
        return "POST", params, {"files": {"file": ("photo", _image_bytes(file))}}
    if not img_url:
        raise ValueError("give img_url or file")
    return "GET", {**params, "img_url": img_url}, {}


def _convert_body(url: str, search_api_endpoint: str) -> dict[str, Any]:
    return {"json": {"url": url, "search_api_endpoint": search_api_endpoint}}


def _upload_body(file: str | Path | bytes) -> dict[str, Any]:
    return {"files": {"file": ("photo", _image_bytes(file))}}


class _Retrying:
    """Backoff shared by both clients: attempt n waits base * 2**n with full jitter, or Retry-After."""

    def __init__(self, retries: int, backoff: float) -> None:
        self.retries, self.backoff = retries, backoff

    def delay(self, attempt: int, response: httpx.Response) -> float:
        after = response.headers.get("Retry-After", "")
        if after.isdigit():
            return float(after)
        return random.uniform(0, self.backoff * 2**attempt)


class Client:
    """Synchronous client. `base_url` of snapsource or of TMAPI; `token` is the apiToken."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token = token
        self.retry = _Retrying(retries, backoff)
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        params = {"apiToken": self.token, **(params or {})}
        for attempt in range(self.retry.retries + 1):
            response = self.http.request(method, path, params=params, **kwargs)
            if response.status_code not in RETRIED or attempt == self.retry.retries:
                return _data(response)
            time.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable")

    def search_image(self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Any) -> SearchPage:
        """One page of offers for an image URL, or for a photo (`file`: a path or bytes)."""
        method, params, body = _search_request(img_url, file, options)
        return SearchPage.model_validate(self._call(method, SEARCH, params, **body))

    def iter_search(
        self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Any
    ) -> Iterator[Item]:
        """Every offer of every page, until `has_next_page` is false. A photo is sent once; later
        pages name it by the `image_url` the first answer gave."""
        page = self.search_image(img_url, file=file, **options)
        img_url = page.image_url or img_url
        while True:
            yield from page.items
            if not page.has_next_page or not page.items:
                return
            options["page"] = page.page + 1
            page = self.search_image(img_url, **options)

    def convert_url(self, url: str, search_api_endpoint: str = "/search/image") -> str:
        """TMAPI's conversion: any image URL -> the path to pass as img_url."""
        return str(self._call("POST", CONVERT, **_convert_body(url, search_api_endpoint))["image_url"])

    def upload(self, file: str | Path | bytes) -> str:
        """snapsource's upload: a photo -> the path to pass as img_url."""
        return str(self._call("POST", UPLOAD, **_upload_body(file))["image_url"])


class AsyncClient:
    """The same client for asyncio."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.token = token
        self.retry = _Retrying(retries, backoff)
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        params = {"apiToken": self.token, **(params or {})}
        for attempt in range(self.retry.retries + 1):
            response = await self.http.request(method, path, params=params, **kwargs)
            if response.status_code not in RETRIED or attempt == self.retry.retries:
                return _data(response)
            await asyncio.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable")

    async def search_image(
        self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Any
    ) -> SearchPage:
        method, params, body = _search_request(img_url, file, options)
        return SearchPage.model_validate(await self._call(method, SEARCH, params, **body))

    async def iter_search(
        self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Any
    ) -> AsyncIterator[Item]:
        page = await self.search_image(img_url, file=file, **options)
        img_url = page.image_url or img_url
        while True:
            for item in page.items:
                yield item
            if not page.has_next_page or not page.items:
                return
            options["page"] = page.page + 1
            page = await self.search_image(img_url, **options)

    async def convert_url(self, url: str, search_api_endpoint: str = "/search/image") -> str:
        return str((await self._call("POST", CONVERT, **_convert_body(url, search_api_endpoint)))["image_url"])

    async def upload(self, file: str | Path | bytes) -> str:
        return str((await self._call("POST", UPLOAD, **_upload_body(file)))["image_url"])
