"""Retrieval checks that anyone can rerun: `snapsource eval CATALOG`.

Self-retrieval searches with each offer's main image file, through the whole query pipeline
(decode, trim, embed, search), and counts a hit when the offer, or an offer relisted with the same
photo, ranks first.
"""

from __future__ import annotations

import csv
import hashlib
import statistics
import time
from pathlib import Path
from typing import Any

from . import queries, search
from .ingest import IngestReport, iter_rows, local_path
from .resources import Resources


def self_retrieval(resources: Resources, catalog_file: Path) -> dict[str, Any]:
    at1 = at5 = 0
    misses: list[dict[str, Any]] = []
    timings: list[float] = []
    evaluated = 0
    for row in iter_rows(catalog_file, IngestReport()):
        data = local_path(row.record.img, catalog_file.parent).read_bytes()
        image = resources.catalog.image_by_sha(hashlib.sha256(data).hexdigest())
        if image is None:
            continue  # not imported (a bad image): nothing to find
        evaluated += 1
        same_photo = {item for _, item in resources.catalog.offers_for_images([image.id])}
        started = time.perf_counter()
        ranked = search.candidates(resources, queries.embed_bytes(resources, data))
        timings.append(time.perf_counter() - started)
        top = [item_id for item_id, _ in ranked[:5]]
        if top[:1] and top[0] in same_photo:
            at1 += 1
        else:
            misses.append({"item_id": row.record.item_id, "title": row.record.title, "top": top[:3]})
        if same_photo & set(top):
            at5 += 1
    return {
        "protocol": "self",
        "offers": evaluated,
        "recall_at_1": at1 / evaluated if evaluated else 0.0,
        "recall_at_5": at5 / evaluated if evaluated else 0.0,
        "p50_ms": 1000 * statistics.median(timings) if timings else 0.0,
        "misses": misses,
    }


GROCERY_ITEM_BASE = 1_000_000  # grocery product_id -> item_id, far from real 1688 ids


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
