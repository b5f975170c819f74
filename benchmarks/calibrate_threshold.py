"""Calibrate `similarity_threshold` on ../shared data; prints percentiles and writes JSON.

Positives: a real shop photo (grocery `query`) against its product's catalog photo, and two
photos of the same luma offer (other colours and angles). Negatives: a grocery query against
other products' catalog photos and every luma photo. The threshold is chosen to keep 95% of the
grocery positives; the share of negatives that also pass says how long the candidate list gets.

    python benchmarks/calibrate_threshold.py [--shared ../shared] [--out build/calibration.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from snapsource.config import Settings
from snapsource.vision import images
from snapsource.vision.embed import OnnxEmbedder


def embed_files(embedder: OnnxEmbedder, paths: list[Path], trim: float) -> np.ndarray:
    out = []
    for start in range(0, len(paths), 32):
        batch = [images.prepare(images.decode(p.read_bytes()), trim) for p in paths[start : start + 32]]
        out.append(embedder.embed(np.stack(batch)))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=Path("build/calibration.json"))
    parser.add_argument("--keep", type=float, default=0.95, help="share of grocery positives to keep")
    args = parser.parse_args()
    settings = Settings.load()
    embedder = OnnxEmbedder(settings.model_path or None, precision=settings.precision)

    grocery = args.shared / "eval" / "grocery"
    rows = list(csv.DictReader(open(grocery / "manifest.csv")))
    queries = [r for r in rows if r["role"] == "query"]
    catalog = [r for r in rows if r["role"] == "catalog"]
    q = embed_files(embedder, [grocery / r["image_path"] for r in queries], settings.trim_margin)
    c = embed_files(embedder, [grocery / r["image_path"] for r in catalog], settings.trim_margin)

    luma_dir = args.shared / "catalogs" / "luma"
    offers = [json.loads(line) for line in open(luma_dir / "catalog.jsonl")]
    luma_paths = sorted({p for o in offers for p in [o["img"], *o.get("images", [])]})
    luma = embed_files(embedder, [luma_dir / p for p in luma_paths], settings.trim_margin)
    owner = {}
    for o in offers:
        for p in [o["img"], *o.get("images", [])]:
            owner.setdefault(p, o["img"])  # twins share photos: group by main photo

    sims = q @ c.T
    same = np.array([[qr["product_id"] == cr["product_id"] for cr in catalog] for qr in queries])
    grocery_pos = sims[same]
    grocery_neg = np.concatenate([sims[~same], (q @ luma.T).ravel()])
    groups = np.array([owner[p] for p in luma_paths])
    lsims = luma @ luma.T
    pair = np.triu(np.ones_like(lsims, dtype=bool), k=1)
    same_offer = (groups[:, None] == groups[None, :]) & pair
    luma_pos, luma_neg = lsims[same_offer], lsims[pair & ~same_offer]

    threshold = float(np.quantile(grocery_pos, 1 - args.keep))
    pct = [5, 25, 50, 75, 95]
    result = {
        "model": embedder.name,
        "trim_margin": settings.trim_margin,
        "threshold_keeping": args.keep,
        "threshold": round(threshold, 3),
        "percentiles": pct,
        "grocery_positive": np.percentile(grocery_pos, pct).round(3).tolist(),
        "grocery_negative": np.percentile(grocery_neg, pct).round(3).tolist(),
        "luma_same_offer": np.percentile(luma_pos, pct).round(3).tolist(),
        "luma_other_offer": np.percentile(luma_neg, pct).round(3).tolist(),
        "pass_rate_at_threshold": {
            "grocery_positive": float((grocery_pos >= threshold).mean().round(3)),
            "grocery_negative": float((grocery_neg >= threshold).mean().round(3)),
            "luma_same_offer": float((luma_pos >= threshold).mean().round(3)),
            "luma_other_offer": float((luma_neg >= threshold).mean().round(3)),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
