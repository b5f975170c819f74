"""Calibrate the category vote's evidence: `category_vote_floor` and `category_min_evidence` (docs/search.md).

Three sets of queries, each searched through the whole query pipeline as the API does, record their
best ten matches' similarity and category_path (what search/categories.py votes on):

- `edits`: every luma offer's main photo under the eval's eight seeded edits, against luma;
- `grocery`: the grocery shop photos against their products' catalog photos plus luma (coarse class);
- `absent`: the same shop photos against luma alone, which carries no grocery: any category
  predicted there is wrong (an apple photo "predicted" a clothing category with share 1.0).

Then every (floor, evidence) pair of the grid is scored: predicted share, on the product's path,
the leaf, and right when predicted. Takes about a quarter of an hour on a CPU:
    .venv/bin/python benchmarks/calibrate_category.py --out build/calibrate-category.json
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from snapsource import search
from snapsource.config import Settings
from snapsource.ingest import IngestReport, iter_rows, local_path
from snapsource.ingest.pipeline import ingest
from snapsource.ingest.rows import JsonLines
from snapsource.resources import Resources
from snapsource.search import categories, queries
from snapsource.tools import evaluate

FLOORS = (0.0, 0.28, 0.3, 0.33, 0.35, 0.37, 0.4)
EVIDENCE = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75)


def best_ten(resources: Resources, data: bytes) -> list[tuple[float, list[str]]]:
    analysis = queries.analyse_bytes(resources, data)
    best = search.ranked(resources, analysis.vectors, analysis.local)[: categories.TOP]
    docs = resources.catalog.documents([c.item_id for c in best])
    return [
        (c.similarity, [str(x) for x in json.loads(docs[c.item_id][0]).get("category_path") or []] if c.item_id in docs else [])
        for c in best
    ]


def record(shared: Path, work: Path) -> dict[str, list[dict[str, Any]]]:
    luma = shared / "catalogs" / "luma" / "catalog.jsonl"
    manifest = shared / "eval" / "grocery" / "manifest.csv"
    with open(manifest, newline="") as fh:
        shop = [r for r in csv.DictReader(fh) if r["role"] == "query"]
    out: dict[str, list[dict[str, Any]]] = {}
    resources = Resources.open(Settings.load(environ={}, data_dir=work / "luma"))
    try:
        ingest(resources, luma)
        out["absent"] = [
            {"truth": [], "top": best_ten(resources, (manifest.parent / r["image_path"]).read_bytes())} for r in shop
        ]
        rng, edits = random.Random(0), []  # the eval's seed and order: its edits, photo for photo
        for row in iter_rows(JsonLines(luma), IngestReport()):
            with Image.open(io.BytesIO(local_path(row.record.img, luma.parent).read_bytes())) as opened:
                photo = ImageOps.exif_transpose(opened).convert("RGB")
            for name in evaluate.EDITS:
                edited = evaluate.edit(photo, name, rng)
                edits.append({"truth": row.record.category_path, "top": best_ten(resources, edited)})
        out["edits"] = edits
    finally:
        resources.close()
    resources = Resources.open(Settings.load(environ={}, data_dir=work / "grocery"))
    try:
        gallery = work / "grocery.jsonl"
        gallery.write_text("".join(json.dumps(o) + "\n" for o in evaluate.grocery_gallery(manifest)))
        ingest(resources, luma)
        ingest(resources, gallery)
        out["grocery"] = [
            {
                "truth": [r["coarse_class"]],
                "packaged": r["packaged"] == "True",
                "top": best_ten(resources, (manifest.parent / r["image_path"]).read_bytes()),
            }
            for r in shop
        ]
    finally:
        resources.close()
    return out


def score(rows: list[dict[str, Any]], floor: float, evidence: float) -> dict[str, float]:
    n = len(rows)
    found = [
        (categories.predicted(categories.vote([p for _, p in r["top"]], [s for s, _ in r["top"]], floor, evidence)), r["truth"])
        for r in rows
    ]
    predicted = sum(1 for c, _ in found if c is not None)
    right = sum(1 for c, truth in found if c is not None and c in truth)
    return {
        "predicted": round(predicted / n, 3),
        "on_path": round(right / n, 3),
        "leaf": round(sum(1 for c, truth in found if truth and c == truth[-1]) / n, 3),
        "right_when_predicted": round(right / predicted, 3) if predicted else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--out", type=Path, default=Path("build/calibrate-category.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="snapsource-category-") as work:
        recorded = record(args.shared, Path(work))
    sets = {**recorded, "grocery packaged": [r for r in recorded["grocery"] if r["packaged"]]}
    sets["grocery loose"] = [r for r in recorded["grocery"] if not r["packaged"]]
    grid = [
        {"floor": floor, "evidence": evidence, **{name: score(rows, floor, evidence) for name, rows in sets.items()}}
        for floor in FLOORS
        for evidence in EVIDENCE
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"grid": grid, "recorded": recorded}))
    print("floor evidence | absent predicted | grocery predicted/on path/right | edits predicted/on path/leaf")
    for g in grid:
        a, gr, e = g["absent"], g["grocery"], g["edits"]
        print(
            f"{g['floor']:.2f} {g['evidence']:.2f} | {a['predicted']:.3f} | "
            f"{gr['predicted']:.3f}/{gr['on_path']:.3f}/{gr['right_when_predicted']:.2f} | "
            f"{e['predicted']:.3f}/{e['on_path']:.3f}/{e['leaf']:.3f}"
        )


if __name__ == "__main__":
    main()
