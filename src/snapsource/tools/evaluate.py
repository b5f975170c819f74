"""Retrieval quality that anyone can measure again: `snapsource eval`.

Every protocol sends its queries through the whole query pipeline (decode, localise, framings,
embed, candidates, geometric re-ranking), exactly as the API does, and ranks offers:

- `grocery`: real shop photos (../shared/eval/grocery, role=query) against the products' catalog
  photos, with the luma catalog as distractors. One relevant offer per query.
- `edits`: each luma offer's main photo, edited with a fixed seed (crop, downscale, JPEG q40, colour
  jitter, flip, text watermark, padding onto white, and all of them chained), against the luma
  catalog. Relevant: the offer and its relistings with the same photo.
- `self`: each offer's own main photo file.
- `views`: each luma offer's photos other than its main one (back, detail, another colour), each
  searched with that photo left out of the index (`without_images`), so it cannot find itself.
  Relevant: the offers that show the photo and the relistings of their main photos. Relisted
  twins show the same photos: a photo is asked once, with all its offers relevant.

R@k is the share of queries with a relevant offer among the first k; mAP averages the precision
at each relevant offer's rank (an offer the search does not return counts as never found).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from snapsource import search
from snapsource.ingest.pipeline import IngestReport, iter_rows, local_path
from snapsource.ingest.rows import JsonLines
from snapsource.resources import Resources
from snapsource.search import categories, queries
from snapsource.store.columns import Columns, Selection
from snapsource.store.vectors import Matches, VectorStore

GROCERY_ITEM_BASE = 1_000_000  # grocery product_id -> item_id, far from real 1688 ids
EDITS = ("crop", "downscale", "jpeg40", "colour", "flip", "watermark", "pad", "chained")
Case = tuple[dict[str, Any], bytes, set[int]]  # what a query is about, the photo sent, the relevant offers


def _search(resources: Resources, data: bytes) -> tuple[list[int], list[int], str | None, float]:
    """The ranking's item_ids, those of its first ten labelled `same`, the predicted category and
    the seconds it took."""
    started = time.perf_counter()
    analysis = queries.analyse_bytes(resources, data)
    ranked = search.ranked(resources, analysis.vectors, analysis.local)
    same = [c.item_id for c in ranked[:10] if c.same(resources.settings)]
    best = ranked[: categories.TOP]
    docs = resources.catalog.documents([c.item_id for c in best])
    paths = [
        [str(x) for x in json.loads(docs[c.item_id][0]).get("category_path") or []] if c.item_id in docs else [] for c in best
    ]
    settings = resources.settings
    votes = categories.vote(paths, [c.similarity for c in best], settings.category_vote_floor, settings.category_min_evidence)
    predicted = categories.predicted(votes)
    return [c.item_id for c in ranked], same, predicted, time.perf_counter() - started


def _average_precision(ranking: list[int], relevant: set[int]) -> float:
    hits, total = 0, 0.0
    for position, item_id in enumerate(ranking, 1):
        if item_id in relevant:
            hits += 1
            total += hits / position
    return total / len(relevant) if relevant else 0.0


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {"queries": 0}
    first = [r["rank"] for r in rows]
    labelled = sum(r["same"] for r in rows)
    return {
        "queries": n,
        **{f"recall_at_{k}": sum(1 for r in first if r is not None and r <= k) / n for k in (1, 5, 10)},
        "map": sum(r["ap"] for r in rows) / n,
        "p50_ms": 1000 * statistics.median(r["seconds"] for r in rows),
        # `match: same` among the first ten: how often it is right, and how often the product gets it
        "same_labelled": labelled,
        "same_precision": sum(r["same_right"] for r in rows) / labelled if labelled else None,
        "same_recall": sum(1 for r in rows if r["same_right"]) / n,
        "total_median": statistics.median(r["total"] for r in rows),
        # the predicted category (search/categories.py): on the product's category path; its leaf
        "category_predicted": sum(1 for r in rows if r["category"] is not None) / n,
        "category_accuracy": sum(1 for r in rows if r["category_right"]) / n,
        "category_leaf_accuracy": sum(1 for r in rows if r["category_leaf"]) / n,
    }


def _measure(resources: Resources, cases: Iterable[Case]) -> list[dict[str, Any]]:
    """Each case searched; a case whose meta names `leave_out` image ids is searched without them."""
    rows = []
    for meta, data, relevant in cases:
        leave_out = meta.pop("leave_out", None)
        searched = without_images(resources, leave_out) if leave_out else resources
        ranking, same, predicted, seconds = _search(searched, data)
        truth = [str(c) for c in meta.pop("category_path", [])]
        rank = next((i for i, item_id in enumerate(ranking, 1) if item_id in relevant), None)
        rows.append(
            {
                **meta,
                "rank": rank,
                "ap": _average_precision(ranking, relevant),
                "seconds": seconds,
                "total": len(ranking),
                "same": len(same),
                "same_right": sum(1 for item_id in same if item_id in relevant),
                "category": predicted,
                "category_right": predicted is not None and predicted in truth,  # on the product's path
                "category_leaf": bool(truth) and predicted == truth[-1],
            }
        )
    return rows


# grocery ------------------------------------------------------------------------------------------
def grocery_gallery(manifest: Path) -> list[dict[str, Any]]:
    """The grocery eval's catalog photos as catalog offers (one per product), to ingest.

    The eval set has titles and classes but no trade data: prices are "0.00" and shop fields are
    left empty, so these offers are for measuring retrieval, not for trying filters.
    """
    offers = []
    with open(manifest, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["role"] != "catalog":
                continue
            item_id = GROCERY_ITEM_BASE + int(row["product_id"])
            offers.append(
                {
                    "item_id": item_id,
                    "product_url": f"https://grocery.example/offer/{item_id}.html",
                    "title": row["title"],
                    "img": str((manifest.parent / row["image_path"]).resolve()),
                    "category_path": [row["coarse_class"]],
                    "price": "0.00",
                }
            )
    return offers


def grocery_cases(manifest: Path, limit: int | None = None) -> Iterator[Case]:
    with open(manifest, newline="") as fh:
        wanted = [r for r in csv.DictReader(fh) if r["role"] == "query"]
    if limit is not None and limit < len(wanted):  # spread over the products, not the first few
        wanted = [wanted[i * len(wanted) // limit] for i in range(limit)]
    for r in wanted:
        yield (
            {"image": r["image_path"], "packaged": r["packaged"] == "True", "category_path": [r["coarse_class"]]},
            (manifest.parent / r["image_path"]).read_bytes(),
            {GROCERY_ITEM_BASE + int(r["product_id"])},
        )


def grocery(resources: Resources, manifest: Path, limit: int | None = None) -> dict[str, Any]:
    rows = _measure(resources, grocery_cases(manifest, limit))
    return {
        "protocol": "grocery",
        "overall": _summary(rows),
        "packaged": _summary([r for r in rows if r["packaged"]]),
        "loose": _summary([r for r in rows if not r["packaged"]]),
        "rows": rows,
    }


# edits --------------------------------------------------------------------------------------------
def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    keep = rng.uniform(0.6, 0.9)
    w, h = int(img.width * keep), int(img.height * keep)
    x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
    return img.crop((x, y, x + w, y + h))


def _downscale(img: Image.Image, rng: random.Random) -> Image.Image:
    factor = rng.uniform(0.2, 0.4)
    return img.resize((max(32, int(img.width * factor)), max(32, int(img.height * factor))), Image.Resampling.BILINEAR)


def _colour(img: Image.Image, rng: random.Random) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.7, 1.3))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))


def _watermark(img: Image.Image, rng: random.Random) -> Image.Image:
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(12, img.width // 12)
    font = ImageFont.load_default(size)
    text = rng.choice(["SAMPLE", "wholesale-shop.example", "热卖 HOT SALE", "© PhotoStore 2026"])
    for row in range(3):
        y = int(img.height * (0.2 + 0.3 * row))
        draw.text((int(img.width * rng.uniform(0.05, 0.3)), y), text, font=font, fill=(255, 255, 255, 150))
    return Image.alpha_composite(out, layer).convert("RGB")


def _pad(img: Image.Image, rng: random.Random) -> Image.Image:
    scale = rng.uniform(1.3, 1.8)
    canvas = Image.new("RGB", (int(img.width * scale), int(img.height * scale)), (255, 255, 255))
    canvas.paste(img, (rng.randint(0, canvas.width - img.width), rng.randint(0, canvas.height - img.height)))
    return canvas


_EDITORS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "crop": _crop,
    "downscale": _downscale,
    "colour": _colour,
    "flip": lambda img, rng: ImageOps.mirror(img),
    "watermark": _watermark,
    "pad": _pad,
}


def edit(img: Image.Image, name: str, rng: random.Random) -> bytes:
    """One seeded edit of a photo, encoded as the JPEG a user would send."""
    if name == "jpeg40":
        return _jpeg(img, 40)
    if name == "chained":
        for step in ("crop", "downscale", "colour", "flip", "watermark", "pad"):
            img = _EDITORS[step](img, rng)
        return _jpeg(img, 40)
    return _jpeg(_EDITORS[name](img, rng))


def edits_cases(resources: Resources, catalog_file: Path, seed: int = 0, limit: int | None = None) -> Iterator[Case]:
    rng = random.Random(seed)
    for count, row in enumerate(iter_rows(JsonLines(catalog_file), IngestReport())):
        if limit is not None and count >= limit:
            return
        data = local_path(row.record.img, catalog_file.parent).read_bytes()
        image = resources.catalog.image_by_sha(hashlib.sha256(data).hexdigest())
        if image is None:
            continue  # not imported (a bad image): nothing to find
        relevant = {item for _, item in resources.catalog.offers_for_images([image.id])}
        with Image.open(io.BytesIO(data)) as opened:
            photo = ImageOps.exif_transpose(opened).convert("RGB")
        for name in EDITS:
            meta = {"item_id": row.record.item_id, "edit": name, "category_path": row.record.category_path}
            yield meta, edit(photo, name, rng), relevant


def edits(resources: Resources, catalog_file: Path, seed: int = 0, limit: int | None = None) -> dict[str, Any]:
    rows = _measure(resources, edits_cases(resources, catalog_file, seed, limit))
    return {
        "protocol": "edits",
        "overall": _summary(rows),
        **{name: _summary([r for r in rows if r["edit"] == name]) for name in EDITS},
        "rows": rows,
    }


def self_retrieval(resources: Resources, catalog_file: Path) -> dict[str, Any]:
    """Each offer's own main photo: is the offer (or a relisting with that photo) first?"""

    def cases():
        for row in iter_rows(JsonLines(catalog_file), IngestReport()):
            data = local_path(row.record.img, catalog_file.parent).read_bytes()
            image = resources.catalog.image_by_sha(hashlib.sha256(data).hexdigest())
            if image is not None:
                relevant = {item for _, item in resources.catalog.offers_for_images([image.id])}
                meta = {"item_id": row.record.item_id, "title": row.record.title, "category_path": row.record.category_path}
                yield meta, data, relevant

    rows = _measure(resources, cases())
    summary = _summary(rows)
    return {
        "protocol": "self",
        "offers": summary["queries"],
        "recall_at_1": summary.get("recall_at_1", 0.0),
        "recall_at_5": summary.get("recall_at_5", 0.0),
        "p50_ms": summary.get("p50_ms", 0.0),
        "misses": [{k: r[k] for k in ("item_id", "title", "rank")} for r in rows if r["rank"] != 1],
        "overall": summary,
    }


