"""Composite photos of several products: does every product get its own box, and does that box
find it?

Each composite is seeded (`random.Random(seed)`): 2-4 luma products, their main photos trimmed of
white (the product's own mask, its inner holes filled), pasted at random scales and positions that
do not overlap, on a plain background or on a textured one (noise, stripes, wood grain, woven
fabric: generated here, no files). The products' boxes are the ground truth.

`composites` measures box recall (a ground-truth box matched by a found box at IoU >= 0.5) per
background, and each product's R@1 inside its own box: the found box that matches it best is
searched as `region=` would search it, and the product's offer should come first. `boxes="old"`
measures the activation blobs alone (the ablation).
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from snapsource import search
from snapsource.resources import Resources
from snapsource.search import queries
from snapsource.vision import images
from snapsource.vision.localise import Box
from snapsource.vision.objects import iou

BACKGROUNDS = ("plain", "textured")
TEXTURES = ("noise", "stripes", "wood", "fabric")
HIT = 0.5  # a found box matches a product at this IoU


@dataclasses.dataclass(frozen=True)
class Composite:
    image: Image.Image
    boxes: tuple[Box, ...]  # each product's box, in the order of item_ids
    item_ids: tuple[int, ...]
    background: str  # plain, or the texture's name

    def jpeg(self, quality: int = 92) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def cutout(photo: Image.Image) -> tuple[Image.Image, Image.Image] | None:
    """A studio photo's product and its mask (not white, holes filled), trimmed to the product."""
    arr = np.asarray(photo.convert("RGB"), np.int16)
    mask = ((255 - arr).max(axis=2) > 18).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    padded = np.pad(mask, 1)
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 2)
    mask = (padded[1:-1, 1:-1] != 2).astype(np.uint8) * 255
    ys, xs = np.nonzero(mask)
    if ys.size < 100:
        return None
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return photo.convert("RGB").crop(box), Image.fromarray(mask).crop(box)


