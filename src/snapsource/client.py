"""A typed client for snapsource and TMAPI alike: the same paths, parameters and envelopes.

    from snapsource.client import Client

    with Client("http://127.0.0.1:8000", token="ss_...") as api:
        page = api.search_image(file="shelf.jpg", sort="sales", is_factory=True)
        for item in page.items:
            print(item.title, item.price, item.product_url)

`search_image` and `iter_search` take every search parameter of the server under its name
(`SearchOptions`: TMAPI's filters and sorts, and snapsource's keyword, cat_id, region, regions,
group_same, match, score_threshold, explain); the answer is typed as the server sends it
(`SearchPage`, `SearchItem`).

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
from typing import Any, ClassVar, Literal, TypedDict, Unpack

import httpx
from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

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


class NotTmapi(ApiError):
    """The answer is not TMAPI's envelope (a proxy's error page, say): `code` is the HTTP status,
    500 for a 200."""


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


class SameProduct(BaseModel):
    """One relisting folded into an item by `group_same=true`."""

    model_config = ConfigDict(extra="allow")

    item_id: int
    price: str
    shop_name: str | None = None


class _AsSent(BaseModel):
    """Dumped as the server sent it: the fields named in `sent_only` only when the answer had them,
    so a dump of a TMAPI answer, or of one without explain, has TMAPI's shape."""

    sent_only: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _as_sent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k not in self.sent_only or k in self.model_fields_set}


class SearchItem(Item, _AsSent):
    """An item of a search answer: TMAPI's schema, then what `group_same` and `explain` add. Fields
    the server sends beyond these are kept, so nothing of an answer is lost."""

    model_config = ConfigDict(extra="allow")
    sent_only = ("same_product", "similarity", "match", "matched_img")

    same_product: list[SameProduct] | None = None  # group_same=true: the relistings folded into it
    similarity: float | None = None  # explain=true: cosine of the query and the photo that matched, 0-1
    match: str | None = None  # explain=true: "same" (the same product) or "similar"
    matched_img: str | None = None  # explain=true: the offer's photo that matched


class CategoryVote(BaseModel):
    """explain=true: one level of the predicted category and its share of the votes."""

    cat_id: int | str  # 1688's ids are numbers; a catalog's own category names stay text
    share: float


class SearchGroup(BaseModel):
    """regions=all: the first page of one product box of the photo."""

    region: list[int]  # [x1, y1, x2, y2] in the photo's pixels
    items: list[SearchItem]
    total_count: int


class SearchPage(_AsSent):
    """`data` of a search answer, typed as the server sends it: TMAPI's fields, then snapsource's
    (absent from TMAPI's answers, hence optional); fields neither names are kept."""

    model_config = ConfigDict(extra="allow")
    sent_only = ("region", "regions", "categories", "groups", "image_url", "source", "upstream_skipped", "upstream_error")

    page: int
    page_size: int
    total_count: int
    keyword: str = ""
    sort: str = "default"
    cat_id: int | str | None = None  # numeric ids as numbers, a catalog's category names as text
    filters: dict[str, str | bool] = {}  # prices as decimal strings, flags as true
    items: list[SearchItem]
    has_next_page: bool
    region: list[int] | None = None  # the box searched, [x1, y1, x2, y2]
    regions: list[list[int]] | None = None  # the products found in the photo, as boxes
    categories: list[CategoryVote] | None = None  # explain=true: the category vote, top level first
    groups: list[SearchGroup] | None = None  # regions=all: each box's first page, in the order of regions
    image_url: str | None = None  # a POSTed photo's path: later pages name it as img_url
    source: str | None = None  # with an upstream: local, upstream or upstream_cache (docs/upstream.md)
    upstream_skipped: str | None = None  # the upstream was an option but the search used snapsource's own parameters
    upstream_error: dict[str, Any] | None = None  # the upstream failed and the local answer stood in: its code, msg


Sort = Literal["default", "sales", "price_up", "price_down"]


class SearchOptions(TypedDict, total=False):
    """Every parameter of `GET /1688/search/image` besides img_url, under its name (`search_params`)."""

    page: int
    page_size: int
    sort: Sort
    price_start: str | float | None
    price_end: str | float | None
    support_dropshipping: bool
    is_factory: bool
    verified_supplier: bool
    free_shipping: bool
    new_arrival: bool
    cat_id: int | str | None
    keyword: str | None
    region: str | None
    group_same: bool
    match: Literal["all", "same"] | None
    score_threshold: float | None
    explain: bool
    regions: Literal["all"] | None
    source: Literal["local", "upstream", "auto"] | None


