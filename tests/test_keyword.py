"""`keyword`: the image results narrowed by title text, Chinese and Latin alike, in both profiles."""

from __future__ import annotations

import re

import pytest

from conftest import all_items, luma_offers, open_resources, write_catalog
from snapsource.ingest import ingest
from snapsource.ingest.pipeline import DeleteMissing
from snapsource.store import titles

pytestmark = pytest.mark.profiles

QUERY = luma_offers()[0]
TITLES = {o["item_id"]: o["title"] for o in luma_offers()}


def has_words(title: str, keyword: str) -> bool:
    """Every word of keyword a whole word of title, any case: the rule for Latin titles, by regex."""
    return all(re.search(rf"(?<![^\W_]){re.escape(w)}(?![^\W_])", title, re.IGNORECASE) for w in keyword.split())


def test_keyword_keeps_the_results_whose_title_holds_it(search, resources):
    wide = {"score_threshold": str(resources.settings.similarity_threshold)}
    everything = all_items(search, QUERY, **wide)
    for keyword in ("bra", "BRA TOP", "  top   bra "):
        expected = [i["item_id"] for i in everything if has_words(i["title"], keyword)]
        assert 0 < len(expected) < len(everything), keyword
        body = search(QUERY, keyword=keyword, page_size=20, **wide)
        assert body["data"]["keyword"] == " ".join(keyword.split())  # echoed, as TMAPI does
        assert body["data"]["total_count"] == len(expected)
        assert [i["item_id"] for i in all_items(search, QUERY, keyword=keyword, **wide)] == expected
    factories = all_items(search, QUERY, keyword="bra", is_factory="true", **wide)
    assert factories and all("bra" in TITLES[i["item_id"]].lower() for i in factories)
    assert search(QUERY, keyword="no such words here")["data"]["total_count"] == 0
    assert search(QUERY, keyword="")["data"]["keyword"] == ""


def test_keyword_matches_whole_words_not_parts_of_words(search, resources):
    """ "fit" is in "Outfit" and "Fitness" as letters only: those titles are not about a fit."""
    wide = {"score_threshold": str(resources.settings.similarity_threshold)}
    everything = all_items(search, QUERY, **wide)
    inside = [i["item_id"] for i in everything if "fit" in i["title"].lower()]
    expected = [i["item_id"] for i in everything if has_words(i["title"], "fit")]
    assert len(expected) < len(inside), "the query should exercise word boundaries"
    assert [i["item_id"] for i in all_items(search, QUERY, keyword="FIT", **wide)] == expected


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
        assert catalog.titled("cotton") == [ids[3]]  # "_" ends a word, as a space does
        assert catalog.titled("bal") == [] and catalog.titled("sport") == []  # parts of words are not words
        assert catalog.titled("anti") == [ids[2]] and catalog.titled("burst ANTI-BURST") == [ids[2]]
        assert catalog.titled("65") == [] and catalog.titled("65cm") == [ids[0]]
        assert catalog.titled("女") == [ids[1]] and catalog.titled("胸 女") == [ids[1]]  # Chinese: anywhere
        renamed = {**offers[2], "title": "Pilates ring"}
        ingest(resources, write_catalog(tmp_path / "catalog.jsonl", [*offers[:2], renamed, offers[3]]))
        assert catalog.titled("ball") == [] and catalog.titled("pilates") == [ids[2]]  # follows updates
        ingest(resources, write_catalog(tmp_path / "catalog.jsonl", offers[1:]), delete_missing=DeleteMissing(confirmed=True))
        assert catalog.titled("瑜伽") == []  # and deletions
    finally:
        resources.close()


@pytest.mark.parametrize(
    "title, keyword, held",
    [
        ("Sports Bra", "bra", True),
        ("Bralette", "bra", False),
        ("Zebra print tee", "bra", False),
        ("bra-top", "BRA", True),
        ("运动文胸女", "文胸", True),  # no spaces in Chinese: a substring is a word
        ("白色T恤", "t恤", True),  # a boundary before the Latin T (after 色), none needed after 恤
        ("纯棉T恤", "恤", True),
        ("LT恤", "t恤", False),  # the T runs on from an L
        ("ÉCOLE bag", "école", True),  # any case, beyond ASCII
        ("écoles", "école", False),
        ("Сумка ЖЕНСКАЯ", "женская", True),
        ("Men's jacket", "men", True),
        ("Women jacket", "men", False),
        ("Yoga mat 6mm", "6mm mat", True),
        ("", "x", False),
        ("anything", "", False),
    ],
)
def test_word_rule(title, keyword, held):
    assert titles.holds(title, keyword) is held
    if held:  # what the database narrows by must not drop a title the rule holds
        assert all(f.lower() in title.lower() for f in titles.narrowing(keyword))


def test_non_ascii_letters_do_not_narrow_in_sql():
    """SQLite's LIKE folds only ASCII: "É" would miss "é", so only the runs around it narrow."""
    assert titles.narrowing("école T恤 %_x") == ["cole", "T恤", "%_x"]
    assert titles.narrowing("ÉÉ") == []
