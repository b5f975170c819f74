"""GET /1688/search/image over a real HTTP server: filters, sorts, pages, auth, bad input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from conftest import LUMA, all_items, luma_offers

OFFERS = {o["item_id"]: o for o in luma_offers()}
QUERY = luma_offers()[0]

pytestmark = pytest.mark.profiles


@pytest.fixture()
def search(search, resources):
    """These tests exercise filters, sorts and pages over a wide answer: every offer over
    `similarity_threshold` (score_threshold), not only those near the best match (tests/test_match.py)."""
    floor = str(resources.settings.similarity_threshold)

    def run(img, **params):
        return search(img, **{"score_threshold": floor, **params})

    return run


def test_own_image_finds_the_offer_first(search, resources):
    from conftest import main_image_url

    first = search(QUERY, page_size=1)["data"]["items"][0]
    twins = [o["item_id"] for o in OFFERS.values() if o["img"] == QUERY["img"]]
    assert first["item_id"] in twins and QUERY["item_id"] in twins
    assert first["img"].endswith(main_image_url(resources, QUERY))


def test_candidates_are_capped_and_thresholded(search, resources):
    data = search(QUERY)["data"]
    assert 0 < data["total_count"] <= resources.settings.candidate_cap
    assert data["total_count"] < len(OFFERS)  # the threshold leaves unrelated offers out


def test_pages_never_overlap_or_skip(search):
    unfiltered = search(QUERY)["data"]["total_count"]
    for sort in ("default", "sales", "price_up", "price_down"):
        seen, page = [], 1
        while True:
            data = search(QUERY, page=page, page_size=7, sort=sort)["data"]
            assert data["page"] == page and data["page_size"] == 7
            seen += [i["item_id"] for i in data["items"]]
            if not data["has_next_page"]:
                break
            assert len(data["items"]) == 7
            page += 1
        assert len(seen) == len(set(seen)) == unfiltered, sort
    beyond = search(QUERY, page=1000)["data"]
    assert beyond["items"] == [] and beyond["has_next_page"] is False


def test_sorts(search):
    everything = sorted(i["item_id"] for i in all_items(search, QUERY))
    by_sales = all_items(search, QUERY, sort="sales")
    sales = [i["sale_info"]["sale_quantity_int"] for i in by_sales]
    assert len(set(sales)) > 1  # values that differ, or any order would pass
    assert sales == sorted(sales, reverse=True)
    up = all_items(search, QUERY, sort="price_up")
    prices = [Decimal(i["price"]) for i in up]
    assert len(set(prices)) > 1
    assert prices == sorted(prices)
    down = [Decimal(i["price"]) for i in all_items(search, QUERY, sort="price_down")]
    assert down == sorted(down, reverse=True)
    for ordered in (by_sales, up):  # a sort reorders the same offers, none left out or repeated
        assert sorted(i["item_id"] for i in ordered) == everything
    assert search(QUERY, sort="sales")["data"]["sort"] == "sales"


@pytest.mark.parametrize("flag", ["support_dropshipping", "free_shipping", "verified_supplier", "is_factory", "new_arrival"])
def test_boolean_filters(search, flag):
    everything = all_items(search, QUERY)

    def has(item_id: int) -> bool:
        offer = OFFERS[item_id]
        if flag == "is_factory":
            return offer["shop_info"]["is_factory"] is True
        return offer[flag] is True

    expected = [i["item_id"] for i in everything if has(i["item_id"])]
    assert 0 < len(expected) < len(everything), "the query should exercise the filter"
    for value in ("true", "1"):
        body = search(QUERY, **{flag: value})
        assert body["data"]["filters"] == {flag: True}
        assert body["data"]["total_count"] == len(expected)
        assert [i["item_id"] for i in all_items(search, QUERY, **{flag: value})] == expected
    for value in ("false", "0"):
        assert search(QUERY, **{flag: value})["data"]["total_count"] == len(everything)


def test_price_filter_compares_decimals_not_strings(search):
    everything = all_items(search, QUERY)
    low, high = Decimal("9.5"), Decimal("100")
    expected = [i["item_id"] for i in everything if low <= Decimal(i["price"]) <= high]
    assert 0 < len(expected) < len(everything)
    got = all_items(search, QUERY, price_start="9.50", price_end="100")
    assert [i["item_id"] for i in got] == expected
    assert search(QUERY, price_start="9.50", price_end="100")["data"]["filters"] == {"price_start": "9.50", "price_end": "100"}
    only_min = all_items(search, QUERY, price_start="100")
    assert only_min and all(Decimal(i["price"]) >= 100 for i in only_min)


def test_filters_combine(search):
    # The query's own offer is a factory's that drop-ships; capped at its own price it passes all
    # three filters, so the combination can't come back empty, and dearer offers drop out.
    assert QUERY["shop_info"]["is_factory"] is True and QUERY["support_dropshipping"] is True
    cap = Decimal(QUERY["price"])
    params = {"is_factory": "true", "support_dropshipping": "1", "price_end": QUERY["price"]}

    def passes(offer: dict) -> bool:
        return (
            offer["shop_info"]["is_factory"] is True and offer["support_dropshipping"] is True and Decimal(offer["price"]) <= cap
        )

    everything = all_items(search, QUERY)
    expected = [i["item_id"] for i in everything if passes(OFFERS[i["item_id"]])]
    got = all_items(search, QUERY, **params)
    assert got, "the filters should keep some offers"
    assert QUERY["item_id"] in {i["item_id"] for i in got}
    assert 0 < len(got) < len(everything)
    for item in got:  # every filter holds, in the catalog and in the answer (which has no drop-ship field)
        assert passes(OFFERS[item["item_id"]]), item["item_id"]
        assert item["shop_info"]["is_factory"] is True and Decimal(item["price"]) <= cap
    assert [i["item_id"] for i in got] == expected  # the unfiltered ranking, narrowed
    data = search(QUERY, **params)["data"]
    assert data["total_count"] == len(got)
    assert data["filters"] == {"price_end": QUERY["price"], "support_dropshipping": True, "is_factory": True}
    for name, value in params.items():  # each filter alone keeps more: they combine with AND
        assert search(QUERY, **{name: value})["data"]["total_count"] > len(got), name


def test_new_arrival_falls_back_to_created_at(resources):
    from snapsource.search import Filters
    from snapsource.store.catalog import OfferFacts

    today = dt.date(2026, 11, 26)
    f = Filters(new_arrival=True)

    def facts(flag, created):
        return OfferFacts(1, Decimal("1"), 0, None, None, None, None, flag, created)

    assert f.matches(facts(None, dt.date(2026, 11, 1)), today, 30)
    assert not f.matches(facts(None, dt.date(2026, 10, 1)), today, 30)
    assert not f.matches(facts(None, None), today, 30)
    assert not f.matches(facts(False, dt.date(2026, 11, 25)), today, 30)
    assert f.matches(facts(True, None), today, 30)
    assert not Filters(is_factory=True).matches(facts(None, None), today, 30)  # missing field: no match


def test_absolute_img_url_of_this_service(search, base_url):
    by_path = search(QUERY, page_size=5)["data"]
    absolute = by_path["items"][0]["img"]
    assert absolute.startswith(base_url)
    by_url = search(absolute, page_size=5)
    assert by_url["code"] == 200
    # the same stored photo: the same search, not a fetch of some other image
    assert [i["item_id"] for i in by_url["data"]["items"]] == [i["item_id"] for i in by_path["items"]]
    assert by_url["data"]["total_count"] == by_path["total_count"]


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"page_size": "21"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"sort": "cheapest"}, "sort"),
        ({"price_start": "abc"}, "price_start"),
        ({"price_end": "-1"}, "price_end"),
        ({"price_start": "50", "price_end": "10"}, "price_start"),
        ({"is_factory": "maybe"}, "is_factory: must be true or false in any case, or 1 or 0"),
        ({"explain": "yes"}, "explain: must be true or false"),
        ({"group_same": "on"}, "group_same: must be true or false"),
        ({"new_arrival": "ture"}, "new_arrival: must be true or false"),
        ({"cat_id": "abc"}, "cat_id must be a category id, a whole number such as 1"),
        ({"cat_id": "-5"}, "got '-5'"),
        ({"cat_id": "1.5"}, "cat_id must be a category id"),
        ({"cat_id": "0"}, "cat_id must be a category id"),
        ({"match": "exact"}, "match: must be all or same"),
        ({"regions": "every"}, "regions: must be all, or left out"),
        ({"score_threshold": "nan"}, "score_threshold: must be a number between 0 and 1"),
        ({"score_threshold": "inf"}, "score_threshold: must be a number between 0 and 1"),
        ({"score_threshold": "-0.1"}, "score_threshold: must be a number between 0 and 1"),
        ({"score_threshold": "high"}, "score_threshold: must be a number between 0 and 1"),
        ({"img_url": ""}, "img_url"),
        ({"img_url": "http://10.0.0.5/img/O1CN01.jpg"}, "address 10.0.0.5 is private"),
        ({"img_url": "/img/" + "0" * 64 + ".jpg"}, "is not an image of this service"),
        ({"img_url": "ftp://x/y.jpg"}, "scheme"),
    ],
)
def test_bad_parameters_get_a_422_envelope(client, token, resources, params, needle):
    from conftest import main_image_url

    query = {"apiToken": token, "img_url": main_image_url(resources, QUERY), **params}
    response = client.get("/1688/search/image", params=query)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 422 and body["data"] is None
    assert needle in body["msg"]
    assert "pattern" not in body["msg"] and "^" not in body["msg"]  # what to send, not a regex


FLAG_PARAMS = ("support_dropshipping", "is_factory", "verified_supplier", "free_shipping", "new_arrival", "group_same", "explain")


@pytest.mark.parametrize("name", FLAG_PARAMS)
def test_every_boolean_takes_one_rule(search, name):
    """true/false in any case or 1/0, as clients send TMAPI's booleans; empty is left out (false)."""
    default = search(QUERY, page_size=20)["data"]
    on = search(QUERY, page_size=20, **{name: "true"})["data"]
    assert on != default, "the flag should change the answer"
    for value in ("TRUE", "True", "1"):
        assert search(QUERY, page_size=20, **{name: value})["data"] == on, value
    for value in ("false", "FALSE", "0", ""):
        assert search(QUERY, page_size=20, **{name: value})["data"] == default, value
    for value in ("yes", "no", "on", "t", "2", " true"):
        body = search(QUERY, **{name: value})
        assert body["code"] == 422 and f"{name}: must be true or false" in body["msg"], (value, body)


