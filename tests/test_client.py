"""The Python client against a real snapsource server and against the TMAPI stand-in (snapsource.tools.tmapi_standin)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys

import pytest

from conftest import LUMA, SPEC, luma_offers, main_image_url
from snapsource.client import AsyncClient, Busy, Client, InvalidRequest, QuotaExceeded, TimedOut, Unauthorized
from snapsource.offer import Item
from snapsource.tools.loopback import serve
from snapsource.tools.tmapi_standin import Standin, luma_standin


@pytest.fixture(scope="module")
def tmapi():
    """TMAPI as its documentation describes it (../shared/spec): the loopback stand-in."""
    stand = luma_standin(limit=40)
    with serve(stand.app) as url:
        yield url, stand


def photo_url(url: str, stand: Standin, at: int = 0) -> str:
    """A photo on loopback for convert_url to fetch: one of the stand-in's own."""
    return f"{url}/photos/{stand.items[at].item['item_id']}.jpg"


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
    url, stand = tmapi
    calls = stand.calls
    converts = calls["convert"]
    with Client(url, "tm_ok", backoff=0.01) as api:
        path = api.convert_url(photo_url(url, stand))
        assert path.startswith("/search/imgextra/") and calls["convert"] == converts + 1
        page = api.search_image(path, page_size=15)
        assert page.total_count >= 1 and page.items and page.items[0].title
        assert page.items[0].item_id == stand.items[0].item["item_id"]  # the photo's own item first
        before = calls[path]
        walked = [i.item_id for i in api.iter_search(path, page_size=15)]
        assert calls[path] == before + 3  # 3 pages
        assert walked[:15] == [i.item_id for i in page.items] and len(set(walked)) == len(walked) == page.total_count
        stand.fail(503)
        before = calls[path]
        assert api.search_image(path).items and calls[path] == before + 2  # 503 once, retried
        stand.fail(499)
        before = calls[path]
        assert api.search_image(path).items and calls[path] == before + 2  # 499 once, retried
        with pytest.raises(InvalidRequest):
            api.search_image("https://shop.example/not-converted.jpg")
        assert calls["https://shop.example/not-converted.jpg"] == 1  # 422 is not retried
        stand.fail(503, times=-1)
        before = calls[path]
        try:
            with pytest.raises(Busy) as caught:
                api.search_image(path)
        finally:
            stand.clear()
        assert caught.value.code == 503 and calls[path] == before + 4  # 1 + 3 retries
    with Client(url, "tm_broke") as api, pytest.raises(QuotaExceeded) as caught:
        api.search_image("/search/imgextra/a.jpg")
    assert caught.value.code == 439 and calls["/search/imgextra/a.jpg"] == 1


def test_async_client(tmapi):
    url, stand = tmapi

    async def run():
        async with AsyncClient(url, "tm_ok", backoff=0.01) as api:
            path = await api.convert_url(photo_url(url, stand, 1))
            before = stand.calls[path]
            items = [item async for item in api.iter_search(path, page_size=15)]
            assert stand.calls[path] == before + 3  # three pages walked
            stand.fail(499)
            with pytest.raises(TimedOut):
                async with AsyncClient(url, "tm_ok", retries=0) as once:
                    await once.search_image(path)
            return items

    items = asyncio.run(run())
    assert len(items) == len({i.item_id for i in items}) == len(stand.items)
    assert items[0].item_id == stand.items[1].item["item_id"]


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


def test_client_takes_every_search_parameter_of_the_server():
    """The client's search parameters are the server's, under the same names, so none can go missing."""
    import inspect

    from snapsource.api.routes.search import search_params as server_params
    from snapsource.client import SearchOptions, search_params

    server = list(inspect.signature(server_params).parameters)
    assert list(SearchOptions.__annotations__) == server
    assert list(inspect.signature(search_params).parameters) == server
    every = search_params(
        cat_id=1028,
        keyword="bra",
        region="0,600,0,900",
        group_same=True,
        match="same",
        score_threshold=0.5,
        explain=True,
        regions="all",
        is_factory=True,
    )
    assert every == {
        "page": 1,
        "page_size": 20,
        "sort": "default",
        "is_factory": "true",  # the server's booleans: true/false/1/0
        "cat_id": "1028",
        "keyword": "bra",
        "region": "0,600,0,900",
        "match": "same",
        "score_threshold": "0.5",
        "regions": "all",
        "group_same": "true",
        "explain": "true",
    }
    assert search_params() == {"page": 1, "page_size": 20, "sort": "default"}  # a TMAPI server sees only its own
    with pytest.raises(TypeError):
        search_params(explian=True)  # type: ignore[call-arg]


def raw_search(client, token: str, img_url: str, **params) -> dict:
    """`data` of GET /1688/search/image as it is on the wire, booleans as the server takes them."""
    wire = {k: "true" if v is True else v for k, v in params.items()}
    response = client.get("/1688/search/image", params={"apiToken": token, "img_url": img_url, **wire})
    assert response.status_code == 200, response.text
    return response.json()["data"]


