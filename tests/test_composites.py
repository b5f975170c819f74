"""Every product in the photo (issue 19): composites of luma products, a box for each, and
`regions=all` answering one group of results per box."""

from __future__ import annotations

import pytest

from conftest import LUMA, luma_offers
from snapsource.tools import composites
from snapsource.vision import objects
from snapsource.vision.localise import Box

PLAIN_SEED = 0  # three products on a plain background: each one found first in its own box


def _three_on_plain(seed: int = PLAIN_SEED) -> composites.Composite:
    return composites.compose(luma_offers(), LUMA.parent, seed, "plain", count=3, size=(1200, 900))


def test_composites_are_seeded():
    a, b = _three_on_plain(), _three_on_plain()
    assert a.item_ids == b.item_ids and a.boxes == b.boxes and a.image.tobytes() == b.image.tobytes()
    assert len(a.boxes) == 3
    for i, box in enumerate(a.boxes):  # pasted apart
        assert all(objects.iou(box, other) == 0 for other in a.boxes[i + 1 :])


def test_three_products_on_a_plain_background_get_three_boxes():
    comp = _three_on_plain()
    found = objects.find(comp.image, limit=5)
    assert found.plain
    assert len(found.boxes) == 3
    for truth in comp.boxes:
        assert max(objects.iou(box, truth) for box in found.boxes) >= 0.5, (truth, found.boxes)
    assert [b.area for b in found.boxes] == sorted((b.area for b in found.boxes), reverse=True)  # largest first


def test_products_on_a_textured_background_are_separated_too():
    hits = total = 0
    for seed in range(6):
        comp = composites.compose(luma_offers(), LUMA.parent, seed, "textured")
        found = objects.find(comp.image, limit=5)  # faint wood or fabric may pass for plain: fine
        total += len(comp.boxes)
        hits += sum(max((objects.iou(b, t) for b in found.boxes), default=0) >= 0.5 for t in comp.boxes)
    assert hits >= 0.8 * total


def test_one_product_keeps_its_activation_box():
    blob = [Box(10, 10, 300, 300)]
    one = objects.Objects((Box(20, 20, 280, 290),), plain=True)
    assert objects.combine(one, blob) == blob
    two = objects.Objects((Box(0, 0, 100, 100), Box(200, 200, 260, 260)), plain=False)
    # a blob over both components is the products melted together: no box of its own
    assert objects.combine(two, [Box(0, 0, 270, 270), Box(400, 0, 500, 80)]) == [*two.boxes, Box(400, 0, 500, 80)]


@pytest.mark.profiles
def test_regions_all_answers_one_group_per_product(client, token):
    comp = _three_on_plain()
    files = {"file": ("kit.jpg", comp.jpeg())}
    body = client.post("/1688/search/image", params={"apiToken": token, "regions": "all", "page_size": 5}, files=files).json()
    assert body["code"] == 200, body
    data = body["data"]
    groups = data["groups"]
    assert [g["region"] for g in groups] == data["regions"] and len(groups) == 3
    for truth, item_id in zip(comp.boxes, comp.item_ids, strict=True):
        group = max(groups, key=lambda g, t=truth: objects.iou(Box(*g["region"]), t))
        assert objects.iou(Box(*group["region"]), truth) >= 0.5
        assert group["items"] and len(group["items"]) <= 5 and group["total_count"] >= len(group["items"])
        assert group["items"][0]["item_id"] == item_id
    # a group is what region= answers for that box, and without regions=all there are no groups
    x1, y1, x2, y2 = groups[0]["region"]
    again = client.get(
        "/1688/search/image",
        params={"apiToken": token, "img_url": data["image_url"], "region": f"{x1},{x2},{y1},{y2}", "page_size": 5},
    ).json()["data"]
    assert [i["item_id"] for i in again["items"]] == [i["item_id"] for i in groups[0]["items"]]
    assert "groups" not in again


@pytest.mark.profiles
def test_regions_must_be_all(search, token):
    body = search(luma_offers()[0], regions="some")
    assert body["code"] == 422