@pytest.mark.parametrize(
    "name",
    [
        "page",
        "page_size",
        "sort",
        "price_start",
        "price_end",
        "cat_id",
        "keyword",
        "region",
        "match",
        "score_threshold",
        "regions",
    ],
)
def test_an_empty_value_is_the_parameter_left_out(client, token, resources, name):
    from conftest import main_image_url

    query = {"apiToken": token, "img_url": main_image_url(resources, QUERY)}
    left_out = client.get("/1688/search/image", params=query).json()
    blank = client.get("/1688/search/image", params={**query, name: ""}).json()
    assert blank["code"] == 200 and blank == left_out


def test_post_takes_the_same_rules(client, token):
    photo = (LUMA.parent / QUERY["img"]).read_bytes()

    def post(**params):
        files = {"file": ("photo.jpg", photo, "image/jpeg")}
        return client.post("/1688/search/image", params={"apiToken": token, **params}, files=files).json()

    assert post(explain="", is_factory="1", page="")["code"] == 200
    refused = post(explain="yes")
    assert refused["code"] == 422 and "explain: must be true or false" in refused["msg"]
    refused = post(cat_id="abc")
    assert refused["code"] == 422 and "cat_id must be a category id" in refused["msg"]


def test_missing_img_url(client, token):
    body = client.get("/1688/search/image", params={"apiToken": token}).json()
    assert body == {"code": 422, "msg": "Parameter error: img_url: is required", "data": None}


