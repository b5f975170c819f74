"""A TMAPI stand-in on loopback, for the tests of snapsource's upstream mode and the upstream bench,
since the real TMAPI is paid, remote and slow.

It implements the two documented endpoints (../shared/spec): `convert_url` fetches the image and
names it by a `/search/imgextra/...` path; `search/image` takes such paths, TMAPI's parameters,
filters, sorts, pages, apiToken checks and envelopes, and answers the spec's items in the spec's order,
ranked by a cheap photo descriptor (Pillow and numpy) so that they look like the photo. `fail()` gives
TMAPI's errors, timeouts and broken answers on demand; `latency` gives TMAPI's slowness (about 2.5 s).

    stand = luma_standin(limit=40)
    with serve(stand.app) as url:  # snapsource.tools.loopback
        ...
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fastapi
import httpx
import numpy as np
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, ImageOps

from snapsource.offer import Item

LUMA = Path(os.environ.get("SNAPSOURCE_SHARED", Path(__file__).resolve().parents[3].parent / "shared")) / (
    "catalogs/luma/catalog.jsonl"
)

MESSAGES = {  # TMAPI's messages for its codes (../shared/spec/tmapi-notes.md)
    401: "Invalid apiToken",
    417: "Failed to retrieve the upstream data, please try again",
    422: "Parameter error",
    439: "Subscription expired or insufficient balance",
    499: "Request timed out, please allow 60 s",
    500: "Unexpected error",
    503: "API request concurrency limit exceeded",
}
KINDS = ("timeout", "malformed", "bad_items")  # failures on demand other than a code
ENDPOINTS = ("/search/image", "/global/search/image", "/global/search/image/v2")
SORTS = ("default", "sales", "price_up", "price_down")
FLAGS = ("support_dropshipping", "is_factory", "verified_supplier", "free_shipping", "new_arrival")
MAX_PAGE_SIZE = 20
BROKE = "tm_broke"  # the token whose balance is spent: 439
FETCH_TIMEOUT = 10.0
MAX_PHOTO = 20 * 1024 * 1024
TIMEOUT_SLEEP = 30.0
PHOTO_PATH = re.compile(r"/photos/([0-9]+)\.jpg")
BROKEN_PAGE = "<!doctype html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


# the descriptor ----------------------------------------------------------------------------------
SIDE = 256  # photos are described at this longest side
CROP = 0.1  # items are also described with this much cut off each side and corner
BOXES = (  # (left, top, right, bottom) fractions: the whole photo, then its cropped variants
    (0, 0, 1, 1),
    (0, CROP, 1, 1),
    (0, 0, 1, 1 - CROP),
    (CROP, 0, 1, 1),
    (0, 0, 1 - CROP, 1),
    (CROP, CROP, 1, 1),
    (0, CROP, 1 - CROP, 1),
    (CROP, 0, 1, 1 - CROP),
    (0, 0, 1 - CROP, 1 - CROP),
    (CROP / 2, CROP / 2, 1 - CROP / 2, 1 - CROP / 2),
)


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """Rows of one or more photos' features: 64 difference-hash bits of the product's box, a
    4x4x4 RGB histogram of its pixels, and its 6x6 colour layout."""

    bits: np.ndarray  # (n, 64) bool
    hist: np.ndarray  # (n, 64) float32, each row sums to 1
    layout: np.ndarray  # (n, 108) float32 in 0..1

    @classmethod
    def stack(cls, parts: list[Descriptor]) -> Descriptor:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("bits", "hist", "layout")))

    def distance(self, query: Descriptor) -> np.ndarray:
        """Each row's distance to the query's first row: Hamming share + histogram L1 / 2 + 2 x mean
        layout difference (weights chosen on the luma photos, recompressed, resized, cropped, tinted)."""
        ham = (self.bits != query.bits[0]).mean(axis=1)
        hist = np.abs(self.hist - query.hist[0]).sum(axis=1) / 2
        layout = np.abs(self.layout - query.layout[0]).mean(axis=1)
        return ham + hist + 2 * layout


def _pixels(photo: bytes) -> np.ndarray:
    """The photo as RGB, its longest side at most SIDE (JPEGs decoded at a reduced scale)."""
    with Image.open(io.BytesIO(photo)) as opened:
        opened.draft("RGB", (SIDE, SIDE))
        image = ImageOps.exif_transpose(opened).convert("RGB")
    image.thumbnail((SIDE, SIDE))
    return np.asarray(image)


def _foreground(pixels: np.ndarray) -> np.ndarray:
    """Pixels that differ from the border's (median) colour: the product on its backdrop."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    backdrop = np.median(border, axis=0)
    return np.abs(pixels.astype(np.int16) - backdrop.astype(np.int16)).max(axis=2) > 24