SNAPSOURCE_OPTIONS = (
    {"explain": True, "group_same": True, "page_size": 10},
    {"explain": True, "match": "same", "cat_id": 1028, "keyword": "bra", "score_threshold": 0.3},
    {"regions": "all", "region": "0,600,0,900", "explain": True, "page_size": 3},
    {"cat_id": "1027", "sort": "price_up", "is_factory": True, "price_end": 150},
)


def test_client_passes_every_parameter_and_types_the_answer(base_url, token, resources, client):
    """Each of snapsource's parameters reaches the server (the answer is the one a raw request gets),
    and the answer is typed as sent: a dump of the typed page is the wire's JSON again."""
    from snapsource.client import CategoryVote, SameProduct, SearchGroup, SearchItem

    offer = luma_offers()[0]  # its main photo is shared by two offers: group_same folds them
    img_url = main_image_url(resources, offer)
    with Client(base_url, token) as api:
        for options in SNAPSOURCE_OPTIONS:
            raw = raw_search(client, token, img_url, **options)
            page = api.search_image(img_url, **options)
            assert page.model_dump(mode="json") == raw, options
            assert all(isinstance(item, SearchItem) for item in page.items)
        grouped = api.search_image(img_url, explain=True, group_same=True)
        first = grouped.items[0]
        assert isinstance(first.same_product, list) and isinstance(first.same_product[0], SameProduct)
        assert first.similarity is not None and 0 <= first.similarity <= 1 and first.match == "same"
        assert first.matched_img and "/img/" in first.matched_img
        assert isinstance(grouped.cat_id, int) and grouped.cat_id == int(offer["category_path"][-1])  # a numeric id
        assert grouped.categories and all(isinstance(v, CategoryVote) for v in grouped.categories)
        assert isinstance(grouped.region, list) and isinstance(grouped.regions, list)
        plain = api.search_image(img_url, page_size=3)
        assert plain.categories is None and plain.groups is None and plain.items[0].similarity is None
        assert "similarity" not in plain.items[0].model_dump() and "categories" not in plain.model_dump()
        narrowed = api.search_image(img_url, cat_id=1028, keyword="bra", match="same")
        assert narrowed.cat_id == 1028 and narrowed.keyword == "bra" and narrowed.items
        assert all("1028" in item.category_path and "bra" in item.title.lower() for item in narrowed.items)
        boxes = api.search_image(img_url, regions="all", page_size=2)
        assert boxes.groups and all(isinstance(g, SearchGroup) for g in boxes.groups)
        assert [g.region for g in boxes.groups] == boxes.regions

        # by upload (POST) and over every page, the parameters travel too
        photo = (LUMA.parent / offer["img"]).read_bytes()
        posted = api.search_image(file=photo, explain=True, match="same", page_size=1)
        assert posted.image_url and posted.items[0].match == "same" and posted.categories
        walked = list(api.iter_search(file=photo, explain=True, match="same", page_size=1))
        assert len(walked) == posted.total_count >= 2 and all(item.match == "same" for item in walked)
        with pytest.raises(InvalidRequest) as caught:
            api.search_image(img_url, match="maybe")
        assert "match" in caught.value.msg

    async def run():
        async with AsyncClient(base_url, token) as api:
            page = await api.search_image(img_url, explain=True, group_same=True, keyword="bra")
            items = [item async for item in api.iter_search(file=photo, explain=True, match="same", page_size=1)]
            return page, items

    page, items = asyncio.run(run())
    assert page.model_dump(mode="json") == raw_search(client, token, img_url, explain=True, group_same=True, keyword="bra")
    assert [i.item_id for i in items] == [i.item_id for i in walked]


def test_answer_types_follow_the_server():
    """cat_id is a number for 1688's numeric ids, text for a catalog's named categories, null when
    nothing is predicted (the spec's example); snapsource's fields are optional for TMAPI's answers."""
    from snapsource.client import SearchPage

    example = json.loads((SPEC / "search-image-response-example.json").read_text())["data"]
    tmapi_page = SearchPage.model_validate(example)
    assert tmapi_page.cat_id is None and tmapi_page.region is None and tmapi_page.groups is None
    assert tmapi_page.model_dump(mode="json") == example  # TMAPI's answer dumps as TMAPI's answer
    named = SearchPage.model_validate(
        {
            **example,
            "cat_id": "Clothing",
            "categories": [{"cat_id": "Clothing", "share": 0.8}],
            "filters": {"price_end": "50", "is_factory": True},
        }
    )
    assert named.cat_id == "Clothing" and named.categories and named.categories[0].cat_id == "Clothing"
    assert named.filters == {"price_end": "50", "is_factory": True}
    assert SearchPage.model_validate({**example, "cat_id": 1031887}).cat_id == 1031887


def test_tmapi_gets_only_its_parameters(tmapi):
    url, stand = tmapi
    with Client(url, "tm_ok") as api:
        path = api.convert_url(photo_url(url, stand, 2))
        api.search_image(path, is_factory=True, price_end=50)
    assert stand.seen[-1] == {
        "apiToken": "tm_ok",
        "page": "1",
        "page_size": "20",
        "sort": "default",
        "price_end": "50",
        "is_factory": "true",
        "img_url": path,
    }
