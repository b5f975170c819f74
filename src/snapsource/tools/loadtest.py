"""A bounded load on a running server, from one asyncio loop: `make load` (60 s), the tests (10 s).

Each of `concurrency` workers sends requests back to back until the time is up, mixing what users
do: searches with catalog photos (random sorts, filters and pages), new photos uploaded in one step
(each slightly different, so each is decoded and analysed), later pages of those uploads, and calls
with a token limited to one request per second, whose 503s are deliberate. Anything else that is
not a 200 is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import random
import statistics
import time
from pathlib import Path

import httpx
from PIL import Image

SORTS = ("default", "sales", "price_up", "price_down")
FILTERS: tuple[dict[str, str], ...] = (
    {},
    {"is_factory": "true"},
    {"price_start": "20", "price_end": "120"},
    {"free_shipping": "true"},
)


@dataclasses.dataclass
class Report:
    seconds: float
    latencies: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    def add(self, kind: str, status: int, seconds: float, expected: tuple[int, ...]) -> None:
        self.latencies.setdefault(kind, []).append(seconds * 1000)
        counts = self.statuses.setdefault(kind, {})
        counts[status] = counts.get(status, 0) + 1
        if status not in expected:
            self.errors.append(f"{kind}: HTTP {status}")

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def table(self) -> str:
        lines = [f"{'kind':<14} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses"]
        for kind, values in sorted(self.latencies.items()):
            p99 = statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]
            lines.append(f"{kind:<14} {len(values):>8} {statistics.median(values):>8.1f} {p99:>8.1f}  {self.statuses[kind]}")
        everything = [v for values in self.latencies.values() for v in values]
        p99 = statistics.quantiles(everything, n=100)[98] if len(everything) > 1 else 0.0
        lines.append(
            f"{'all':<14} {self.requests:>8} {statistics.median(everything):>8.1f} {p99:>8.1f}  "
            f"{self.requests / self.seconds:.1f} requests/s, {len(self.errors)} errors"
        )
        return "\n".join(lines)


def _new_photo(base: Image.Image, rng: random.Random) -> bytes:
    """The same photo with a few random pixels and a random JPEG quality: new bytes, new hash."""
    img = base.copy()
    for _ in range(5):
        img.putpixel((rng.randrange(img.width), rng.randrange(img.height)), (rng.randrange(256),) * 3)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(80, 95))
    return buf.getvalue()


async def drive(
    url: str,
    token: str,
    limited_token: str,
    img_urls: list[str],
    photos: list[Path],
    seconds: float,
    concurrency: int,
    seed: int = 0,
) -> Report:
    rng = random.Random(seed)
    bases = [Image.open(p).convert("RGB") for p in photos]
    uploaded: list[str] = []
    report = Report(seconds)
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def one(kind: str, method: str, expected: tuple[int, ...], **kwargs) -> httpx.Response | None:
            started = time.perf_counter()
            try:
                response = await http.request(method, "/1688/search/image", **kwargs)
            except httpx.HTTPError as exc:
                report.errors.append(f"{kind}: {type(exc).__name__}")
                return None
            report.add(kind, response.status_code, time.perf_counter() - started, expected)
            return response

        async def worker() -> None:
            while time.monotonic() < deadline:
                roll = rng.random()
                common = {"sort": rng.choice(SORTS), "page_size": "10", **rng.choice(FILTERS)}
                if roll < 0.4:
                    params = {"apiToken": token, "img_url": rng.choice(img_urls), "page": str(rng.randint(1, 3)), **common}
                    await one("known image", "GET", (200,), params=params)
                elif roll < 0.65:
                    photo = _new_photo(rng.choice(bases), rng)
                    response = await one(
                        "new image", "POST", (200,), params={"apiToken": token, **common}, files={"file": ("p.jpg", photo)}
                    )
                    if response is not None and response.status_code == 200:
                        uploaded.append(response.json()["data"]["image_url"])
                elif roll < 0.85 and uploaded:
                    params = {"apiToken": token, "img_url": rng.choice(uploaded), "page": "2", **common}
                    await one("later page", "GET", (200,), params=params)
                else:
                    params = {"apiToken": limited_token, "img_url": rng.choice(img_urls)}
                    await one("limited token", "GET", (200, 503), params=params)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return report


def main() -> None:
    """`make load`: serve --workers 2 on the data dir, then drive it."""
    import tempfile

    from snapsource.config import Settings
    from snapsource.resources import Resources
    from snapsource.tools.loopback import serve_workers

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--log", type=Path, default=Path("build/load-serve.log"), help="The server's output.")
    args = parser.parse_args()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    resources = Resources.open(Settings.load(data_dir=args.data))
    token = resources.tokens.create("load")
    limited = resources.tokens.create("load-limited", qps=1)
    img_urls = [f"/img/{i.name}" for i in resources.catalog.all_images()]
    resources.close()
    env = {"PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="snapsource-load-")}
    try:
        with open(args.log, "wb") as log, serve_workers(args.data, 2, env, log) as (url, _):
            photos = sorted((args.shared / "eval" / "grocery" / "queries").glob("*.jpg"))[:20]
            report = asyncio.run(drive(url, token, limited, img_urls, photos, args.seconds, args.concurrency))
    finally:
        cleanup = Resources.open(Settings.load(data_dir=args.data))
        cleanup.tokens.revoke("load")
        cleanup.tokens.revoke("load-limited")
        cleanup.close()
    print(f"{args.seconds:g} s at concurrency {args.concurrency} against serve --workers 2")
    print(report.table())
    for error in report.errors[:10]:
        print("error:", error)
    if report.errors:
        print(f"the server's output is in {args.log}")


if __name__ == "__main__":
    main()