# views --------------------------------------------------------------------------------------------
class _LeftOut:
    """A vector store less some images: its searches never return them (the views protocol's
    leave-one-out). It asks the store for `extra` more entries, as many as the left-out images
    fill, so a search still sees its k others; everything else is the store's own."""

    def __init__(self, store: VectorStore, image_ids: np.ndarray, extra: int) -> None:
        self._store = store
        self._out = image_ids
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def search_offers(
        self, query: np.ndarray, k: int, columns: Columns, selection: Selection | None, threshold: float
    ) -> Matches:
        found = self._store.search_offers(query, k + self._extra, columns, selection, threshold)
        keep = ~np.isin(found.image_ids, self._out)
        return Matches(found.item_ids[keep], found.image_ids[keep], found.scores[keep], found.more)


def without_images(resources: Resources, image_ids: Iterable[int]) -> Resources:
    """The same resources searching an index without these images (catalog, offers and local
    features unchanged): a catalog photo searched as a query then cannot find itself."""
    ids = np.fromiter(image_ids, np.int64)
    extra = len(resources.catalog.offers_for_images([int(i) for i in ids]))  # entries: (offer, image) pairs
    store: VectorStore = _LeftOut(resources.index, ids, max(extra, len(ids)))
    return dataclasses.replace(resources, index=store)