def _features(pixels: np.ndarray, mask: np.ndarray) -> Descriptor:
    """The features of the product's box (the bounding box of `mask`; the whole photo if nearly empty)."""
    if mask.sum() >= 0.01 * mask.size:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        pixels = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = Image.fromarray(np.ascontiguousarray(pixels))
    gray = np.asarray(box.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (gray[:, 1:] > gray[:, :-1]).ravel()
    chosen = pixels[mask] if mask.sum() > 50 else pixels.reshape(-1, 3)
    bins = (chosen // 64).astype(np.int32)
    hist = np.bincount(bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2], minlength=64).astype(np.float32)
    hist /= max(hist.sum(), 1.0)
    layout = np.asarray(box.resize((6, 6), Image.Resampling.BOX), dtype=np.float32).ravel() / 255
    return Descriptor(bits[None], hist[None], layout[None])


def describe(photo: bytes, variants: bool = False) -> Descriptor:
    """One row for the photo; with `variants`, one for each of BOXES (the whole photo first), so that
    a query cut by about CROP on any side still meets a row like it. Raises on a non-image."""
    pixels = _pixels(photo)
    mask = _foreground(pixels)
    if not variants:
        return _features(pixels, mask)
    height, width = mask.shape
    parts = []
    for left, top, right, bottom in BOXES:
        y0, y1, x0, x1 = int(top * height), int(bottom * height), int(left * width), int(right * width)
        parts.append(_features(pixels[y0:y1, x0:x1], mask[y0:y1, x0:x1]))
    return Descriptor.stack(parts)


_described: dict[bytes, Descriptor] = {}  # sha256 -> the variants of an item photo, shared by stand-ins


def _item_descriptor(photo: bytes) -> Descriptor:
    key = hashlib.sha256(photo).digest()
    if key not in _described:
        _described[key] = describe(photo, variants=True)
    return _described[key]


# the stand-in -----------------------------------------------------------------------------------
@dataclasses.dataclass
class StandinItem:
    item: dict  # one TMAPI item (the spec's item schema); its "img" is rewritten at answer time to {base}/photos/{item_id}.jpg
    photo: bytes  # the JPEG served at /photos/{item_id}.jpg


class _Refused(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def _envelope(code: int, msg: str, data: Any = None) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=code)


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "").strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise _Refused(422, f"{name} must be true or false; got {params[name]!r}")


