"""The retrieval pipeline's parts: product boxes, `region`, geometric checks, relistings, eval."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from conftest import LUMA, SHARED, luma_offers
from snapsource.search import queries
from snapsource.tools import evaluate
from snapsource.vision import images, localise, verify
from snapsource.vision.localise import Box


def _photo(index: int = 0) -> Image.Image:
    return images.decode((LUMA.parent / luma_offers()[index]["img"]).read_bytes())


def test_box_parameter_is_x1_x2_y1_y2_and_clipped():
    assert Box.parse("10, 410, 25, 300", 1000, 800) == Box(10, 25, 410, 300)
    assert Box.parse("410,10,300,25", 1000, 800) == Box(10, 25, 410, 300)  # any corner order
    assert Box.parse("-5,2000,0,900", 1000, 800) == Box(0, 0, 1000, 800)
    for bad in ("1,2,3", "a,b,c,d", "10,12,10,12"):
        with pytest.raises(ValueError, match="region"):
            Box.parse(bad, 1000, 800)


def test_the_product_is_found_on_a_large_plain_background(resources):
    """A product photo placed in the lower right of a wide grey table: the main box covers it."""
    photo = _photo(3)
    photo.thumbnail((300, 300))
    canvas = Image.new("RGB", (1200, 900), (128, 128, 128))
    rng = np.random.default_rng(0)
    canvas = Image.fromarray(np.clip(np.asarray(canvas, np.int16) + rng.integers(-6, 7, (900, 1200, 3)), 0, 255).astype(np.uint8))
    canvas.paste(photo, (800, 520))
    analysis = queries.analyse(resources, canvas)
    main = analysis.regions[0]
    product = Box(800, 520, 800 + photo.width, 520 + photo.height)
    overlap = Box(max(main.x1, product.x1), max(main.y1, product.y1), min(main.x2, product.x2), min(main.y2, product.y2))
    assert overlap.area >= 0.6 * product.area  # the box covers most of the product
    assert main.area <= 0.5 * 1200 * 900  # and not the whole table
    assert analysis.region == main  # so that box is what was searched
    for box in analysis.regions:
        assert 0 <= box.x1 < box.x2 <= 1200 and 0 <= box.y1 < box.y2 <= 900


def test_regions_come_in_the_photos_own_pixels_after_exif_rotation(resources):
    photo = _photo(1)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    photo.save(buf, "JPEG", exif=exif.tobytes())
    analysis = queries.analyse_bytes(resources, buf.getvalue())
    assert analysis.size == (photo.height, photo.width)
    assert analysis.regions and analysis.region is not None
    for b in [analysis.region, *analysis.regions]:
        assert 0 <= b.x1 < b.x2 <= photo.height and 0 <= b.y1 < b.y2 <= photo.width, b


def test_geometric_check_tells_the_same_print_from_another():
    manifest_dir = SHARED / "eval" / "grocery"
    catalog = manifest_dir / "catalog"
    first = Image.open(next(catalog.glob("*Tropicana-Apple-Juice_Iconic*"))).convert("RGB").resize((396, 396))
    other = Image.open(next(catalog.glob("*Oatly-Oat-Milk_Iconic*"))).convert("RGB").resize((396, 396))
    tilted = first.rotate(12, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)).crop((20, 10, 380, 390))
    same = verify.inliers(verify.extract(tilted), verify.extract(first))
    different = verify.inliers(verify.extract(tilted), verify.extract(other))
    assert same >= 25 and different < 10, (same, different)  # (same brand, same layout would match)
    mirrored = verify.inliers(verify.extract(tilted.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), verify.extract(first))
    assert mirrored >= 15, mirrored  # sellers mirror photos; the check tries the mirror too
    features = verify.extract(first)
    assert verify.LocalFeatures.from_bytes(features.to_bytes()).descriptors.shape == features.descriptors.shape


def test_region_parameter_and_boxes_in_the_answer(search, resources):
    offer = luma_offers()[7]
    body = search(offer)
    data = body["data"]
    width, height = images.decode((LUMA.parent / offer["img"]).read_bytes()).info["source_size"]
    assert data["region"] and data["regions"] and all(len(b) == 4 for b in data["regions"])
    for x1, y1, x2, y2 in [data["region"], *data["regions"]]:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    chosen = search(offer, region=f"{width // 4},{3 * width // 4},{height // 4},{3 * height // 4}")["data"]
    assert chosen["region"] == [width // 4, height // 4, 3 * width // 4, 3 * height // 4]
    assert chosen["items"] and chosen["total_count"] >= len(chosen["items"])
    bad = search(offer, region="1,2,3")
    assert bad["code"] == 422 and "x1,x2,y1,y2" in bad["msg"]


def test_group_same_folds_relistings(search):
    offers = luma_offers()
    by_photo: dict[str, list[dict]] = {}
    for o in offers:
        by_photo.setdefault(o["img"], []).append(o)
    twins = next(group for group in by_photo.values() if len(group) > 1)
    plain = search(twins[0], page_size=20)["data"]
    grouped = search(twins[0], page_size=20, group_same="true")["data"]
    ids = {o["item_id"] for o in twins}
    assert len(ids & {i["item_id"] for i in plain["items"]}) == len(ids)  # each relisting on its own
    first = grouped["items"][0]
    assert first["item_id"] in ids
    folded = {t["item_id"] for t in first["same_product"]}
    assert folded == ids - {first["item_id"]}
    assert all(set(t) == {"item_id", "price", "shop_name"} for t in first["same_product"])
    assert grouped["total_count"] <= plain["total_count"] - len(folded)
    assert "same_product" not in plain["items"][0]


def test_edits_protocol_finds_edited_photos(resources):
    result = evaluate.edits(resources, LUMA, seed=0, limit=3)
    assert result["overall"]["queries"] == 3 * len(evaluate.EDITS)
    for name in ("flip", "pad", "jpeg40", "crop"):
        assert result[name]["recall_at_1"] == 1.0, (name, result[name])
    assert 0 < result["overall"]["p50_ms"] < 5000


def test_edits_are_seeded():
    photo = _photo(2)
    assert evaluate.edit(photo, "chained", random.Random(4)) == evaluate.edit(photo, "chained", random.Random(4))


def test_localise_on_a_flat_map_finds_one_box():
    flat = np.zeros((1280, 7, 7), np.float32)
    flat[:, 2:5, 1:3] = 1.0
    boxes = localise.regions(flat, 700, 700)
    assert boxes == [Box(50, 150, 350, 550)]
