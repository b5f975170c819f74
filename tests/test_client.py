"""The Python client against a real snapsource server and against a local fake of TMAPI."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import subprocess
import sys

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from conftest import LUMA, SPEC, luma_offers, main_image_url
from snapsource.client import AsyncClient, Busy, Client, InvalidRequest, QuotaExceeded, TimedOut, Unauthorized
from snapsource.offer import Item
from snapsource.tools.loopback import serve


def fake_tmapi() -> tuple[FastAPI, collections.Counter]:
    """TMAPI as its documentation describes it (../shared/spec): envelopes, codes, hosted images only."""
    app = FastAPI()
    calls: collections.Counter = collections.Counter()
    example = json.loads((SPEC / "search-image-response-example.json").read_text())

    def fail(code: int, msg: str) -> JSONResponse:
        return JSONResponse({"code": code, "msg": msg, "data": None}, status_code=code)

    @app.get("/1688/search/image")
    def search(request: Request) -> JSONResponse:
        q = request.query_params
        img = q.get("img_url", "")
        calls[img] += 1
        if q.get("apiToken") == "tm_broke":
            return fail(439, "Subscription expired or insufficient balance")
        if q.get("apiToken") != "tm_ok":
            return fail(401, "Invalid apiToken")
        if "busy" in img and calls[img] == 1 or "always-busy" in img:
            return fail(503, "API request concurrency limit exceeded")
        if "slow" in img and calls[img] == 1:
            return fail(499, "Request timed out")
        if not img.startswith("/search/imgextra/"):
            return fail(422, "img_url must be converted with convert_url")
        page = int(q.get("page", "1"))
        data = {**example["data"], "page": page, "has_next_page": page < 3}
        return JSONResponse({"code": 200, "msg": "success", "data": data})

    @app.post("/1688/tools/image/convert_url")
    async def convert(request: Request) -> JSONResponse:
        body = await request.json()
        calls["convert"] += 1
        return JSONResponse(
            {"code": 200, "msg": "success", "data": {"image_url": f"/search/imgextra/1692942898123_{len(body['url'])}.jpg"}}
        )

    return app, calls


@pytest.fixture(scope="module")
def tmapi():
    app, calls = fake_tmapi()
    with serve(app) as url:
        yield url, calls


def test_against_snapsource(base_url, token, resources):
    with Client(base_url, token) as api:
        page = api.search_image(main_image_url(resources, luma_offers()[0]), page_size=5, sort="sales")
        assert isinstance(page.items[0], Item) and len(page.items) == 5 and page.sort == "sales"
        sales = [i.sale_info.sale_quantity_int for i in page.items]
        assert sales == sorted(sales, reverse=True)
        offer = luma_offers()[2]
        photo = (LUMA.parent / offer["img"]).read_bytes()
        uploaded = api.upload(photo)
        assert uploaded == f"/img/{hashlib.sha256(photo).hexdigest()}.jpg"
        by_file = api.search_image(file=photo, page_size=20)
        assert by_file.image_url == uploaded and by_file.items
        twins = {o["item_id"] for o in luma_offers() if o["img"] == offer["img"]}
        assert by_file.items[0].item_id in twins  # a catalog photo finds its own offer first
        every = list(api.iter_search(file=photo, page_size=20))
        assert len(every) == by_file.total_count and len({i.item_id for i in every}) == len(every)
        with pytest.raises(InvalidRequest) as caught:
            api.convert_url("http://10.0.0.5/a.jpg")
        assert caught.value.code == 422 and "private" in caught.value.msg
    with Client(base_url, "ss_wrong") as api, pytest.raises(Unauthorized):
        api.search_image("/img/x.jpg")


def test_against_tmapi(tmapi):
    url, calls = tmapi
    with Client(url, "tm_ok", backoff=0.01) as api:
        path = api.convert_url("https://shop.example/photo.jpg")
        assert path.startswith("/search/imgextra/")
        page = api.search_image(path)
        assert page.total_count >= 1 and page.items and page.items[0].title
        assert [i.item_id for i in api.iter_search(path)] == [i.item_id for i in page.items] * 3  # 3 pages
        busy = "/search/imgextra/busy.jpg"
        assert api.search_image(busy).items and calls[busy] == 2  # 503 once, retried
        slow = "/search/imgextra/slow.jpg"
        assert api.search_image(slow).items and calls[slow] == 2  # 499 once, retried
        with pytest.raises(InvalidRequest):
            api.search_image("https://shop.example/not-converted.jpg")
        assert calls["https://shop.example/not-converted.jpg"] == 1  # 422 is not retried
        with pytest.raises(Busy) as caught:
            api.search_image("/search/imgextra/always-busy.jpg")
        assert caught.value.code == 503 and calls["/search/imgextra/always-busy.jpg"] == 4  # 1 + 3 retries
    with Client(url, "tm_broke") as api, pytest.raises(QuotaExceeded) as caught:
        api.search_image("/search/imgextra/a.jpg")
    assert caught.value.code == 439 and calls["/search/imgextra/a.jpg"] == 1


def test_async_client(tmapi):
    url, _ = tmapi

    async def run():
        async with AsyncClient(url, "tm_ok", backoff=0.01) as api:
            path = await api.convert_url("https://shop.example/b.jpg")
            items = [item async for item in api.iter_search(path)]
            with pytest.raises(TimedOut):
                async with AsyncClient(url, "tm_ok", retries=0) as once:
                    await once.search_image("/search/imgextra/slow-async.jpg")
            return items

    per_page = len(json.loads((SPEC / "search-image-response-example.json").read_text())["data"]["items"])
    assert len(asyncio.run(run())) == 3 * per_page  # three pages walked


def test_cli_client_search(base_url, token):
    offer = luma_offers()[3]
    photo = LUMA.parent / offer["img"]
    cli = [sys.executable, "-m", "snapsource", "client", "search", str(photo), "--url", base_url, "--token", token]
    out = subprocess.run([*cli, "--json", "--page-size", "3", "--sort", "sales"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 3 and all("item_id" in line for line in lines)
    sales = [line["sale_info"]["sale_quantity_int"] for line in lines]
    assert sales == sorted(sales, reverse=True)
    table = subprocess.run(cli, capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert table.returncode == 0 and " offers" in table.stdout
    assert offer["title"] in table.stdout  # the photo's own offer is listed, not just a header
    bad = subprocess.run([*cli[:-1], "ss_wrong"], capture_output=True, text=True)
    assert bad.returncode == 2 and "401" in bad.stderr