def views_cases(resources: Resources, catalog_file: Path, limit: int | None = None) -> Iterator[Case]:
    """Each offer's photos other than its main one, to be searched with that photo left out of
    the index (meta `leave_out`). `limit`: the first this many offers that have such photos. A
    photo that several offers show (relisted twins) is asked once, all of them relevant, and the
    relistings of those offers' main photos too."""
    asked: set[int] = set()
    offers = 0
    for row in iter_rows(JsonLines(catalog_file), IngestReport()):
        record = row.record
        others = [ref for ref in record.image_refs() if ref != record.img]
        if not others:
            continue
        if limit is not None and offers >= limit:
            return
        offers += 1
        for ref in others:
            data = local_path(ref, catalog_file.parent).read_bytes()
            image = resources.catalog.image_by_sha(hashlib.sha256(data).hexdigest())
            if image is None or image.id in asked:
                continue  # not imported (a bad image), or asked already for a twin
            asked.add(image.id)
            showing = {item for _, item in resources.catalog.offers_for_images([image.id])}
            mains = [main.id for _, main in resources.catalog.documents(sorted(showing)).values()]
            relevant = showing | {item for _, item in resources.catalog.offers_for_images(mains)}
            meta = {
                "item_id": record.item_id,
                "image": ref,
                "image_id": image.id,
                "leave_out": [image.id],
                "relevant": sorted(relevant),
                "category_path": record.category_path,
            }
            yield meta, data, relevant


def views(resources: Resources, catalog_file: Path, limit: int | None = None) -> dict[str, Any]:
    """Is the offer, or a relisting of it, found from another of its photos, that photo left out?"""
    rows = _measure(resources, views_cases(resources, catalog_file, limit))
    return {"protocol": "views", "overall": _summary(rows), "rows": rows}
