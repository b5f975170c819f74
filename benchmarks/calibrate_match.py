"""Calibrate `match: same` and the similarity threshold on the eval protocols (docs/search.md).

For each query of the grocery protocol (shop photos) and a seeded sample of the edits protocol
(edited luma photos), the ranked candidates down to a low threshold are recorded with their
similarity, geometric inliers and two truths: the offer is the query's product (relevant), or
in the product's own category (what a buyer may accept as a close alternative). Then:

- `same` rules (inliers >= I or similarity >= S): precision and recall of `same` per protocol;
  the rule chosen is the loosest whose precision is at least 0.95 on both protocols.
- thresholds T: precision (share of results that are the product or its category), the mean
  total_count, and R@10 per protocol.

Run after `snapsource eval` has imported the eval catalogs (build/eval-data):
    .venv/bin/python benchmarks/calibrate_match.py --out build/calibrate-match.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from snapsource import search
from snapsource.config import Settings
from snapsource.ingest import IngestReport, iter_rows, local_path
from snapsource.ingest.rows import JsonLines
from snapsource.resources import Resources
from snapsource.search import queries
from snapsource.tools import evaluate

FLOOR = 0.15  # candidates are recorded down to this similarity
INLIERS = (10, 15, 20, 25, 30, 40, 60, 1_000)
SIMILARITIES = (0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 1.01)
THRESHOLDS = (0.28, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)


def category(doc: str) -> str:
    path = json.loads(doc).get("category_path") or []
    return str(path[-1]) if path else ""


def record(resources: Resources, data: bytes, relevant: set[int], wanted: str, categories: dict[int, str]) -> list[list[Any]]:
    """[similarity, inliers, relevant, same category] of each candidate, best first."""
    analysis = queries.analyse_bytes(resources, data)
    ranked = search.ranked(resources, analysis.vectors, analysis.local, threshold=FLOOR)
    missing = [c.item_id for c in ranked if c.item_id not in categories]
    for item_id, (doc, _) in resources.catalog.documents(missing).items():
        categories[item_id] = category(doc)
    return [[round(c.similarity, 4), c.inliers, c.item_id in relevant, categories.get(c.item_id) == wanted] for c in ranked]


def grocery_cases(resources: Resources, shared: Path) -> list[tuple[bytes, set[int], str]]:
    manifest = shared / "eval" / "grocery" / "manifest.csv"
    with open(manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["role"] == "query"]
    return [
        ((manifest.parent / r["image_path"]).read_bytes(), {evaluate.GROCERY_ITEM_BASE + int(r["product_id"])}, r["coarse_class"])
        for r in rows
    ]


def edit_cases(resources: Resources, shared: Path, per_edit: int, seed: int) -> list[tuple[bytes, set[int], str]]:
    catalog_file = shared / "catalogs" / "luma" / "catalog.jsonl"
    rng = random.Random(seed)
    rows = list(iter_rows(JsonLines(catalog_file), IngestReport()))
    out = []
    for name in evaluate.EDITS:
        for row in rng.sample(rows, min(per_edit, len(rows))):
            data = local_path(row.record.img, catalog_file.parent).read_bytes()
            image = resources.catalog.image_by_sha(hashlib.sha256(data).hexdigest())
            if image is None:
                continue
            relevant = {item for _, item in resources.catalog.offers_for_images([image.id])}
            with Image.open(io.BytesIO(data)) as opened:
                photo = ImageOps.exif_transpose(opened).convert("RGB")
            out.append((evaluate.edit(photo, name, rng), relevant, str((row.record.category_path or [""])[-1])))
    return out


def same_table(queries_: list[list[list[Any]]], top: int = 10) -> list[dict[str, Any]]:
    """Precision and recall of `same` among each query's top candidates, for each rule."""
    table = []
    for inliers in INLIERS:
        for similarity in SIMILARITIES:
            said = right = found = 0
            for candidates in queries_:
                hit = False
                for sim, count, relevant, _ in candidates[:top]:
                    if count >= inliers or sim >= similarity:
                        said += 1
                        right += relevant
                        hit = hit or relevant
                found += hit
            table.append(
                {
                    "inliers": inliers,
                    "similarity": similarity,
                    "labelled": said,
                    "precision": right / said if said else 1.0,
                    "recall": found / len(queries_) if queries_ else 0.0,
                }
            )
    return table


def threshold_table(queries_: list[list[list[Any]]]) -> list[dict[str, Any]]:
    table = []
    for threshold in THRESHOLDS:
        kept = [[c for c in candidates if c[0] >= threshold] for candidates in queries_]
        results = sum(len(k) for k in kept)
        good = sum(1 for k in kept for c in k if c[2] or c[3])
        r10 = sum(1 for k in kept if any(c[2] for c in k[:10])) / len(kept)
        totals = sorted(len(k) for k in kept)
        table.append(
            {
                "threshold": threshold,
                "precision": good / results if results else 1.0,
                "mean_total": results / len(kept),
                "median_total": totals[len(totals) // 2],
                "recall_at_10": r10,
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("build/eval-data"))
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--per-edit", type=int, default=40, help="luma photos per edit (8 edits)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("build/calibrate-match.json"))
    args = parser.parse_args()
    resources = Resources.open(Settings.load(data_dir=args.data))
    categories: dict[int, str] = {}
    recorded = {}
    for protocol, cases in (
        ("grocery", grocery_cases(resources, args.shared)),
        ("edits", edit_cases(resources, args.shared, args.per_edit, args.seed)),
    ):
        recorded[protocol] = [record(resources, data, relevant, wanted, categories) for data, relevant, wanted in cases]
        print(f"{protocol}: {len(cases)} queries")
    report = {protocol: {"same": same_table(rows), "thresholds": threshold_table(rows)} for protocol, rows in recorded.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"report": report, "recorded": recorded}))
    for protocol, tables in report.items():
        print(f"\n{protocol}: thresholds")
        for row in tables["thresholds"]:
            print(
                f"  T={row['threshold']:.2f} precision {row['precision']:.3f} mean total {row['mean_total']:.1f} "
                f"median {row['median_total']} R@10 {row['recall_at_10']:.3f}"
            )
    print("\nsame rules with precision >= 0.95 on both protocols, loosest first:")
    rules = []
    for g, e in zip(report["grocery"]["same"], report["edits"]["same"]):
        if g["precision"] >= 0.95 and e["precision"] >= 0.95:
            rules.append((g["recall"] + e["recall"], g, e))
    for _, g, e in sorted(rules, key=lambda r: -r[0])[:8]:
        print(
            f"  inliers >= {g['inliers']}, similarity >= {g['similarity']}: grocery P {g['precision']:.3f} R {g['recall']:.3f}"
            f" ({g['labelled']}), edits P {e['precision']:.3f} R {e['recall']:.3f} ({e['labelled']})"
        )
    resources.close()


if __name__ == "__main__":
    main()
