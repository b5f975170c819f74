"""Retrieval checks that anyone can rerun: `snapsource eval CATALOG`.

Self-retrieval searches with each offer's main image file, through the whole query pipeline
(decode, trim, embed, search), and counts a hit when the offer, or an offer relisted with the same
photo, ranks first.
"""

from __future__ import annotations

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