@pytest.mark.parametrize("token_value", [None, "", "ss_wrong", "x" * 500])
def test_auth_failures(client, resources, token_value):
    params = {"img_url": "/img/whatever.jpg", "page_size": "99"}
    if token_value is not None:
        params["apiToken"] = token_value
    response = client.get("/1688/search/image", params=params)
    assert response.status_code == 401
    assert response.json()["code"] == 401 and response.json()["data"] is None


def test_revoked_token_is_refused(client, resources):
    from conftest import main_image_url

    fresh = resources.tokens.create("short-lived")
    params = {"apiToken": fresh, "img_url": main_image_url(resources, QUERY)}
    served = client.get("/1688/search/image", params=params)
    assert served.status_code == 200 and served.json()["data"]["items"]
    resources.tokens.revoke("short-lived")
    refused = client.get("/1688/search/image", params=params)
    assert refused.status_code == 401
    assert refused.json()["code"] == 401 and refused.json()["data"] is None


def test_images_are_served_with_cache_headers(client, search):
    import hashlib

    img = search(QUERY, page_size=1)["data"]["items"][0]["img"]
    response = client.get(img)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert "immutable" in response.headers["cache-control"]
    assert response.content[:2] == b"\xff\xd8"
    assert img.endswith(f"/img/{hashlib.sha256(response.content).hexdigest()}.jpg")  # the bytes the name promises
    assert response.content == (LUMA.parent / QUERY["img"]).read_bytes()  # the photo searched found itself
    missing = client.get("/img/" + "0" * 64 + ".jpg")
    assert missing.status_code == 404 and missing.json()["code"] == 404


def test_docs_and_openapi(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text
    spec = client.get("/openapi.json").json()
    params = [p["name"] for p in spec["paths"]["/1688/search/image"]["get"]["parameters"]]
    for name in [
        "img_url",
        "page",
        "page_size",
        "sort",
        "price_start",
        "price_end",
        "support_dropshipping",
        "is_factory",
        "verified_supplier",
        "free_shipping",
        "new_arrival",
        "apiToken",
    ]:
        assert name in params
    for path in ("/1688/search/image", "/1688/tools/image/upload"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json", "image/*"} <= set(body)
    assert "application/json" in spec["paths"]["/1688/tools/image/convert_url"]["post"]["requestBody"]["content"]


def test_health(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["offers"] == len(OFFERS)
    photos = {path for offer in OFFERS.values() for path in [offer["img"], *offer["images"]]}
    assert body["vectors"] == len(photos)  # one per distinct catalog photo; relistings share theirs
