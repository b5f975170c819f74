"""Same or similar, scores and score_threshold over a real HTTP server (issue: answers a buyer can trust)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps

from conftest import LUMA, all_items, luma_offers, main_image_url

pytestmark = pytest.mark.profiles

QUERY = luma_offers()[0]
TWINS = {o["item_id"] for o in luma_offers() if o["img"] == QUERY["img"]}


def test_explain_adds_the_evidence_after_the_spec_fields(search, resources):
    plain = search(QUERY, page_size=5)["data"]["items"]
    explained = search(QUERY, page_size=5, explain="true")["data"]["items"]
    assert [i["item_id"] for i in explained] == [i["item_id"] for i in plain]
    for before, after in zip(plain, explained):
        assert list(after)[: len(before)] == list(before)  # TMAPI's fields first, unchanged
        assert {k: after[k] for k in before} == before
        assert list(after)[len(before) :] == ["similarity", "match", "matched_img"]
        assert 0 <= after["similarity"] <= 1 and after["match"] in ("same", "similar")
        assert after["matched_img"].startswith("http") and "/img/" in after["matched_img"]
    first = explained[0]
    assert first["item_id"] in TWINS and first["match"] == "same" and first["similarity"] > 0.99
    assert first["matched_img"].endswith(main_image_url(resources, QUERY))  # its own photo matched
    similarities = [i["similarity"] for i in explained if i["match"] == "similar"]
    assert similarities and max(similarities) < first["similarity"]


def test_the_matched_photo_is_the_one_that_matched(client, token):
    """An offer found by one of its other photos shows that photo, not its main one."""
    offer = next(o for o in luma_offers() if o.get("images"))
    data = (LUMA.parent / offer["images"][0]).read_bytes()
    with Image.open(io.BytesIO(data)) as opened:
        flipped = ImageOps.mirror(ImageOps.exif_transpose(opened).convert("RGB"))
    buf = io.BytesIO()
    flipped.save(buf, "JPEG", quality=90)
    body = client.post(
        "/1688/search/image",
        params={"apiToken": token, "explain": "true", "page_size": 5},
        files={"file": ("photo.jpg", buf.getvalue(), "image/jpeg")},
    ).json()
    first = next(i for i in body["data"]["items"] if i["item_id"] == offer["item_id"])
    assert not first["matched_img"].endswith(first["img"].split("/img/")[-1])  # not its main photo


def test_match_same_narrows_to_the_same_product(search):
    everything = all_items(search, QUERY, explain="true")
    same = all_items(search, QUERY, explain="true", match="same")
    assert same and len(same) < len(everything)
    assert all(i["match"] == "same" for i in same)
    assert [i["item_id"] for i in same] == [i["item_id"] for i in everything if i["match"] == "same"]
    assert TWINS <= {i["item_id"] for i in same}
    data = search(QUERY, match="same", page_size=20)["data"]
    assert data["total_count"] == len(same)


def test_score_threshold_keeps_what_is_that_similar(search, resources):
    settings = resources.settings
    floor = all_items(search, QUERY, explain="true", score_threshold=str(settings.similarity_threshold))
    default = all_items(search, QUERY, explain="true")
    # the default: over similarity_threshold and within similarity_margin of the best look-alike
    # (QUERY is a catalog photo: its near-copies do not set the bar)
    best = max(i["similarity"] for i in floor if i["similarity"] < settings.same_similarity)
    assert {i["item_id"] for i in default} == {
        i["item_id"]
        for i in floor
        if i["similarity"] >= max(settings.similarity_threshold, best - settings.similarity_margin) - 1e-4
    }
    assert len(default) < len(floor)  # a close photo leaves out what only shares a style
    strict = all_items(search, QUERY, explain="true", score_threshold="0.8")
    assert strict and len(strict) < len(default)
    assert {i["item_id"] for i in strict} == {i["item_id"] for i in floor if i["similarity"] >= 0.8}


def test_a_catalog_photo_answers_its_copies_then_its_look_alikes(search, resources):
    """Its own offer and relistings (near-copies) first, then what looks like it: the copies alone
    would put the margin's bar at 0.7, above every other offer."""
    settings = resources.settings
    items = all_items(search, QUERY, explain="true")
    copies = [i for i in items if i["similarity"] >= settings.same_similarity]
    assert {i["item_id"] for i in copies} == TWINS and items[: len(copies)] == copies
    alike = items[len(copies) :]
    assert len(alike) >= 5, len(alike)
    assert all(i["similarity"] < 1 - settings.similarity_margin for i in alike[-3:])  # under the copies' bar


def test_a_filter_only_narrows_the_answer(search):
    """The margin is measured from the best match in the whole catalog, not within the filter."""
    everything = {i["item_id"] for i in all_items(search, QUERY)}
    for filters in ({"is_factory": "true"}, {"price_start": "80"}, {"new_arrival": "true"}):
        assert {i["item_id"] for i in all_items(search, QUERY, **filters)} <= everything, filters


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"match": "maybe"}, "match"),
        ({"score_threshold": "1.5"}, "score_threshold"),
        ({"score_threshold": "x"}, "score_threshold"),
    ],
)
def test_bad_match_parameters_are_422(search, params, words):
    body = search(QUERY, **params)
    assert body["code"] == 422 and words in body["msg"] and body["data"] is None