def _whole(params: dict[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = params.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        limits = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _Refused(422, f"{name} must be a whole number {limits}; got {params.get(name)!r}")
    return value


def _price(params: dict[str, str], name: str) -> Decimal | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise _Refused(422, f'{name} must be a non-negative decimal number such as "19.90"; got {params[name]!r}')
    return value


def _flagged(item: dict, name: str) -> bool:
    """A filter flag of a catalog row: is_factory in shop_info, the others at the top level."""
    holder = item.get("shop_info") or {} if name == "is_factory" else item
    return holder.get(name) is True


class Standin:
    """TMAPI's convert_url and search/image over `items`, served by `app`."""

    def __init__(self, items: list[StandinItem], *, token: str = "tm_ok", latency: float = 0.0, max_total: int = 200) -> None:
        self.items = list(items)
        self.token = token
        self.latency = latency
        self.max_total = max_total
        self.calls: collections.Counter[str] = collections.Counter()
        self.seen: list[dict[str, str]] = []
        self._wire = [Item.model_validate(i.item).model_dump(mode="json") for i in self.items]
        ids = [int(w["item_id"]) for w in self._wire]
        if len(set(ids)) != len(ids):
            raise ValueError("the stand-in's items need distinct item_ids")
        self._by_id = {item_id: at for at, item_id in enumerate(ids)}
        self._prices = [Decimal(w["price"]) for w in self._wire]
        self._sales = [int(w["sale_info"]["sale_quantity_int"]) for w in self._wire]
        self._flags = [{name: _flagged(i.item, name) for name in FLAGS} for i in self.items]
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            described = list(pool.map(_item_descriptor, [i.photo for i in self.items]))
        self._rows = Descriptor.stack(described) if described else Descriptor(*(np.zeros((0, n)) for n in (64, 64, 108)))
        self._owner = np.repeat(np.arange(len(described)), [len(d.bits) for d in described])
        self._converted: dict[str, Descriptor] = {}  # path -> the converted photo's descriptor
        self._ranked: dict[str, list[int]] = {}  # path -> item positions, most similar first
        self._lock = threading.Lock()
        self._failure: tuple[int | str, int, str | None] | None = None  # (code or kind, calls left or -1, only)
        self._cleared = 0  # bumped by clear(): a pending "timeout" stops waiting
        self.app = self._build()

    # failures on demand ---------------------------------------------------------------------
    def fail(self, code_or_kind: int | str, times: int = 1, *, only: str | None = None) -> None:
        """The next `times` calls of convert_url or search (-1: every call until clear()) answer
        TMAPI's error `code` (its envelope, that HTTP status), or: "timeout" (30 s, then 499),
        "malformed" (200 with an HTML page), "bad_items" (200 envelope, items missing required fields;
        for convert_url, data without image_url). `only`: "convert" or "search" to spare the other."""
        if isinstance(code_or_kind, bool) or not (
            (isinstance(code_or_kind, int) and 400 <= code_or_kind <= 599) or code_or_kind in KINDS
        ):
            raise ValueError(f"fail() takes an HTTP error code or one of {KINDS}; got {code_or_kind!r}")
        if times != -1 and times < 1:
            raise ValueError("times must be at least 1, or -1 for until clear()")
        if only not in (None, "convert", "search"):
            raise ValueError(f'only must be "convert", "search" or None; got {only!r}')
        with self._lock:
            self._failure = (code_or_kind, times, only)

    def clear(self) -> None:
        """No more failures on demand; calls waiting out a "timeout" answer now."""
        with self._lock:
            self._failure = None
            self._cleared += 1

    def _take_failure(self, endpoint: str) -> int | str | None:
        with self._lock:
            if self._failure is None or self._failure[2] not in (None, endpoint):
                return None
            kind, left, only = self._failure
            self._failure = None if left == 1 else (kind, left if left == -1 else left - 1, only)
            return kind

    async def _wait(self, seconds: float, request: Request, until_cleared: bool = False) -> None:
        """Sleep, but stop when the client hangs up (or clear() is called), so the server can stop."""
        cleared, deadline = self._cleared, time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))
            if (until_cleared and self._cleared != cleared) or await request.is_disconnected():
                return

    async def _failed(self, kind: int | str, request: Request, bad: Callable[[], Any]) -> Response:
        if kind == "timeout":
            await self._wait(TIMEOUT_SLEEP, request, until_cleared=True)
            return _envelope(499, MESSAGES[499])
        if kind == "malformed":
            return HTMLResponse(BROKEN_PAGE, status_code=200)
        if kind == "bad_items":
            return _envelope(200, "success", bad())
        assert isinstance(kind, int)
        return _envelope(kind, MESSAGES.get(kind, MESSAGES[500]))

    def _check_token(self, params: dict[str, str]) -> None:
        token = params.get("apiToken", "")
        if token == BROKE:
            raise _Refused(439, MESSAGES[439])
        if token != self.token:
            raise _Refused(401, MESSAGES[401])

    # search -----------------------------------------------------------------------------------
    def _query(self, img_url: str, request: Request) -> tuple[str, Descriptor]:
        """The descriptor of a converted path, or of the stand-in's own photo (TMAPI takes Ali-hosted images)."""
        if not img_url:
            raise _Refused(422, "img_url is required")
        if img_url in self._converted:
            return img_url, self._converted[img_url]
        url = urlsplit(img_url)
        own = PHOTO_PATH.fullmatch(url.path)
        if own and url.netloc == request.url.netloc and int(own[1]) in self._by_id:
            row = int(np.flatnonzero(self._owner == self._by_id[int(own[1])])[0])  # the whole photo's row
            return f"photo:{row}", Descriptor(
                self._rows.bits[row : row + 1], self._rows.hist[row : row + 1], self._rows.layout[row : row + 1]
            )
        raise _Refused(422, "img_url must be converted with convert_url first")

    def _rank(self, key: str, query: Descriptor) -> list[int]:
        """Every item's position, most similar first (ties: catalog order); cached per photo."""
        if key not in self._ranked:
            best = np.full(len(self.items), np.inf)
            np.minimum.at(best, self._owner, self._rows.distance(query))
            self._ranked[key] = [int(at) for at in np.argsort(best, kind="stable")]
        return self._ranked[key]

    def _page(self, params: dict[str, str], request: Request) -> dict[str, Any]:
        key, query = self._query(params.get("img_url", ""), request)
        page = _whole(params, "page", 1, 1)
        page_size = _whole(params, "page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        sort = params.get("sort", "").strip() or "default"
        if sort not in SORTS:
            raise _Refused(422, f"sort must be one of {', '.join(SORTS)}; got {sort!r}")
        low, high = _price(params, "price_start"), _price(params, "price_end")
        wanted = [name for name in FLAGS if _flag(params, name)]
        matches = [
            at
            for at in self._rank(key, query)
            if (low is None or self._prices[at] >= low)
            and (high is None or self._prices[at] <= high)
            and all(self._flags[at][name] for name in wanted)
        ][: self.max_total]
        if sort == "sales":
            matches.sort(key=lambda at: -self._sales[at])
        elif sort == "price_up":
            matches.sort(key=lambda at: self._prices[at])
        elif sort == "price_down":
            matches.sort(key=lambda at: -self._prices[at])
        shown = matches[(page - 1) * page_size : page * page_size]
        return {
            "page": page,
            "page_size": page_size,
            "total_count": len(matches),
            "keyword": "",
            "sort": sort,
            "cat_id": None,
            "filters": {},
            "items": [self._answered(at, request) for at in shown],
            "has_next_page": page * page_size < len(matches),
        }

    def _answered(self, at: int, request: Request) -> dict[str, Any]:
        wire = self._wire[at]
        return {**wire, "img": f"{str(request.base_url).rstrip('/')}/photos/{wire['item_id']}.jpg"}

    def _bad_page(self, request: Request) -> dict[str, Any]:
        """A page whose items lack required fields (title, img, price)."""
        broken = [
            {k: v for k, v in self._answered(at, request).items() if k not in ("title", "img", "price")}
            for at in range(min(3, len(self.items)))
        ]
        return {"page": 1, "page_size": MAX_PAGE_SIZE, "total_count": len(broken), "items": broken, "has_next_page": False}

    # convert_url ------------------------------------------------------------------------------
    async def _convert(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _Refused(422, 'the body must be JSON: {"url": ..., "search_api_endpoint": "/search/image"}')
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise _Refused(422, "url is required")
        if urlsplit(url.strip()).scheme not in ("http", "https"):
            raise _Refused(422, f"url must be an http or https URL; got {url!r}")
        if body.get("search_api_endpoint") not in ENDPOINTS:
            raise _Refused(
                422, f"search_api_endpoint must be one of {', '.join(ENDPOINTS)}; got {body.get('search_api_endpoint')!r}"
            )
        photo = await self._fetch(url.strip())
        try:
            described = await asyncio.to_thread(describe, photo)
        except Exception:
            raise _Refused(422, "the image could not be fetched: the answer is not an image") from None
        path = f"/search/imgextra/{time.time_ns() // 1_000_000}_{hashlib.sha256(photo).hexdigest()[:8]}.jpg"
        self._converted[path] = described
        return {"image_url": path}

    @staticmethod
    async def _fetch(url: str) -> bytes:
        try:
            async with (
                httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=True, trust_env=False) as http,
                http.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise _Refused(422, f"the image could not be fetched: HTTP {response.status_code}")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_PHOTO:
                        raise _Refused(422, "the image could not be fetched: larger than 20 MB")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as error:
            raise _Refused(422, f"the image could not be fetched: {type(error).__name__}") from None

    # the app ----------------------------------------------------------------------------------
    def _build(self) -> fastapi.FastAPI:
        app = fastapi.FastAPI(title="TMAPI stand-in", openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/1688/tools/image/convert_url")
        async def convert_url(request: Request) -> Response:
            self.calls["convert"] += 1
            failure = self._take_failure("convert")
            if failure is not None:
                return await self._failed(failure, request, dict)
            try:
                self._check_token(dict(request.query_params))
                return _envelope(200, "success", await self._convert(request))
            except _Refused as refused:
                return _envelope(refused.code, refused.msg)

        @app.get("/1688/search/image")
        async def search_image(request: Request) -> Response:
            params = dict(request.query_params)
            self.seen.append(params)
            self.calls["search"] += 1
            self.calls[params.get("img_url", "")] += 1
            failure = self._take_failure("search")
            if failure is not None:
                return await self._failed(failure, request, lambda: self._bad_page(request))
            try:
                self._check_token(params)
                data = self._page(params, request)
            except _Refused as refused:
                return _envelope(refused.code, refused.msg)
            if self.latency > 0:
                await self._wait(self.latency, request)
            return _envelope(200, "success", data)

        @app.get("/photos/{item_id}.jpg")
        async def photo(item_id: str) -> Response:
            self.calls["photo"] += 1
            at = self._by_id.get(int(item_id)) if item_id.isdigit() else None
            if at is None:
                return Response(status_code=404)
            return Response(self.items[at].photo, media_type="image/jpeg")

        return app


def luma_standin(limit: int | None = None, *, id_offset: int = 0, catalog: Path = LUMA, **kw: Any) -> Standin:
    """A stand-in whose items are the first `limit` offers of the luma catalog (../shared/catalogs/luma),
    each with its main photo (`img`, relative to the catalog's folder), item_id + id_offset."""
    rows = [json.loads(line) for line in catalog.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    items = []
    for row in rows:
        item_id = int(row["item_id"]) + id_offset
        url = str(row.get("product_url", "")).replace(str(row["item_id"]), str(item_id))
        items.append(
            StandinItem(item={**row, "item_id": item_id, "product_url": url}, photo=(catalog.parent / row["img"]).read_bytes())
        )
    return Standin(items, **kw)


def main(argv: list[str] | None = None) -> None:
    """`python -m snapsource.tools.tmapi_standin`: the luma stand-in on loopback, to try
    snapsource's upstream mode without a TMAPI account (docs/upstream.md)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m snapsource.tools.tmapi_standin", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--token", default="tm_demo", help="the apiToken it accepts")
    parser.add_argument("--latency", type=float, default=2.5, help="seconds each search takes (TMAPI: about 2.5)")
    parser.add_argument("--catalog", type=Path, default=LUMA, help="a catalog.jsonl whose offers it answers")
    parser.add_argument("--id-offset", type=int, default=0, help="added to every item_id")
    args = parser.parse_args(argv)
    print(f"TMAPI stand-in: describing the photos of {args.catalog} (a few seconds)...", flush=True)
    stand = luma_standin(catalog=args.catalog, id_offset=args.id_offset, token=args.token, latency=args.latency)
    print(f"TMAPI stand-in: {len(stand.items)} offers on http://127.0.0.1:{args.port} (apiToken {args.token})", flush=True)
    uvicorn.run(stand.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
