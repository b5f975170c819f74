"""Where the time of a search with a new photo goes, stage by stage, in process.

    .venv/bin/python benchmarks/query_profile.py --config NAME=DATA_DIR[,setting=value...] [--config ...]
        [--photos 40] [--runs 2] [--http] [--out build/query-profile.json]

The photos are new to the index: luma photos that are no offer's main one, re-encoded at 800 px
on the long side (JPEG quality 90), and the grocery shop photos (348 px) as they are. Each is
searched as `snapsource eval` searches (`queries.analyse_bytes`, then `search.ranked`); the stages
are timed by wrapping the functions the query path calls (decode, the whole photo's feature maps,
object boxes, framings' resizing, their inference, SIFT, the index search and re-ranking), so the
code measured is the code served. p50 of the total per set, and the mean ms of each stage.
Run it on a quiet machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from snapsource import search
from snapsource.config import SETTINGS, Settings, _coerce
from snapsource.resources import Resources
from snapsource.search import queries, ranking
from snapsource.vision import images, objects, verify

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
Spent = collections.defaultdict[str, float]


def photos_800(count: int, seed: int = 0) -> list[bytes]:
    """`count` luma photos that are no offer's main photo, as 800 px JPEGs, new to any index and
    to any earlier run (a comment with the time makes each file's hash new)."""
    catalog = SHARED / "catalogs" / "luma" / "catalog.jsonl"
    rows = [json.loads(line) for line in catalog.read_text().splitlines() if line.strip()]
    mains = {row["img"] for row in rows}
    pool = sorted({ref for row in rows for ref in row.get("images") or []} - mains)
    out = []
    for name in random.Random(seed).sample(pool, min(count, len(pool))):
        with Image.open(catalog.parent / name) as img:
            small = img.convert("RGB")
            small.thumbnail((800, 800), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=90, comment=f"{time.time_ns()}".encode())
            out.append(buf.getvalue())
    return out


def grocery_photos(count: int) -> list[bytes]:
    folder = SHARED / "eval" / "grocery"
    lines = (folder / "manifest.csv").read_text().splitlines()[1:]
    paths = [line.split(",")[-1] for line in lines if ",query," in line]
    return [(folder / p).read_bytes() for p in paths[:: max(1, len(paths) // count)][:count]]


@dataclasses.dataclass
class Config:
    name: str
    data: Path
    overrides: dict[str, Any]
    resources: Resources
    spent: Spent = dataclasses.field(default_factory=lambda: collections.defaultdict(float))
    totals: list[float] = dataclasses.field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Config:
        """NAME=DATA_DIR[,setting=value...][,spinning]"""
        name, _, rest = text.partition("=")
        data, *items = rest.split(",")
        known = {s.name: s for s in SETTINGS}
        overrides = {k: _coerce(known[k], v) for k, _, v in (i.partition("=") for i in items if i not in FLAGS)}
        resources = Resources.open(Settings.load(data_dir=Path(data), **overrides))
        if "spinning" in items:  # BLAS and faiss on every core again, as before one_thread_per_search
            import faiss
            from threadpoolctl import threadpool_limits

            threadpool_limits(os.cpu_count(), user_api="blas")
            faiss.omp_set_num_threads(os.cpu_count() or 1)
        return cls(name, Path(data), overrides, resources)


FLAGS = ("spinning",)
CURRENT: list[Config] = []  # the configuration being timed: where the wrappers add their time


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            CURRENT[0].spent[stage] += time.perf_counter() - started

    return wrapper


def instrument(configs: list[Config]) -> None:
    """Wrap the query path's stages (module attributes, as the code calls them)."""
    for config in configs:  # `embed` calls `feature_maps`: the whole photo is a batch of one, the framings more
        embedder = config.resources.embedder
        maps = embedder.feature_maps
        whole, framings = _timed("model: whole photo", maps), _timed("model: framings", maps)
        embedder.feature_maps = lambda batch, whole=whole, framings=framings: (whole if len(batch) == 1 else framings)(batch)  # type: ignore[method-assign]
    images.decode = _timed("decode", images.decode)  # type: ignore[assignment]
    images.prepare = _timed("resize to 224", images.prepare)  # type: ignore[assignment]
    objects.find = _timed("object boxes", objects.find)  # type: ignore[assignment]
    verify.extract = _timed("SIFT extraction", verify.extract)  # type: ignore[assignment]
    ranking.candidates = _timed("index search", ranking.candidates)  # type: ignore[assignment]
    ranking.rerank = _timed("re-ranking (SIFT matching)", ranking.rerank)  # type: ignore[assignment]


def measure(configs: list[Config], photos: list[bytes], runs: int) -> dict[str, Any]:
    """Each photo searched in each configuration in turn, so that all meet the same load."""
    for config in configs:
        config.spent.clear()
        config.totals.clear()
    for _ in range(runs):
        for data in photos:
            for config in configs:
                CURRENT[:] = [config]
                started = time.perf_counter()
                analysis = queries.analyse_bytes(config.resources, data)
                search.ranked(config.resources, analysis.vectors, analysis.local)
                config.totals.append(time.perf_counter() - started)
    out = {}
    for config in configs:
        totals, n = config.totals, len(config.totals)
        stages = {stage: round(1000 * sec / n, 2) for stage, sec in sorted(config.spent.items(), key=lambda kv: -kv[1])}
        out[config.name] = {
            "searches": n,
            "p50_ms": round(1000 * statistics.median(totals), 1),
            "p90_ms": round(1000 * statistics.quantiles(totals, n=10)[-1], 1),
            "mean_ms": round(1000 * statistics.fmean(totals), 1),
            "stages_ms": stages,
        }
    return out


def http(data_dir: Path, photos: list[bytes], overrides: dict[str, Any], workers: int) -> dict[str, Any]:
    """`snapsource serve` on the data dir; each photo uploaded and searched in one request
    (POST /1688/search/image), one at a time: p50 from the client, as a user meets it."""
    import tempfile

    import httpx

    from snapsource.tools.bench import token_and_photos
    from snapsource.tools.loopback import serve_workers

    token = token_and_photos(data_dir)[0]
    env = {
        f"SNAPSOURCE_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in overrides.items()
    }
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="snapsource-profile-")
    timings = []
    with serve_workers(data_dir, workers, env) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        for warm in photos_800(3, seed=99):
            client.post("/1688/search/image", params={"apiToken": token}, content=warm, headers={"content-type": "image/jpeg"})
        for data in photos:
            started = time.perf_counter()
            answer = client.post(
                "/1688/search/image", params={"apiToken": token}, content=data, headers={"content-type": "image/jpeg"}
            )
            timings.append(time.perf_counter() - started)
            assert answer.status_code == 200 and answer.json()["code"] == 200, answer.text[:300]
    return {
        "searches": len(timings),
        "workers": workers,
        "p50_ms": round(1000 * statistics.median(timings), 1),
        "p90_ms": round(1000 * statistics.quantiles(timings, n=10)[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        help="NAME=DATA_DIR[,setting=value...][,spinning]: an ingested data dir (e.g. snapsource eval's) and "
        "its settings; `spinning`: BLAS and faiss on every core, as before resources.one_thread_per_search. "
        "Repeat to compare, each photo in each in turn (`spinning` then applies to all: one process).",
    )
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--http", action="store_true", help="Also upload new 800 px photos to `snapsource serve` (the last config's)."
    )
    parser.add_argument("--workers", type=int, default=1, help="--http: the server's workers.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    configs = [Config.parse(text) for text in args.config]
    instrument(configs)
    sets = {"800 px (luma views)": photos_800(args.photos), "grocery shop photos (348 px)": grocery_photos(args.photos)}
    measure(configs, list(sets.values())[0][:5], 1)  # warm-up: sessions, caches, lazy imports
    results: dict[str, Any] = {"configs": args.config, "sets": {}}
    for name, photos in sets.items():
        results["sets"][name] = found = measure(configs, photos, args.runs)
        for config, result in found.items():
            print(
                f"{name}, {config}: p50 {result['p50_ms']} ms, p90 {result['p90_ms']} ms, mean {result['mean_ms']} ms ({result['searches']} searches)"
            )
            for stage, ms in result["stages_ms"].items():
                print(f"    {stage:34s} {ms:7.2f} ms")
    if args.http:
        last = configs[-1]
        result = http(last.data, photos_800(args.photos * args.runs, seed=1), last.overrides, args.workers)
        results["http"] = result
        print(f"over HTTP, 800 px uploads: p50 {result['p50_ms']} ms, p90 {result['p90_ms']} ms ({result['searches']} searches)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    for config in configs:
        config.resources.close()


if __name__ == "__main__":
    main()
