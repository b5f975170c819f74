"""`cat_id`: the query's predicted category in `data`, and a filter to a category and below, in both profiles."""

from __future__ import annotations

import pytest

from conftest import GROCERY, LUMA, all_items, luma_offers
from snapsource.search.categories import vote
from snapsource.store.category_names import CategoryName, CategoryNames

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
@pytest.mark.parametrize(
    "filters",
    [{"is_factory": "true"}, {"price_end": "60"}, {"price_start": "1", "price_end": "30"}, {"keyword": "cotton"}],
)
def test_filters_do_not_change_the_predicted_category(search, filters):
    """Issue 30, item 14: the hoodie's photo was Hoodies alone, Tops with is_factory, Tees with
    price_end=60. The category is the photo's: voted from the unfiltered matches."""
    unfiltered = search(QUERY, explain="true")["data"]
    filtered = search(QUERY, explain="true", **filters)["data"]
    assert filtered["cat_id"] == unfiltered["cat_id"] and filtered["categories"] == unfiltered["categories"]


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


def test_a_category_needs_evidence_not_only_a_majority():
    """Each match weighs its similarity above the floor; the winner needs min_evidence of it."""
    floor, evidence = 0.35, 0.3
    assert vote([["1002"]], [0.2987], floor, evidence) == []  # one weak match: chance, not a category
    assert vote([["1", "2"]] * 10, [0.37] * 10, floor, evidence) == []  # ten at chance level: 0.2 in all
    assert [v.cat_id for v in vote([["1", "2"]], [0.99], floor, evidence)] == ["1", "2"]  # a near-copy alone
    assert [v.cat_id for v in vote([["1", "2"], ["1", "3"]], [0.5, 0.5], floor, evidence)] == ["1"]  # 0.3 for "1" only
    strong = vote([["1"], ["1"], ["9"], ["9"]], [0.9, 0.8, 0.36, 0.36], floor, evidence)
    assert [(v.cat_id, round(v.share, 2)) for v in strong] == [("1", 0.98)]  # matches at chance barely count


@pytest.mark.profiles
@pytest.mark.parametrize("photo", ["val_Fruit_Apple_Golden-Delicious_Golden-Delicious_001.jpg", "val_Fruit_Peach_Peach_003.jpg"])
def test_a_photo_the_catalog_does_not_carry_predicts_no_category(client, token, photo):
    """A shop photo of fruit against the sportswear catalog: its best matches are garments at
    about 0.3 (a plain vote gave one of them all of it, share 1.0); the answer is no category."""
    data = (GROCERY / "queries" / photo).read_bytes()
    files = {"file": (photo, data, "image/jpeg")}
    body = client.post("/1688/search/image", params={"apiToken": token, "explain": "true"}, files=files).json()
    assert body["code"] == 200, body
    found = body["data"]
    assert found["items"] and max(i["similarity"] for i in found["items"]) < 0.4  # look-alikes, weak ones
    assert found["cat_id"] is None and found["categories"] == []


def test_category_names_from_a_file(tmp_path):
    luma = CategoryNames.load(LUMA.parent / "categories.json")
    assert luma.get("1029") == CategoryName(name="Bras & Tanks", path="Women/Tops/Bras & Tanks")
    assert luma.get("9999") is None and CategoryNames.of("").get("1029") is None  # no setting: ids only
    plain = tmp_path / "names.json"
    plain.write_text('{"1": "Shoes", "2": {"name": "Boots"}}')  # bare names: the path is the name
    assert CategoryNames.of(str(plain)).get("1") == CategoryName(name="Shoes", path="Shoes")
    assert CategoryNames.of(str(plain)).get("2") == CategoryName(name="Boots", path="Boots")
    for bad in ("[1, 2]", '{"1": {"path": "A/B"}}', "not json"):
        plain.write_text(bad)
        with pytest.raises(ValueError, match="names.json"):
            CategoryNames.load(plain)
    with pytest.raises(ValueError, match="missing.json"):
        CategoryNames.of(str(tmp_path / "missing.json"))


def test_cat_id_is_a_whole_number_or_a_name_the_catalog_has():
    from snapsource.errors import ParameterError
    from snapsource.search.filters import check_category

    numbered, named = {"1000": 0, "1029": 0}, {"Clothing": 0, "Tshirts": 0, "7": 0}
    for fine, known in (("1029", numbered), ("999999999", numbered), ("", numbered), ("Tshirts", named)):
        check_category(fine, known)  # an id this catalog lacks is well formed: it finds nothing
    for bad, known, said in (
        ("abc", numbered, "such as 1000, as"),
        ("1.5", numbered, "got '1.5'"),
        ("Shirts", named, "category names"),
    ):
        with pytest.raises(ParameterError, match=said):
            check_category(bad, known)
