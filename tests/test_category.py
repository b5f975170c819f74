"""`cat_id`: the query's predicted category in `data`, and a filter to a category and below, in both profiles."""

from __future__ import annotations

import pytest

from conftest import all_items, luma_offers
from snapsource.search.categories import vote

QUERY = luma_offers()[0]
PATHS = {o["item_id"]: [str(c) for c in o["category_path"]] for o in luma_offers()}


@pytest.mark.profiles
def test_the_predicted_category_is_the_querys(search):
    data = search(QUERY, explain="true")["data"]
    assert isinstance(data["cat_id"], int) and str(data["cat_id"]) in PATHS[QUERY["item_id"]]
    votes = data["categories"]
    assert votes and [str(v["cat_id"]) for v in votes] == PATHS[QUERY["item_id"]][: len(votes)]
    assert all(0.5 < v["share"] <= 1 for v in votes) and votes[-1]["cat_id"] == data["cat_id"]
    assert "categories" not in search(QUERY)["data"]  # TMAPI's shape without explain


@pytest.mark.profiles
def test_cat_id_keeps_offers_in_that_category_or_below(search, resources):
    wide = {"score_threshold": str(resources.settings.similarity_threshold)}
    everything = all_items(search, QUERY, **wide)
    top, leaf = PATHS[QUERY["item_id"]][0], PATHS[QUERY["item_id"]][-1]
    for cat in (top, leaf):
        expected = [i["item_id"] for i in everything if cat in PATHS[i["item_id"]]]
        assert expected, cat
        body = search(QUERY, cat_id=cat, page_size=20, **wide)
        assert body["data"]["cat_id"] == int(cat)  # the category asked for is echoed
        assert body["data"]["total_count"] == len(expected)
        assert [i["item_id"] for i in all_items(search, QUERY, cat_id=cat, **wide)] == expected
    assert len([i for i in everything if leaf in PATHS[i["item_id"]]]) < len(everything)
    assert search(QUERY, cat_id="999999999")["data"]["total_count"] == 0
    both = all_items(search, QUERY, cat_id=top, keyword="top", **wide)
    assert both and all(top in PATHS[i["item_id"]] and "top" in i["title"].lower() for i in both)


def test_the_vote_goes_down_the_tree_while_it_holds_a_majority():
    paths = [["1", "2", "3"], ["1", "2", "4"], ["1", "2", "3"], ["1", "5"], ["9"]]
    votes = vote(paths, [1.0, 1.0, 1.0, 1.0, 1.0])
    assert [(v.cat_id, round(v.share, 2)) for v in votes] == [("1", 0.8), ("2", 0.6)]  # "3" holds 0.4: no majority
    assert vote(paths, [0.1, 0.1, 3.0, 0.1, 0.1])[-1].cat_id == "3"  # weighted by similarity
    assert vote([["1"], ["2"]], [1.0, 1.0]) == []  # a tie is no majority: no prediction
    assert vote([], []) == [] and vote([[]], [1.0]) == []
