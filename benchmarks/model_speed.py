"""Images/s of the embedding model at each precision and batch size, on this machine's CPU.

    python benchmarks/model_speed.py [--runs 7] [--seconds 3] [--out build/model-speed.json]

The model alone (onnxruntime on prepared luma photos, pooling and normalising included: the
embedder's `embed`), with the threads the server uses (one per core). Each run embeds batches of
the given size for about `--seconds` seconds; the figure is the median of `--runs` runs, with the
lowest and highest. Also the cosine between the two precisions' vectors of the same photos.
docs/performance.md ("int8 model") has the table; run it on a quiet machine. Where a whole search
spends its time is benchmarks/query_profile.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from snapsource.vision import images
from snapsource.vision.embed import OnnxEmbedder
from snapsource.vision.model import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
LUMA = ROOT.parent / "shared" / "catalogs" / "luma" / "catalog.jsonl"


def photos(catalog: Path, count: int = 64) -> np.ndarray:
    """The model's input for `count` of the catalog's main photos, prepared as ingest prepares them."""
    rows = [json.loads(line) for line in catalog.read_text().splitlines() if line.strip()]
    names = sorted({row["img"] for row in rows})[:count]
    pixels = [images.pixels(images.decode((catalog.parent / name).read_bytes()), 0.08) for name in names]
    return images.scale(np.stack(pixels))


def images_per_second(embedder: OnnxEmbedder, batch: np.ndarray, size: int, runs: int, seconds: float) -> dict[str, float]:
    batches = [batch[i : i + size] for i in range(0, len(batch) - size + 1, size)]
    embedder.embed(batches[0])  # warm up
    rates = []
    for _ in range(runs):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for part in batches:
                embedder.embed(part)
                done += len(part)
        rates.append(done / (time.perf_counter() - started))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--luma", type=Path, default=LUMA)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=0, help="0: one per core, as the server")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "model-speed.json")
    args = parser.parse_args()
    batch = photos(args.luma)
    result: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "runs": args.runs,
    }
    vectors = {}
    for precision in PRECISIONS:
        embedder = OnnxEmbedder(precision=precision, threads=args.threads)
        vectors[precision] = embedder.embed(batch)
        for size in (1, 32):
            rate = images_per_second(embedder, batch, size, args.runs, args.seconds)
            result[f"{precision} batch {size}"] = rate
            print(
                f"{embedder.name:28s} batch {size:2d}: {rate['median']:6.1f} images/s "
                f"(min {rate['min']:.1f}, max {rate['max']:.1f})",
                file=sys.stderr,
            )
    cosine = (vectors["float32"] * vectors["int8"]).sum(axis=1)
    result["cosine float32/int8"] = {"mean": float(cosine.mean()), "min": float(cosine.min())}
    print(f"cosine float32/int8 over {len(batch)} photos: mean {cosine.mean():.4f}, min {cosine.min():.4f}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
