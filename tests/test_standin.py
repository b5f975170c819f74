"""The TMAPI stand-in (snapsource.tools.tmapi_standin) over real HTTP on loopback: conversion of a
photo another server serves, search by its look, TMAPI's parameters, envelopes and failures."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from decimal import Decimal

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from PIL import Image, ImageEnhance

from conftest import SPEC
from snapsource.client import Busy, Client, InvalidRequest, QuotaExceeded
from snapsource.offer import Item
from snapsource.tools.loopback import serve
from snapsource.tools.tmapi_standin import Standin, luma_standin

EXAMPLE = json.loads((SPEC / "search-image-response-example.json").read_text())


@pytest.fixture(scope="module")
def stand() -> Standin:
    return luma_standin(limit=40)


@pytest.fixture(scope="module")
def tmapi(stand):
    with serve(stand.app) as url, httpx.Client(base_url=url, timeout=20) as http:
        yield http


@pytest.fixture(scope="module")
def photos():
    """A tiny image server: put(name, bytes) -> the URL that serves them."""
    served: dict[str, bytes] = {}
    app = FastAPI()

    @app.get("/p/{name}")
    def photo(name: str) -> Response:
        return Response(served[name], media_type="image/jpeg") if name in served else Response(status_code=404)

    @app.get("/page.html")
    def page() -> HTMLResponse:
        return HTMLResponse("<!doctype html><html><body>not a photo</body></html>")

    with serve(app) as url:

        def put(name: str, data: bytes) -> str:
            served[name] = data
            return f"{url}/p/{name}"

        put.base = url  # type: ignore[attr-defined]
        yield put


def convert(http: httpx.Client, url: str, token: str = "tm_ok", **body) -> httpx.Response:
    return http.post(
        "/1688/tools/image/convert_url",
        params={"apiToken": token},
        json={"url": url, "search_api_endpoint": "/search/image", **body},
    )


def base(http: httpx.Client) -> str:
    return str(http.base_url).rstrip("/")


def converted(http: httpx.Client, url: str) -> str:
    got = convert(http, url)
    assert got.status_code == 200, got.text
    return got.json()["data"]["image_url"]


def search(http: httpx.Client, img_url: str, token: str = "tm_ok", **params) -> httpx.Response:
    return http.get("/1688/search/image", params={"apiToken": token, "img_url": img_url, **params})


def data(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 200 and body["msg"] == "success"
    return body["data"]


def every_item(http: httpx.Client, img_url: str, **params) -> list[dict]:
    items, page = [], 1
    while True:
        got = data(search(http, img_url, page=page, page_size=20, **params))
        items += got["items"]
        if not got["has_next_page"]:
            return items
        page += 1


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((int(left * w), int(top * h), int(w * (1 - right)), int(h * (1 - bottom))))


def tinted(image: Image.Image) -> Image.Image:
    shifted = np.clip(np.asarray(image, dtype=np.int16) + np.array([12, 0, -12]), 0, 255).astype(np.uint8)
    return Image.fromarray(shifted)


ALTERED = {
    "recompressed": lambda im: jpeg(im, 35),
    "resized": lambda im: jpeg(im.resize((im.width // 3, im.height // 3))),
    "cropped 10% around": lambda im: jpeg(crop(im, 0.05, 0.05, 0.05, 0.05)),
    "top 10% cut": lambda im: jpeg(crop(im, 0, 0.1, 0, 0)),
    "corner 10% cut": lambda im: jpeg(crop(im, 0.1, 0.1, 0, 0)),
    "brighter": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.1)),
    "tinted": lambda im: jpeg(tinted(im)),
    "cropped, darker, smaller": lambda im: jpeg(
        ImageEnhance.Brightness(crop(im, 0.06, 0.03, 0.02, 0.07)).enhance(0.92).resize((im.width // 2, im.height // 2)), 70
    ),
}


def test_a_converted_photo_finds_its_item_first(stand, tmapi, photos):
    for at in (0, 7, 19, 33, 39):
        item = stand.items[at]
        path = converted(tmapi, photos(f"item{at}.jpg", item.photo))
        sha = hashlib.sha256(item.photo).hexdigest()
        assert re.fullmatch(rf"/search/imgextra/[0-9]{{13}}_{sha[:8]}\.jpg", path)
        first = data(search(tmapi, path, page_size=5))["items"][0]
        assert first["item_id"] == item.item["item_id"]
        assert first["img"] == f"{base(tmapi)}/photos/{first['item_id']}.jpg"
        before = stand.calls["photo"]
        shown = tmapi.get(first["img"])
        assert shown.content == item.photo and shown.headers["content-type"] == "image/jpeg"
        assert stand.calls["photo"] == before + 1
    assert tmapi.get("/photos/1.jpg").status_code == 404


@pytest.mark.parametrize("how", list(ALTERED))
def test_an_altered_copy_finds_its_item_first(stand, tmapi, photos, how):
    for at in range(0, 40, 4):
        item = stand.items[at]
        copy = ALTERED[how](Image.open(io.BytesIO(item.photo)).convert("RGB"))
        path = converted(tmapi, photos(f"{how}-{at}.jpg", copy))
        assert data(search(tmapi, path, page_size=1))["items"][0]["item_id"] == item.item["item_id"], (how, at)


def test_the_same_photo_converted_twice_and_an_own_photo(stand, tmapi, photos):
    url = photos("twice.jpg", stand.items[3].photo)
    first, second = converted(tmapi, url), converted(tmapi, url)
    assert first.rsplit("_", 1)[1] == second.rsplit("_", 1)[1]  # the photo's hash; the time may differ
    ids = [i["item_id"] for i in every_item(tmapi, first)]
    assert ids == [i["item_id"] for i in every_item(tmapi, second)]
    # TMAPI takes Alibaba-hosted images as they are: here, the stand-in's own item photos
    own = data(search(tmapi, f"{base(tmapi)}/photos/{stand.items[3].item['item_id']}.jpg"))
    assert own["items"][0]["item_id"] == stand.items[3].item["item_id"]


def test_answers_have_the_spec_fields_in_the_spec_order(stand, tmapi, photos):
    path = converted(tmapi, photos("fields.jpg", stand.items[1].photo))
    got = data(search(tmapi, path))
    assert list(got) == list(EXAMPLE["data"])
    assert (got["page"], got["page_size"], got["keyword"], got["sort"], got["cat_id"], got["filters"]) == (
        1,
        20,
        "",
        "default",
        None,
        {},
    )
    keys = list(EXAMPLE["data"]["items"][0])
    shop_keys = list(EXAMPLE["data"]["items"][0]["shop_info"])
    for item in every_item(tmapi, path):
        assert list(item) == keys and list(item["shop_info"]) == shop_keys
        Item.model_validate(item)
    source = stand.items[1].item
    answered = next(i for i in got["items"] if i["item_id"] == source["item_id"])
    assert {k: v for k, v in answered.items() if k != "img"} == {k: source[k] for k in keys if k != "img"}


def test_filters_sorts_and_pages(stand, tmapi, photos):
    path = converted(tmapi, photos("filters.jpg", stand.items[2].photo))
    rows = {i.item["item_id"]: i.item for i in stand.items}
    everything = every_item(tmapi, path)
    assert len(everything) == 40 and {i["item_id"] for i in everything} == set(rows)

    cheap = every_item(tmapi, path, price_start="20", price_end="60.5")
    assert cheap and all(Decimal("20") <= Decimal(i["price"]) <= Decimal("60.5") for i in cheap)
    assert len(cheap) == sum(Decimal("20") <= Decimal(r["price"]) <= Decimal("60.5") for r in rows.values())
    factories = every_item(tmapi, path, is_factory="true")
    assert len(factories) == sum(r["shop_info"]["is_factory"] is True for r in rows.values()) > 0
    assert all(i["shop_info"]["is_factory"] for i in factories)
    for flag in ("support_dropshipping", "free_shipping", "verified_supplier", "new_arrival"):
        kept = every_item(tmapi, path, **{flag: "true"})
        assert {i["item_id"] for i in kept} == {k for k, r in rows.items() if r[flag] is True}, flag
        assert all(flag not in i for i in kept)
    assert len(every_item(tmapi, path, is_factory="false")) == 40  # false: any offer
    both = every_item(tmapi, path, is_factory="true", price_end="50")
    assert {i["item_id"] for i in both} == {i["item_id"] for i in factories if Decimal(i["price"]) <= 50}
    # a filter keeps the similarity order
    order = [i["item_id"] for i in everything]
    assert [i["item_id"] for i in factories] == [k for k in order if rows[k]["shop_info"]["is_factory"]]

    sales = [i["sale_info"]["sale_quantity_int"] for i in every_item(tmapi, path, sort="sales")]
    assert sales == sorted(sales, reverse=True)
    up = [Decimal(i["price"]) for i in every_item(tmapi, path, sort="price_up")]
    assert up == sorted(up)
    down = [Decimal(i["price"]) for i in every_item(tmapi, path, sort="price_down")]
    assert down == sorted(down, reverse=True)
    assert data(search(tmapi, path, sort="sales"))["sort"] == "sales"

    pages = [data(search(tmapi, path, page=p, page_size=15)) for p in (1, 2, 3, 4)]
    assert [len(p["items"]) for p in pages] == [15, 15, 10, 0]
    assert [p["has_next_page"] for p in pages] == [True, True, False, False]
    assert all(p["total_count"] == 40 and p["page_size"] == 15 for p in pages)
    assert [i["item_id"] for p in pages for i in p["items"]] == order

    few = Standin(stand.items[:12], max_total=5)
    with serve(few.app) as url, httpx.Client(base_url=url, timeout=20) as http:
        mine = converted(http, f"{url}/photos/{stand.items[0].item['item_id']}.jpg")
        capped = data(search(http, mine, page_size=3))
        assert capped["total_count"] == 5 and capped["has_next_page"]
        assert len(every_item(http, mine)) == 5
        assert every_item(http, mine, sort="sales")[0]["sale_info"]["sale_quantity_int"] == max(
            i["sale_info"]["sale_quantity_int"] for i in every_item(http, mine)
        )  # sorted among the 5 most similar


def test_parameter_errors(stand, tmapi, photos):
    path = converted(tmapi, photos("params.jpg", stand.items[4].photo))
    for params, word in (
        ({"page_size": "21"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"sort": "newest"}, "sort"),
        ({"price_start": "cheap"}, "price_start"),
        ({"price_end": "-1"}, "price_end"),
        ({"is_factory": "maybe"}, "is_factory"),
    ):
        got = search(tmapi, path, **params)
        body = got.json()
        assert got.status_code == 422 and body["code"] == 422 and body["data"] is None and word in body["msg"], params
    for img_url in ("https://shop.example/a.jpg", "/search/imgextra/1692942898123_q7ftzxs9.jpg", ""):
        got = search(tmapi, img_url)
        assert got.status_code == 422 and got.json()["code"] == 422
    assert "convert_url" in search(tmapi, "https://shop.example/a.jpg").json()["msg"]


def test_tokens(stand, tmapi, photos):
    url = photos("tokens.jpg", stand.items[5].photo)
    path = converted(tmapi, url)
    for token, code, msg in (("tm_wrong", 401, "Invalid apiToken"), ("", 401, "Invalid apiToken"), ("tm_broke", 439, "balance")):
        for got in (search(tmapi, path, token=token), convert(tmapi, url, token=token)):
            assert got.status_code == code and got.json()["code"] == code and msg in got.json()["msg"]
            assert got.json()["data"] is None
    assert tmapi.get("/1688/search/image", params={"img_url": path}).status_code == 401  # no apiToken at all


def test_convert_errors(stand, tmapi, photos):
    good = photos("convert.jpg", stand.items[6].photo)
    for body, word in (
        ({"url": ""}, "url"),
        ({"url": "ftp://127.0.0.1/a.jpg"}, "url"),
        ({"search_api_endpoint": "/search/text"}, "search_api_endpoint"),
        ({"search_api_endpoint": None}, "search_api_endpoint"),
        ({"url": f"{photos.base}/p/missing.jpg"}, "could not be fetched"),
        ({"url": f"{photos.base}/page.html"}, "could not be fetched"),
        ({"url": "http://127.0.0.1:9/a.jpg"}, "could not be fetched"),
    ):
        got = convert(tmapi, body.pop("url", good), **body)
        assert got.status_code == 422 and got.json()["code"] == 422 and word in got.json()["msg"], body
    not_json = tmapi.post("/1688/tools/image/convert_url", params={"apiToken": "tm_ok"}, content=b"url=x")
    assert not_json.status_code == 422
    for endpoint in ("/global/search/image", "/global/search/image/v2"):
        assert convert(tmapi, good, search_api_endpoint=endpoint).status_code == 200


@pytest.mark.parametrize("code", [417, 439, 499, 503, 500, 422])
def test_errors_on_demand(stand, tmapi, photos, code):
    url = photos("demand.jpg", stand.items[8].photo)
    path = converted(tmapi, url)
    stand.fail(code, times=2)
    for got in (search(tmapi, path), convert(tmapi, url)):  # the next two calls, of either endpoint
        assert got.status_code == code and got.json() == {"code": code, "msg": got.json()["msg"], "data": None}
        assert got.json()["msg"]
    assert search(tmapi, path).status_code == 200
    stand.fail(code, times=-1)
    try:
        assert all(search(tmapi, path).status_code == code for _ in range(4))
    finally:
        stand.clear()
    assert search(tmapi, path).status_code == 200 and convert(tmapi, url).status_code == 200
    stand.fail(code, only="search")  # the conversion is spared
    assert convert(tmapi, url).status_code == 200
    assert search(tmapi, path).status_code == code and search(tmapi, path).status_code == 200
    stand.fail(code, only="convert")
    assert search(tmapi, path).status_code == 200 and convert(tmapi, url).status_code == code


def test_broken_answers_on_demand(stand, tmapi, photos):
    url = photos("broken.jpg", stand.items[9].photo)
    path = converted(tmapi, url)
    stand.fail("malformed", times=2)
    for got in (search(tmapi, path), convert(tmapi, url)):
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/html")
        with pytest.raises(ValueError):
            got.json()
    stand.fail("bad_items")
    bad = data(search(tmapi, path))
    assert bad["items"] and all("title" not in i and "price" not in i for i in bad["items"])
    with pytest.raises(ValueError):
        Item.model_validate(bad["items"][0])
    stand.fail("bad_items")
    assert "image_url" not in data(convert(tmapi, url))
    assert data(search(tmapi, path))["items"][0]["title"]  # once only
    with pytest.raises(ValueError):
        stand.fail("sometimes")
    with pytest.raises(ValueError):
        stand.fail(503, times=0)
    with pytest.raises(ValueError):
        stand.fail(503, only="photos")


def test_timeout_on_demand_and_latency(stand, tmapi, photos):
    url = photos("timeout.jpg", stand.items[10].photo)
    path = converted(tmapi, url)
    stand.fail("timeout", times=2)
    started = time.monotonic()
    with httpx.Client(base_url=base(tmapi), timeout=0.4) as impatient:
        for call in (search, convert):
            with pytest.raises(httpx.ReadTimeout):
                call(impatient, path if call is search else url)
    assert time.monotonic() - started < 3
    assert search(tmapi, path).status_code == 200
    # a patient client gets 499 once clear() ends the wait; a server waiting on one stops promptly
    alone = Standin(stand.items[:3])
    with serve(alone.app) as own:
        alone.fail("timeout", times=-1)
        with httpx.Client(base_url=own, timeout=20) as patient:
            cleared = threading.Timer(0.5, alone.clear)
            cleared.start()
            got = patient.get("/1688/search/image", params={"apiToken": "tm_ok", "img_url": "/x.jpg"})
            assert got.status_code == 499 and got.json()["code"] == 499
        alone.fail("timeout")
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{own}/1688/search/image", params={"apiToken": "tm_ok"}, timeout=0.3)
        leaving = time.monotonic()
    assert time.monotonic() - leaving < 3

    stand.latency = 0.4
    try:
        started = time.monotonic()
        assert data(search(tmapi, path))["items"]
        assert time.monotonic() - started >= 0.4
    finally:
        stand.latency = 0.0


def test_calls_and_seen(stand, tmapi, photos):
    url = photos("seen.jpg", stand.items[11].photo)
    before = stand.calls.copy()
    path = converted(tmapi, url)
    search(tmapi, path, page="2", is_factory="true")
    search(tmapi, path)
    assert stand.calls["convert"] == before["convert"] + 1 and stand.calls["search"] == before["search"] + 2
    assert stand.calls[path] == 2
    assert stand.seen[-2] == {"apiToken": "tm_ok", "img_url": path, "page": "2", "is_factory": "true"}


def test_the_client_against_the_standin(stand, tmapi):
    url = base(tmapi)
    item = stand.items[12].item
    with Client(url, "tm_ok", backoff=0.01) as api:
        path = api.convert_url(f"{url}/photos/{item['item_id']}.jpg")
        page = api.search_image(path, page_size=15, sort="default")
        assert page.items[0].item_id == item["item_id"] and page.total_count == 40 and page.has_next_page
        walked = [i.item_id for i in api.iter_search(path, page_size=15)]
        assert walked[:15] == [i.item_id for i in page.items] and sorted(walked) == sorted(i.item["item_id"] for i in stand.items)
        stand.fail(503)
        calls = stand.calls[path]
        assert api.search_image(path).items and stand.calls[path] == calls + 2  # retried
        with pytest.raises(InvalidRequest):
            api.search_image("/search/imgextra/never.jpg")
        stand.fail(503, times=-1)
        try:
            with pytest.raises(Busy):
                api.search_image(path)
        finally:
            stand.clear()
    with Client(url, "tm_broke") as broke, pytest.raises(QuotaExceeded):
        broke.convert_url(f"{url}/photos/{item['item_id']}.jpg")
