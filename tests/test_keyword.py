"""`keyword`: the image results narrowed by title text, Chinese and Latin alike, in both profiles."""

from __future__ import annotations

import pytest

from conftest import all_items, luma_offers, open_resources, write_catalog
from snapsource.ingest import ingest

pytestmark = pytest.mark.profiles

QUERY = luma_offers()[0]
TITLES = {o["item_id"]: o["title"] for o in luma_offers()}


def test_keyword_keeps_the_results_whose_title_holds_it(search, resources):
    wide = {"score_threshold": str(resources.settings.similarity_threshold)}
    everything = all_items(search, QUERY, **wide)
    for keyword in ("bra", "BRA TOP", "  top   bra "):
        words = keyword.lower().split()
        expected = [i["item_id"] for i in everything if all(w in i["title"].lower() for w in words)]
        assert 0 < len(expected) < len(everything), keyword
        body = search(QUERY, keyword=keyword, page_size=20, **wide)
        assert body["data"]["keyword"] == " ".join(keyword.split())  # echoed, as TMAPI does
        assert body["data"]["total_count"] == len(expected)
        assert [i["item_id"] for i in all_items(search, QUERY, keyword=keyword, **wide)] == expected
    factories = all_items(search, QUERY, keyword="bra", is_factory="true", **wide)
    assert factories and all("bra" in TITLES[i["item_id"]].lower() for i in factories)
    assert search(QUERY, keyword="no such words here")["data"]["total_count"] == 0
    assert search(QUERY, keyword="")["data"]["keyword"] == ""


def test_a_long_keyword_is_a_clear_422(search):
    body = search(QUERY, keyword="x" * 201)
    assert body["code"] == 422 and "keyword" in body["msg"]


def test_titles_match_in_any_script_and_any_case(tmp_path):
    titles = ["瑜伽球 加厚防爆 65cm", "运动文胸 女 Sports Bra", "Yoga BALL anti-burst", "100% cotton_tee"]
    offers = [{**o, "title": title} for o, title in zip(luma_offers()[:4], titles)]
    resources = open_resources(tmp_path / "data")
    try:
        ingest(resources, write_catalog(tmp_path / "catalog.jsonl", offers))
        ids = [o["item_id"] for o in offers]
        catalog = resources.catalog
        assert catalog.titled("瑜伽球") == [ids[0]]
        assert catalog.titled("球") == [ids[0]]  # one character: shorter than a trigram, still found
        assert catalog.titled("文胸") == [ids[1]]
        assert catalog.titled("ball") == sorted([ids[2]])
        assert catalog.titled("sports 文胸") == [ids[1]]  # every word, any script
        assert catalog.titled("%") == [ids[3]] and catalog.titled("_tee") == [ids[3]]  # no wildcards
        assert catalog.titled("c%n") == []
        renamed = {**offers[2], "title": "Pilates ring"}
        ingest(resources, write_catalog(tmp_path / "catalog.jsonl", [*offers[:2], renamed, offers[3]]))
        assert catalog.titled("ball") == [] and catalog.titled("pilates") == [ids[2]]  # follows updates
        ingest(resources, write_catalog(tmp_path / "catalog.jsonl", offers[1:]), delete_missing=True)
        assert catalog.titled("瑜伽") == []  # and deletions
    finally:
        resources.close()