def background(kind: str, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A plain or textured background of `size`, drawn from `rng`."""
    w, h = size
    np_rng = np.random.default_rng(rng.randrange(2**32))
    base = np.asarray([rng.randrange(60, 236) for _ in range(3)], np.float32)
    if kind == "plain":
        arr = base + np_rng.normal(0, 2.5, (h, w, 3))
    elif kind == "noise":
        coarse = np_rng.normal(0, 1, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        arr = base + 28 * smooth + np_rng.normal(0, 10, (h, w, 3))
    elif kind == "stripes":
        other = np.asarray([rng.randrange(40, 236) for _ in range(3)], np.float32)
        period, angle = rng.uniform(14, 48), rng.uniform(0, np.pi)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        wave = (np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) > 0)[..., None]
        arr = np.where(wave, base, other) + np_rng.normal(0, 4, (h, w, 3))
    elif kind == "wood":
        brown = np.asarray([rng.randrange(120, 200), rng.randrange(70, 130), rng.randrange(30, 80)], np.float32)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        warp = cv2.resize(
            np_rng.normal(0, 1, (h // 40 + 2, w // 40 + 2)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        grain = np.sin((y + 18 * warp) * 2 * np.pi / rng.uniform(8, 20) + 0.004 * x)
        arr = brown * (0.8 + 0.15 * grain[..., None]) + np_rng.normal(0, 5, (h, w, 3))
    elif kind == "fabric":
        other = base * rng.uniform(0.6, 0.85)
        y, x = np.mgrid[0:h, 0:w]
        cell = rng.randrange(3, 7)
        weave = (((x // cell) + (y // cell)) % 2 == 0)[..., None]
        arr = np.where(weave, base, other) + np_rng.normal(0, 6, (h, w, 3))
    else:
        raise ValueError(f"unknown background {kind}")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def compose(
    offers: list[dict[str, Any]], root: Path, seed: int, kind: str, count: int | None = None, size: tuple[int, int] | None = None
) -> Composite:
    """One composite, all of it drawn from `seed`: 2-4 products (or `count`) on a `kind` background
    (plain, textured: one of TEXTURES, or a texture's name)."""
    rng = random.Random(seed)
    width, height = size or (rng.choice((1200, 1280, 1400)), rng.choice((800, 900, 1000)))
    texture = rng.choice(TEXTURES) if kind == "textured" else kind
    canvas = background(texture, (width, height), rng)
    wanted = count or rng.randint(2, 4)
    placed: list[Box] = []
    ids: list[int] = []
    for offer in rng.sample(offers, len(offers)):
        if len(placed) == wanted:
            break
        if offer["item_id"] in ids:
            continue
        cut = cutout(Image.open(root / offer["img"]))
        if cut is None:
            continue
        product, mask = cut
        side = rng.uniform(0.28, 0.5) * min(width, height) * (1.0 if wanted < 4 else 0.85)
        factor = side / max(product.size)
        dims = (max(8, round(product.width * factor)), max(8, round(product.height * factor)))
        product, mask = product.resize(dims, Image.Resampling.LANCZOS), mask.resize(dims, Image.Resampling.BILINEAR)
        for _ in range(200):
            x, y = rng.randrange(0, width - dims[0] + 1), rng.randrange(0, height - dims[1] + 1)
            box = Box(x, y, x + dims[0], y + dims[1])
            gap = int(0.02 * min(width, height))
            if all(_apart(box, other, gap) for other in placed):
                canvas.paste(product, (x, y), mask)
                placed.append(box)
                ids.append(offer["item_id"])
                break
    return Composite(canvas, tuple(placed), tuple(ids), texture)


def _apart(a: Box, b: Box, gap: int) -> bool:
    return a.x2 + gap <= b.x1 or b.x2 + gap <= a.x1 or a.y2 + gap <= b.y1 or b.y2 + gap <= a.y1


def _best(boxes: list[Box], truth: Box) -> Box | None:
    """The box that overlaps `truth` most."""
    return max(boxes, key=lambda box: iou(box, truth), default=None)


def composites(
    resources: Resources, catalog_file: Path, per_background: int = 40, seed: int = 0, boxes: str = "new"
) -> dict[str, Any]:
    """Box recall and per-product R@1 over `per_background` composites on each background."""
    offers = [json.loads(line) for line in catalog_file.read_text().splitlines() if line.strip()]
    limits = images.ImageLimits.of(resources.settings)
    result: dict[str, Any] = {"protocol": "composites", "boxes": boxes, "per_background": per_background, "seed": seed}
    for kind in BACKGROUNDS:
        products = found = first = boxes_found = 0
        textures: dict[str, list[int]] = {}
        started = time.perf_counter()
        for n in range(per_background):
            comp = compose(offers, catalog_file.parent, seed * 100_003 + n * 2 + BACKGROUNDS.index(kind), kind)
            img = images.decode(comp.jpeg(), limits)
            predicted = queries.product_boxes(resources, img, separate=boxes == "new")
            boxes_found += len(predicted)
            for truth, item_id in zip(comp.boxes, comp.item_ids, strict=True):
                products += 1
                best = _best(predicted, truth)
                hit = best is not None and iou(best, truth) >= HIT
                found += hit
                textures.setdefault(comp.background, [0, 0])[1] += 1
                if hit:
                    assert best is not None
                    textures[comp.background][0] += 1
                    analysis = queries.analyse(resources, img, best)
                    ranked = search.ranked(resources, analysis.vectors, analysis.local)
                    first += bool(ranked) and ranked[0].item_id == item_id
        result[kind] = {
            "composites": per_background,
            "products": products,
            "box_recall": found / products if products else 0.0,
            "boxes_per_photo": boxes_found / per_background if per_background else 0.0,
            "recall_at_1": first / products if products else 0.0,
            "by_texture": {name: hits / total for name, (hits, total) in sorted(textures.items())},
            "seconds": time.perf_counter() - started,
        }
    return result
