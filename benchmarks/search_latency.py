"""Latency of GET /1688/search/image over loopback HTTP, on an ingested data dir.

Starts the real server (uvicorn, one worker) in this process, sends N sequential searches with
the catalog's own images (pages, sorts and filters mixed) and prints p50/p90/p99 in ms.

    python benchmarks/search_latency.py --data data [--n 300]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from pathlib import Path

import httpx

from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.resources import Resources
from snapsource.tools.loopback import serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    resources = Resources.open(Settings.load(data_dir=args.data))
    token = resources.tokens.create("bench-latency")
    images = [f"/img/{sha}.{ext}" for sha, ext in resources.catalog.db.execute("SELECT sha256, ext FROM images")]
    rng = random.Random(0)
    variants = itertools.cycle(
        [
            {},
            {"sort": "sales"},
            {"sort": "price_up", "page": "2"},
            {"is_factory": "true"},
            {"price_start": "20", "price_end": "120", "sort": "price_down"},
            {"page": "3", "page_size": "10"},
        ]
    )
    timings = []
    with serve(create_app(resources=resources)) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(args.n):
            params = {"apiToken": token, "img_url": rng.choice(images), **next(variants)}
            started = time.perf_counter()
            response = client.get("/1688/search/image", params=params)
            timings.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200, response.text
    resources.tokens.revoke("bench-latency")
    q = statistics.quantiles(timings, n=100)
    print(
        f"{args.n} searches over {len(images)} images: p50 {statistics.median(timings):.1f} ms, "
        f"p90 {q[89]:.1f} ms, p99 {q[98]:.1f} ms"
    )


if __name__ == "__main__":
    main()
