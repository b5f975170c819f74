"""Page 1 vs page 2 of a search with the user's own photo, over loopback HTTP.

Page 1 pays for getting the photo in (fetching a URL, or receiving an upload), decoding and
embedding it; page 2 names the same photo and should cost no more than a catalog-image search,
because the vector is kept by content hash. The catalog is the luma demo catalog plus the
grocery products' catalog photos; the queries are the grocery shop photos, served by a local
HTTP server (allowed through `fetch_allow`), so each page 1 is a real fetch.

    python benchmarks/page_latency.py [--data build/bench-pages] [--n 40]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import statistics
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.ingest.pipeline import ingest
from snapsource.resources import Resources
from snapsource.tools.evaluate import grocery_gallery
from snapsource.tools.loopback import serve

SHARED = Path(__file__).resolve().parents[2] / "shared"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def timed(call) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    elapsed = 1000 * (time.perf_counter() - started)
    assert response.status_code == 200, response.text
    return elapsed, response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("build/bench-pages"))
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--n", type=int, default=40, help="shop photos per way in (URL, upload)")
    args = parser.parse_args()

    settings = Settings.load(data_dir=args.data, fetch_allow="127.0.0.0/8")
    resources = Resources.open(settings)
    ingest(resources, args.shared / "catalogs" / "luma" / "catalog.jsonl")
    gallery = args.data / "grocery-gallery.jsonl"
    gallery.write_text("".join(json.dumps(o) + "\n" for o in grocery_gallery(args.shared / "eval" / "grocery" / "manifest.csv")))
    ingest(resources, gallery)
    # fresh query photos each run: forget earlier uploads
    resources.uploads.close()
    for path in (args.data / "uploads").rglob("*"):
        if path.is_file():
            path.unlink()
    resources = Resources.open(settings)
    token = resources.tokens.create("bench-pages")

    queries = sorted((args.shared / "eval" / "grocery" / "queries").glob("*.jpg"))[: 2 * args.n]
    photos = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(queries[0].parent)))
    threading.Thread(target=photos.serve_forever, daemon=True).start()
    photo_base = f"http://127.0.0.1:{photos.server_address[1]}/"

    ways = ("url", "upload", "12MP upload")
    rows: dict[str, list[float]] = {f"{way} page {n}": [] for way in ways for n in (1, 2)}
    with serve(create_app(resources=resources)) as url, httpx.Client(base_url=url, params={"apiToken": token}, timeout=60) as api:
        for path in queries[: args.n]:
            params = {"img_url": photo_base + path.name, "page_size": 10}
            ms, _ = timed(lambda: api.get("/1688/search/image", params=params))
            rows["url page 1"].append(ms)
            ms, _ = timed(lambda: api.get("/1688/search/image", params={**params, "page": 2}))
            rows["url page 2"].append(ms)
        for path in queries[args.n :]:
            data = path.read_bytes()
            ms, first = timed(lambda: api.post("/1688/search/image", params={"page_size": 10}, files={"file": (path.name, data)}))
            rows["upload page 1"].append(ms)
            image_url = first.json()["data"]["image_url"]
            ms, _ = timed(lambda: api.get("/1688/search/image", params={"img_url": image_url, "page_size": 10, "page": 2}))
            rows["upload page 2"].append(ms)
        for path in queries[: max(2, args.n // 4)]:  # a phone camera's 4000x3000 JPEG
            buf = io.BytesIO()
            Image.open(path).resize((4000, 3000), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
            data = buf.getvalue()
            ms, first = timed(lambda: api.post("/1688/search/image", params={"page_size": 10}, files={"file": ("big.jpg", data)}))
            rows["12MP upload page 1"].append(ms)
            image_url = first.json()["data"]["image_url"]
            ms, _ = timed(lambda: api.get("/1688/search/image", params={"img_url": image_url, "page_size": 10, "page": 2}))
            rows["12MP upload page 2"].append(ms)
    photos.shutdown()
    resources.tokens.revoke("bench-pages")

    print(f"{'way in, page':<20} {'n':>4} {'p50 ms':>8} {'p90 ms':>8}")
    for name, values in rows.items():
        p90 = statistics.quantiles(values, n=10)[8] if len(values) > 1 else values[0]
        print(f"{name:<20} {len(values):>4} {statistics.median(values):>8.1f} {p90:>8.1f}")
    for way in ways:
        ratio = statistics.median(rows[f"{way} page 1"]) / statistics.median(rows[f"{way} page 2"])
        print(f"{way}: page 1 / page 2 = {ratio:.1f}x")


if __name__ == "__main__":
    main()