def search_params(
    *,
    page: int = 1,
    page_size: int = 20,
    sort: Sort = "default",
    price_start: str | float | None = None,
    price_end: str | float | None = None,
    support_dropshipping: bool = False,
    is_factory: bool = False,
    verified_supplier: bool = False,
    free_shipping: bool = False,
    new_arrival: bool = False,
    cat_id: int | str | None = None,
    keyword: str | None = None,
    region: str | None = None,
    group_same: bool = False,
    match: Literal["all", "same"] | None = None,
    score_threshold: float | None = None,
    explain: bool = False,
    regions: Literal["all"] | None = None,
    source: Literal["local", "upstream", "auto"] | None = None,
) -> dict[str, Any]:
    """The query parameters of a search, as the server names them. Unset ones are left out, so a
    TMAPI server sees only its own; a flag is sent as `true` (false is the server's default).

    `region` is "x1,x2,y1,y2" (1688's order, unlike the [x1, y1, x2, y2] of `data.region`);
    `regions="all"` also searches every product found in the photo (`data.groups`); `source`
    picks the local catalog or the upstream on a server with one (docs/upstream.md)."""
    params: dict[str, Any] = {"page": page, "page_size": page_size, "sort": sort}
    for name, value in (
        ("price_start", price_start),
        ("price_end", price_end),
        ("cat_id", cat_id),
        ("keyword", keyword),
        ("region", region),
        ("match", match),
        ("score_threshold", score_threshold),
        ("regions", regions),
        ("source", source),
    ):
        if value is not None:
            params[name] = str(value)
    for name, flag in (
        ("support_dropshipping", support_dropshipping),
        ("is_factory", is_factory),
        ("verified_supplier", verified_supplier),
        ("free_shipping", free_shipping),
        ("new_arrival", new_arrival),
        ("group_same", group_same),
        ("explain", explain),
    ):
        if flag:
            params[name] = "true"
    return params


def _image_bytes(file: str | Path | bytes) -> bytes:
    return file if isinstance(file, bytes) else Path(file).read_bytes()


def _data(response: httpx.Response) -> Any:
    """The envelope's `data`, or the matching ApiError (an answer that is not TMAPI's envelope,
    such as a proxy's HTML page, is an ApiError with the HTTP status, 500 for a 200)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        status = response.status_code if response.status_code != 200 else 500
        raise NotTmapi(status, f"the answer is not TMAPI's envelope (HTTP {response.status_code}, {kind})")
    assert isinstance(body, dict)
    if response.status_code == 200 and code == 200:
        return body.get("data")
    msg = str(body.get("msg", ""))
    status = code if code in _ERRORS else response.status_code
    raise _ERRORS.get(status, ApiError)(status, msg)


def _search_request(
    img_url: str | None, file: str | Path | bytes | None, options: SearchOptions
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

    def __init__(self, retries: int, backoff: float, retried: tuple[int, ...] = RETRIED, longest: float | None = None) -> None:
        self.retries, self.backoff, self.retried, self.longest = retries, backoff, retried, longest

    def delay(self, attempt: int, response: httpx.Response) -> float:
        after = response.headers.get("Retry-After", "")
        wait = float(after) if after.isdigit() else random.uniform(0, self.backoff * 2**attempt)
        return wait if self.longest is None else min(wait, self.longest)


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
        retried: tuple[int, ...] = RETRIED,
        longest_wait: float | None = None,
    ) -> None:
        """`retried`: the statuses asked again (503 and 499); `longest_wait`: at most this many
        seconds between tries, whatever Retry-After says (None: as it says)."""
        self.token = token
        self.retry = _Retrying(retries, backoff, retried, longest_wait)
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """One call of any TMAPI path, retried as the others are: the envelope's `data`, as sent."""
        params = {"apiToken": self.token, **(params or {})}
        for attempt in range(self.retry.retries + 1):
            response = self.http.request(method, path, params=params, **kwargs)
            if response.status_code not in self.retry.retried or attempt == self.retry.retries:
                return _data(response)
            time.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable")

    def search_image(
        self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Unpack[SearchOptions]
    ) -> SearchPage:
        """One page of offers for an image URL, or for a photo (`file`: a path or bytes, POSTed);
        `options` are the server's search parameters under its names (`SearchOptions`)."""
        method, params, body = _search_request(img_url, file, options)
        return SearchPage.model_validate(self.call(method, SEARCH, params, **body))

    def iter_search(
        self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Unpack[SearchOptions]
    ) -> Iterator[SearchItem]:
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
        return str(self.call("POST", CONVERT, **_convert_body(url, search_api_endpoint))["image_url"])

    def upload(self, file: str | Path | bytes) -> str:
        """snapsource's upload: a photo -> the path to pass as img_url."""
        return str(self.call("POST", UPLOAD, **_upload_body(file))["image_url"])


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
        retried: tuple[int, ...] = RETRIED,
        longest_wait: float | None = None,
    ) -> None:
        """`retried`: the statuses asked again (503 and 499); `longest_wait`: at most this many
        seconds between tries, whatever Retry-After says (None: as it says)."""
        self.token = token
        self.retry = _Retrying(retries, backoff, retried, longest_wait)
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """`Client.call`, awaited."""
        params = {"apiToken": self.token, **(params or {})}
        for attempt in range(self.retry.retries + 1):
            response = await self.http.request(method, path, params=params, **kwargs)
            if response.status_code not in self.retry.retried or attempt == self.retry.retries:
                return _data(response)
            await asyncio.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable")

    async def search_image(
        self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Unpack[SearchOptions]
    ) -> SearchPage:
        """`Client.search_image`, awaited."""
        method, params, body = _search_request(img_url, file, options)
        return SearchPage.model_validate(await self.call(method, SEARCH, params, **body))

    async def iter_search(
        self, img_url: str | None = None, *, file: str | Path | bytes | None = None, **options: Unpack[SearchOptions]
    ) -> AsyncIterator[SearchItem]:
        """`Client.iter_search`, awaited: every offer of every page, the photo sent once."""
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
        return str((await self.call("POST", CONVERT, **_convert_body(url, search_api_endpoint)))["image_url"])

    async def upload(self, file: str | Path | bytes) -> str:
        return str((await self.call("POST", UPLOAD, **_upload_body(file)))["image_url"])
