"""The `views` eval protocol: an offer's other photos as queries, each left out of the index."""

from __future__ import annotations

import collections
import hashlib

import numpy as np

from conftest import LUMA, luma_offers, write_catalog
from snapsource import search
from snapsource.tools import evaluate


def _other_photo(resources) -> tuple[dict, int]:
    """The first luma offer with photos besides its main one, and the id of its second photo."""
    offer = next(o for o in luma_offers() if len(set(o["images"]) - {o["img"]}) >= 2)
    ref = next(ref for ref in offer["images"] if ref != offer["img"])
    image = resources.catalog.image_by_sha(hashlib.sha256((LUMA.parent / ref).read_bytes()).hexdigest())
    assert image is not None
    return offer, image.id


def test_a_photo_left_out_is_never_found_by_any_search(resources):
    offer, image_id = _other_photo(resources)
    vector = resources.index.vectors(np.asarray([image_id]))
    found = search.ranked(resources, vector)
    assert found[0].image_id == image_id and found[0].similarity > 0.99  # itself, as a catalog photo

    left = evaluate.without_images(resources, [image_id])
    ranked = search.ranked(left, vector)
    assert image_id not in [c.image_id for c in ranked]
    assert offer["item_id"] in [c.item_id for c in ranked[:10]]  # still found, from its other photos
    # the floor (similarity_margin) comes from the best look-alike, never from the photo itself:
    # the same offers are found with it and without it
    assert {c.item_id for c in ranked} == {c.item_id for c in found}
    assert left.index.vectors(np.asarray([image_id])).shape == vector.shape  # the rest is the store's
    assert search.ranked(resources, vector)[0].image_id == image_id  # the index itself is unchanged


def test_views_asks_each_other_photo_once_with_the_photo_left_out(resources, monkeypatch):
    searched = []
    plain = evaluate._search

    def spy(res, data):
        searched.append(res.index)
        return plain(res, data)

    monkeypatch.setattr(evaluate, "_search", spy)
    offers = [o for o in luma_offers() if len(set(o["images"]) - {o["img"]}) >= 1][:2]
    result = evaluate.views(resources, LUMA, limit=2)
    wanted = sum(len(set(o["images"]) - {o["img"]}) for o in offers)
    assert result["overall"]["queries"] == len(result["rows"]) == wanted == len(searched)
    for row, index in zip(result["rows"], searched):
        assert isinstance(index, evaluate._LeftOut) and list(index._out) == [row["image_id"]]
        assert row["item_id"] in row["relevant"]
    assert 0 <= result["overall"]["recall_at_1"] <= result["overall"]["recall_at_10"] <= 1


def test_relisted_twins_share_their_photos_so_each_is_asked_once(resources, tmp_path):
    by_main = collections.defaultdict(list)
    for offer in luma_offers():
        by_main[offer["img"]].append(offer)
    twins = next(group for group in by_main.values() if len(group) == 2 and len(set(group[0]["images"])) >= 3)
    result = evaluate.views(resources, write_catalog(tmp_path / "twins.jsonl", twins))
    others = set(twins[0]["images"]) - {twins[0]["img"]}
    assert len(result["rows"]) == len(others)
    assert len({row["image_id"] for row in result["rows"]}) == len(others)
    for row in result["rows"]:
        assert row["relevant"] == sorted(o["item_id"] for o in twins)  # either twin is a hit
