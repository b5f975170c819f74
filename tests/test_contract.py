"""The response matches TMAPI's documented example: every field, in order, with its type."""

from __future__ import annotations

import json

import pytest

from conftest import SPEC, luma_offers

pytestmark = pytest.mark.profiles


def _example() -> dict:
    return json.loads((SPEC / "search-image-response-example.json").read_text())


def _same_shape(ours, theirs, path="$"):
    """Same keys in the same order and same JSON types; a null in the example admits any value there."""
    if theirs is None:
        return
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), path
        assert list(ours) == list(theirs), f"{path}: keys {list(ours)} != {list(theirs)}"
        for key in theirs:
            _same_shape(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), path
        for i, value in enumerate(ours[:3]):
            if theirs:
                _same_shape(value, theirs[0], f"{path}[{i}]")
    else:
        assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} != {type(theirs).__name__}"


def test_search_response_has_the_spec_shape(search, resources):
    body = search(luma_offers()[0], score_threshold=str(resources.settings.similarity_threshold))  # a full page
    example = _example()
    assert list(body) == ["code", "msg", "data"]
    assert body["code"] == 200 and body["msg"] == "success"
    data, their_data = body["data"], example["data"]
    # the spec's fields in its order; ours (the boxes of issue 4) only after them
    assert list(data) == [*their_data, "region", "regions"]
    assert data["keyword"] == "" and data["filters"] == {}
    assert data["cat_id"] is None or isinstance(data["cat_id"], int)  # predicted: 1688's ids are numbers
    assert data["sort"] == "default" and data["page"] == 1 and data["page_size"] == 20
    assert isinstance(data["total_count"], int) and isinstance(data["has_next_page"], bool)
    assert len(data["items"]) == 20
    for item in data["items"]:
        _same_shape(item, their_data["items"][0], "$.item")
        assert item["img"].startswith("http://127.0.0.1:")
        assert all(isinstance(c, str) for c in item["category_path"])
        assert item["sale_info"]["sale_quantity"] == str(item["sale_info"]["sale_quantity_int"])
        assert item["rating_star"] is None or isinstance(item["rating_star"], str)


def test_items_carry_the_catalog_fields_unchanged(search):
    offers = {o["item_id"]: o for o in luma_offers()}
    body = search(luma_offers()[5])
    for item in body["data"]["items"]:
        source = offers[item["item_id"]]
        for key in item:
            if key != "img":
                assert item[key] == source[key], key


def test_error_envelope_shape(client):
    response = client.get("/1688/search/image")
    assert response.status_code == 401
    assert response.json() == {"code": 401, "msg": "apiToken is missing", "data": None}
