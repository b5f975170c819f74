"""`snapsource bench catalog`: the catalog API measured against a real `snapsource serve
--workers 2` on 127.0.0.1, on fresh data dirs (docs/catalog.md, "Measured").

1. Throughput: the same offers through `POST /catalog/offers` in batches of 500, and through
   `snapsource ingest` of the same JSON Lines file, each on a fresh data dir; offers/s, images/s
   and their ratio, per repeat and as medians.
2. Freshness: single-offer upserts, each answered by one worker; then searches with the offer's
   photo on every worker (connections pinned to a worker process) until it is found first: the
   seconds from the answer, per worker.
3. A large import job (`POST /catalog/imports`): progress over time, offers/s, total time; the
   search latency of both workers while it runs against idle (before and after), and single
   upserts sent meanwhile (they wait for a turn of the writer lock).

Images are synthetic but realistic and distinct: luma photos cropped, flipped, recoloured, marked
with a label or a patch and re-encoded at 640-1000 px, seeded (the same files for a seed, kept in
the work folder between runs), served by a loopback HTTP server that the server may fetch from
(`fetch_allow=127.0.0.1`). The job's offers share images (`job_images` distinct photos over
`job_offers` offers), so that a large job stays feasible on a small machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from PIL import Image

ADMIN_KEY = "bench-catalog-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
FIRST_ID = {"tp": 7_000_000_000, "fr": 7_100_000_000, "job": 7_200_000_000}
PARTS = ("throughput", "freshness", "job")
DURING_UPSERTS = 30  # single upserts sent while the job runs, at most
AFTER_UPSERTS = 10  # single upserts on the catalog the job left
FOUND_TIMEOUT = 60.0


@dataclasses.dataclass
class Options:
    luma: Path = Path("../shared/catalogs/luma")
    work: Path = Path("build/bench-catalog")
    output: Path | None = Path("build/bench-catalog.json")
    offers: int = 2000  # the throughput's offers (25% of them with a second photo)
    batch: int = 500
    repeats: int = 3
    freshness: int = 50
    job_offers: int = 100_000
    job_images: int = 0  # distinct photos of the job; 0: job_offers // 5
    searches: int = 200  # searches idle (before the job, and again after it)
    search_interval: float = 1.0  # seconds between searches while the job runs
    query_photos: int = 1000  # new photos for searches (each searched once)
    parts: tuple[str, ...] = PARTS
    workers: int = 2
    seed: int = 0

    @property
    def distinct_job_images(self) -> int:
        return self.job_images or max(1, self.job_offers // 5)


# images and offers -------------------------------------------------------------------------------


def reshot(img: Image.Image, rng: random.Random, smallest: float) -> Image.Image:
    """Another shot of a product photo, as a second shop would list it: cropped to at least
    `smallest` of each side, maybe flipped, recoloured and lit differently (seeded by `rng`)."""
    from PIL import Image, ImageEnhance

    w, h = img.size
    cw, ch = int(w * rng.uniform(smallest, 1.0)), int(h * rng.uniform(smallest, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
    return ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15))


def _synthetic(args: tuple[str, str, str]) -> None:
    """One catalog JPEG made from a luma photo: cropped, maybe flipped, recoloured, maybe marked
    with a price label or a colour patch, resized to 640-1000 px, quality 80-92."""
    from PIL import Image, ImageDraw

    source, target, seed = args
    rng = random.Random(seed)
    with Image.open(source) as opened:
        img = reshot(opened.convert("RGB"), rng, smallest=0.6)
    size = rng.randint(640, 1000)
    scale = size / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    if rng.random() < 0.5:  # a shop's price label in a corner
        bx, by = rng.choice((8, img.width - 130)), rng.choice((8, img.height - 40))
        draw.rectangle((bx, by, bx + 120, by + 32), fill=colour)
        draw.text((bx + 8, by + 10), f"SALE {rng.randint(5, 95)}% #{rng.randrange(10**6)}", fill=(255, 255, 255))
    else:  # a patch of colour (a sticker, a hand, a shadow)
        pw, ph = int(img.width * rng.uniform(0.05, 0.2)), int(img.height * rng.uniform(0.05, 0.2))
        px, py = rng.randint(0, img.width - pw), rng.randint(0, img.height - ph)
        draw.ellipse((px, py, px + pw, py + ph), fill=colour)
    tmp = target + ".tmp"
    img.save(tmp, "JPEG", quality=rng.randint(80, 92))
    os.replace(tmp, target)


def make_images(luma: Path, folder: Path, kind: str, count: int, seed: int) -> list[Path]:
    """`count` synthetic JPEGs in `folder` (those made before for this seed are kept)."""
    photos = sorted((luma / "images").glob("*.jpg"))
    if not photos:
        raise RuntimeError(f"no luma photos in {luma / 'images'}")
    folder = folder / f"{kind}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.jpg" for i in range(count)]
    missing = []
    for i, path in enumerate(paths):
        if not path.exists():
            text = f"{kind}:{seed}:{i}"
            missing.append((str(photos[random.Random(text).randrange(len(photos))]), str(path), text))
    if missing:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context) as pool:
            list(pool.map(_synthetic, missing, chunksize=32))
    return paths


def luma_rows(luma: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (luma / "catalog.jsonl").read_text().splitlines() if line.strip()]


def offers(rows: list[dict[str, Any]], kind: str, refs: list[list[str]], start: int = 0) -> list[dict[str, Any]]:
    """Offers in the catalog schema, luma's fields with new ids, titles and these photos."""
    out = []
    for n, photos in enumerate(refs, start=start):
        base = rows[n % len(rows)]
        item_id = FIRST_ID[kind] + n
        out.append(
            {
                **base,
                "item_id": item_id,
                "product_url": f"https://shop.example/offer/{item_id}.html",
                "title": f"{base['title']} {kind}-{n}",
                "img": photos[0],
                "images": photos,
            }
        )
    return out


def _url(base: str, root: Path, path: Path) -> str:
    return base + path.relative_to(root).as_posix()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# servers -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def photo_server(root: Path) -> Iterator[str]:
    """`root` over HTTP on loopback, in its own process (the GIL of this one stays out of the
    fetches); yields its base URL, ending in /."""
    port = _free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the photo server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(10)


def server_env() -> dict[str, str]:
    return {
        "SNAPSOURCE_ADMIN_KEY": ADMIN_KEY,
        "SNAPSOURCE_FETCH_ALLOW": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="snapsource-bench-catalog-"),
    }


def _children(pid: int) -> list[int]:
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A running `serve --workers N`: its URL, and which worker process holds a connection
    (found through /proc: the server's end of the connection is a socket of one worker)."""

    def __init__(self, url: str, process: subprocess.Popen, workers: int) -> None:
        self.url, self.process = url, process
        self.port = int(url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        while len(_children(process.pid)) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the server's workers did not start")
            time.sleep(0.2)
        self.pids = sorted(_children(process.pid))
        self.clients: dict[int, httpx.Client] = {}
        self.failures: list[tuple[float, str, str]] = []  # (when, request, answer) of each 5xx answer

    def worker_of(self, client_port: int) -> int | None:
        inode = None
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    if int(f[1].rsplit(":", 1)[1], 16) == self.port and int(f[2].rsplit(":", 1)[1], 16) == client_port:
                        inode = f[9]
                        break
            if inode:
                break
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for pid in self.pids:
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
        return None

    def call(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, float, int | None]:
        """One request: the answer (read), its seconds, and the worker that answered."""
        started = time.perf_counter()
        with client.stream(method, path, **kwargs) as response:
            port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
            response.read()
        seconds = time.perf_counter() - started
        if response.status_code >= 500:
            self.failures.append((time.perf_counter(), f"{method} {path}", f"HTTP {response.status_code}: {response.text[:200]}"))
        return response, seconds, self.worker_of(port)

    def pinned(self, pid: int) -> httpx.Client:
        """A client whose one keep-alive connection is served by worker `pid`."""
        client = self.clients.get(pid)
        if client is not None:
            try:
                _, _, holder = self.call(client, "GET", "/readyz")
            except httpx.TransportError:  # closed by the server (after a 500 it drops the connection)
                holder = None
            if holder == pid:
                return client
            client.close()
            del self.clients[pid]
        spare = []
        try:
            for attempt in range(400):
                client = httpx.Client(base_url=self.url, timeout=600, limits=httpx.Limits(max_connections=1))
                _, _, holder = self.call(client, "GET", "/readyz")
                if holder == pid:
                    self.clients[pid] = client
                    return client
                spare.append(client)  # held open, so that the next connection is a new one
                time.sleep(0.01 * (attempt % 5))
        finally:
            for other in spare:
                other.close()
        raise RuntimeError(f"no connection reached worker {pid}")

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()


@contextlib.contextmanager
def server(data: Path, workers: int, log: Path) -> Iterator[Server]:
    from snapsource.tools.loopback import serve_workers

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out, serve_workers(data, workers, server_env(), out, timeout=300) as (url, process):
        running = Server(url, process, workers)
        try:
            yield running
        finally:
            running.close()


def make_token(data: Path) -> str:
    """A search token, written before the server starts."""
    from snapsource.accounts.tokens import Tokens
    from snapsource.store.catalog import Catalog

    data.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(data)
    try:
        return Tokens(catalog).create(f"bench-catalog-{time.time_ns()}")
    finally:
        catalog.close()


# measuring ---------------------------------------------------------------------------------------


def stats(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"n": 0}
    ms = sorted(s * 1000 for s in seconds)

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]

    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(pct(0.9), 1),
        "p99_ms": round(pct(0.99), 1),
        "max_ms": round(ms[-1], 1),
    }


INGEST_LINE = re.compile(r"rows (\d+): added (\d+).*?images embedded (\d+).*?; ([\d.]+) s, ([\d,.]+) images/s", re.S)


def cli_ingest(catalog_file: Path, data: Path, log: Path) -> dict[str, Any]:
    """`snapsource ingest` of the file into a fresh data dir, as its own process."""
    shutil.rmtree(data, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "snapsource", "ingest", str(catalog_file), "--data", str(data)],
        env={**os.environ, **server_env()},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    with open(log, "a") as fh:
        fh.write(done.stderr)
    found = INGEST_LINE.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"snapsource ingest failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows, added, embedded, seconds = int(found[1]), int(found[2]), int(found[3]), float(found[4])
    return {
        "rows": rows,
        "added": added,
        "images_embedded": embedded,
        "ingest_s": seconds,  # the import itself, as the command reports it
        "wall_s": round(wall, 2),  # with the process's start (model load) and exit
        "offers_per_s": round(added / seconds, 1),
        "images_per_s": round(embedded / seconds, 1),
        "offers_per_s_wall": round(added / wall, 1),
    }


def api_upload(url: str, rows: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """The offers sent as batches one after another from one client, as a shop's sync would."""
    bodies = [json.dumps(rows[i : i + batch], ensure_ascii=False).encode() for i in range(0, len(rows), batch)]
    counts: dict[str, int] = {}
    embedded = 0
    batch_s = []
    with httpx.Client(base_url=url, timeout=1800) as client:
        started = time.perf_counter()
        for body in bodies:
            began = time.perf_counter()
            answer = client.post("/catalog/offers", content=body, headers={**AUTH, "Content-Type": "application/json"})
            batch_s.append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise RuntimeError(f"POST /catalog/offers: HTTP {answer.status_code}: {answer.text[:500]}")
            data = answer.json()["data"]
            embedded += data["images_embedded"]
            for name, value in data["counts"].items():
                counts[name] = counts.get(name, 0) + value
        seconds = time.perf_counter() - started
    return {
        "batches": len(bodies),
        "batch_size": batch,
        "counts": counts,
        "images_embedded": embedded,
        "seconds": round(seconds, 2),
        "batch_s": [round(s, 2) for s in batch_s],
        "offers_per_s": round(counts.get("added", 0) / seconds, 1),
        "images_per_s": round(embedded / seconds, 1),
    }


def found_first(server: Server, client: httpx.Client, token: str, img: str) -> tuple[int | None, float, int | None]:
    params = {"apiToken": token, "img_url": img, "page_size": 3}
    response, seconds, pid = server.call(client, "GET", "/1688/search/image", params=params)
    body = response.json()
    items = body["data"]["items"] if body.get("code") == 200 else []
    return (items[0]["item_id"] if items else None), seconds, pid


def upsert_one(server: Server, client: httpx.Client, offer: dict[str, Any]) -> tuple[float, int | None]:
    response, seconds, pid = server.call(client, "POST", "/catalog/offers", json=[offer], headers=AUTH)
    data = response.json().get("data") or {}
    if response.status_code != 200 or data.get("counts", {}).get("added") != 1 or data.get("images_embedded") != 1:
        raise RuntimeError(f"a single upsert was not added: HTTP {response.status_code}: {response.text[:500]}")
    return seconds, pid


def freshness(server: Server, token: str, fresh: list[dict[str, Any]], pause: float = 0.2) -> dict[str, Any]:
    """Each offer upserted through one worker (in turn), then searched with its photo on every
    worker, each worker on its own thread, until it is found first there."""
    pids = server.pids
    visible: dict[int, list[float]] = {pid: [] for pid in pids}
    same: list[float] = []
    other: list[float] = []
    ack: list[float] = []
    tries: list[int] = []
    failures = len(server.failures)
    for n, offer in enumerate(fresh):
        writer = pids[n % len(pids)]
        clients = {pid: server.pinned(pid) for pid in pids}
        seconds, holder = upsert_one(server, clients[writer], offer)
        acked = time.perf_counter()
        ack.append(seconds)
        results: dict[int, tuple[float, int]] = {}

        def watch(pid: int, client: httpx.Client, offer: dict[str, Any], acked: float, results: dict) -> None:
            searches = 0
            while time.perf_counter() - acked < FOUND_TIMEOUT:
                first, _, _ = found_first(server, client, token, offer["img"])
                searches += 1
                if first == offer["item_id"]:
                    results[pid] = (time.perf_counter() - acked, searches)
                    return

        threads = [threading.Thread(target=watch, args=(pid, clients[pid], offer, acked, results)) for pid in pids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for pid in pids:
            if pid not in results:
                raise RuntimeError(f"offer {offer['item_id']} not found first on worker {pid} within {FOUND_TIMEOUT} s")
            found_s, searches = results[pid]
            visible[pid].append(found_s)
            (same if pid == (holder or writer) else other).append(found_s)
            tries.append(searches)
        time.sleep(pause)
    return {
        "upserts": len(fresh),
        "workers": pids,
        "ack": stats(ack),
        "visible_writing_worker": stats(same),
        "visible_other_worker": stats(other),
        "visible_by_worker": {str(pid): stats(v) for pid, v in visible.items()},
        "searches_until_found": {"max": max(tries), "mean": round(statistics.mean(tries), 2)},
        "server_errors": len(server.failures) - failures,
    }


class Searcher:
    """Searches alternating between the workers and between a new photo (fetched, decoded and
    embedded by the server) and a catalog photo (its stored vector), each timed and attributed to
    the worker that answered."""

    def __init__(self, server: Server, token: str, new_urls: list[str], known_paths: list[str]) -> None:
        self.server, self.token = server, token
        self.new = iter(new_urls)
        self.known = known_paths
        self.turn = 0
        self.samples: list[tuple[float, str, int | None, float]] = []  # (when, kind, worker, seconds)

    def one(self) -> None:
        pids = self.server.pids
        pid = pids[self.turn % len(pids)]
        kind = ("new", "known")[(self.turn // len(pids)) % 2]
        self.turn += 1
        img = next(self.new, None) if kind == "new" else None
        if img is None:
            kind, img = "known", self.known[self.turn % len(self.known)]
        params = {"apiToken": self.token, "img_url": img, "page_size": 20}
        try:
            response, seconds, holder = self.server.call(self.server.pinned(pid), "GET", "/1688/search/image", params=params)
        except httpx.TransportError as exc:
            self.server.failures.append((time.perf_counter(), "GET /1688/search/image", f"{type(exc).__name__}: {exc}"))
            return
        if response.status_code == 200:  # the others are counted by the server's `failures`
            self.samples.append((time.perf_counter(), kind, holder, seconds))

    def summary(self, since: float = 0.0, until: float = float("inf"), busy: int | None = None) -> dict[str, Any]:
        picked = [s for s in self.samples if since <= s[0] <= until]
        failed = [f for f in self.server.failures if since <= f[0] <= until and "search" in f[1]]
        out: dict[str, Any] = {"all": stats([s[3] for s in picked]), "failed": len(failed)}
        for kind in ("new", "known"):
            out[kind] = stats([s[3] for s in picked if s[1] == kind])
        if busy is not None:
            for label, test in (("job_worker", lambda p: p == busy), ("other_worker", lambda p: p != busy)):
                for kind in ("new", "known"):
                    out[f"{label}_{kind}"] = stats([s[3] for s in picked if s[1] == kind and test(s[2])])
        return out


def _job_wait(client: httpx.Client, job_id: str, every: float, on_poll: Callable[[dict], None]) -> dict[str, Any]:
    while True:
        answer = client.get(f"/catalog/imports/{job_id}", headers=AUTH)
        job = answer.json()["data"]
        on_poll(job)
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(every)


def _iso_s(later: str, earlier: str) -> float | None:
    try:
        return (dt.datetime.fromisoformat(later) - dt.datetime.fromisoformat(earlier)).total_seconds()
    except (TypeError, ValueError):
        return None


def large_job(
    server: Server,
    token: str,
    job_file: Path,
    job_url: str,
    searcher: Searcher,
    single: list[dict[str, Any]],
    opts: Options,
) -> dict[str, Any]:
    """Idle searches, then the job (upload, or URL when larger than an upload may be) with
    searches and single upserts meanwhile, then idle searches again and single upserts."""
    report: dict[str, Any] = {}
    began = time.perf_counter()
    for _ in range(opts.searches):
        searcher.one()
    idle_before = (began, time.perf_counter())

    cpu_before = {pid: _cpu_seconds(pid) for pid in server.pids}
    size = job_file.stat().st_size
    upload = size <= 60_000_000  # catalog_max_bytes is 64 MB
    series: list[tuple[float, int, int, str]] = []
    upserts: list[tuple[float, float, int | None]] = []
    stop = threading.Event()
    problems: list[str] = []

    def meanwhile() -> None:
        """Searches every search_interval s, and a single upsert every 20 s, until the job ends."""
        pending = iter(single[:DURING_UPSERTS])
        last_upsert = time.perf_counter()
        try:
            while not stop.wait(opts.search_interval):
                searcher.one()
                if time.perf_counter() - last_upsert >= 20:
                    offer = next(pending, None)
                    if offer is not None:
                        pid = server.pids[len(upserts) % len(server.pids)]
                        try:
                            seconds, holder = upsert_one(server, server.pinned(pid), offer)
                        except (RuntimeError, httpx.TransportError) as exc:  # a 503 (no turn of the writer lock) is a result
                            problems.append(str(exc)[:300])
                        else:
                            upserts.append((time.perf_counter() - started, seconds, holder))
                    last_upsert = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - reported with the job's results
            problems.append(f"{type(exc).__name__}: {exc}")

    with httpx.Client(base_url=server.url, timeout=1800) as client:
        started = time.perf_counter()
        submitted_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if upload:
            with open(job_file, "rb") as fh:
                answer = client.post(
                    "/catalog/imports", files={"file": (job_file.name, fh)}, data={"format": "jsonl"}, headers=AUTH
                )
        else:
            answer = client.post("/catalog/imports", json={"url": job_url, "format": "jsonl"}, headers=AUTH)
        submitted = time.perf_counter() - started
        if answer.status_code != 200:
            raise RuntimeError(f"POST /catalog/imports: HTTP {answer.status_code}: {answer.text[:500]}")
        job_id = answer.json()["data"]["id"]
        thread = threading.Thread(target=meanwhile, daemon=True)
        thread.start()

        def polled(job: dict) -> None:
            series.append((time.perf_counter() - started, job["rows_done"], job["counts"]["images_embedded"], job["status"]))

        job = _job_wait(client, job_id, 1.0, polled)
        total = time.perf_counter() - started
        done_seen_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        stop.set()
        thread.join()
    during = (started, started + total)
    cpu = {pid: _cpu_seconds(pid) - cpu_before[pid] for pid in server.pids}
    busy = max(cpu, key=lambda pid: cpu[pid])

    after_start = time.perf_counter()
    for _ in range(opts.searches):
        searcher.one()
    idle_after = (after_start, time.perf_counter())
    after_ack = [
        upsert_one(server, server.pinned(server.pids[n % 2]), offer)[0] for n, offer in enumerate(single[DURING_UPSERTS:])
    ]

    rows = job["rows_total"] or opts.job_offers
    counts = job["counts"]
    running = [s for s in series if s[3] == "running"]
    report |= {
        "job_offers": opts.job_offers,
        "distinct_images": opts.distinct_job_images,
        "offers_per_image": round(opts.job_offers / opts.distinct_job_images, 2),
        "file_mb": round(size / 1e6, 1),
        "sent_as": "upload" if upload else "url",
        "submit_s": round(submitted, 2),
        "status": job["status"],
        "error": job["error"],
        "counts": counts,
        "total_s": round(total, 1),
        "server_s": _iso_s(job["updated_at"], job["created_at"]),  # the job's own times (to the second)
        "clock": {
            "submitted": submitted_at,
            "created": job["created_at"],
            "finished": job["updated_at"],
            "seen_done": done_seen_at,
        },
        "first_progress_s": round(running[0][0], 1) if running else None,
        "offers_per_s": round(counts["added"] / total, 1),
        "images_per_s": round(counts["images_embedded"] / total, 1),
        "rates_by_tenth": _tenths(series, rows),
        "progress": _thin(series, 150),
        "worker_cpu_s": {str(pid): round(s, 1) for pid, s in cpu.items()},
        "job_worker": busy,
        "problems_meanwhile": problems,
        "server_errors": [f"{round(when - started, 1)} s: {what}: {answer}" for when, what, answer in server.failures[-20:]],
    }
    report["searches"] = {
        "idle_before": searcher.summary(*idle_before, busy=busy),
        "during_job": searcher.summary(*during, busy=busy),
        "idle_after": searcher.summary(*idle_after, busy=busy),
    }
    report["single_upserts"] = {
        "during_job": stats([u[1] for u in upserts]),
        "during_job_each": [[round(t, 1), round(s, 2)] for t, s, _ in upserts],
        "after_job": stats(after_ack),
    }
    return report


def _tenths(series: list[tuple[float, int, int, str]], rows: int) -> list[dict[str, float]]:
    """Offers/s and images/s over each tenth of the rows: does the rate hold as the catalog grows?"""
    out = []
    marks = [(0.0, 0, 0)] + [(t, r, i) for t, r, i, _ in series]
    for tenth in range(1, 11):
        goal = rows * tenth / 10
        reached = next((m for m in marks if m[1] >= goal), None)
        start_goal = rows * (tenth - 1) / 10
        began = next((m for m in marks if m[1] >= start_goal), None)
        if reached is None or began is None or reached[0] <= began[0]:
            continue
        seconds = reached[0] - began[0]
        out.append(
            {
                "tenth": tenth,
                "seconds": round(seconds, 1),
                "offers_per_s": round((reached[1] - began[1]) / seconds, 1),
                "images_per_s": round((reached[2] - began[2]) / seconds, 1),
            }
        )
    return out


def _thin(series: list[tuple[float, int, int, str]], most: int) -> list[list[Any]]:
    step = max(1, len(series) // most)
    kept = series[::step] + ([series[-1]] if series and (len(series) - 1) % step else [])
    return [[round(t, 1), rows, images, status] for t, rows, images, status in kept]


# running -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    memory = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        memory = int(next(line for line in fh if line.startswith("MemTotal")).split()[1]) / 2**20
    versions = {}
    for name in ("onnxruntime", "faiss", "numpy", "PIL", "uvicorn"):
        with contextlib.suppress(Exception):
            versions[name] = __import__(name).__version__
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def run(opts: Options, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every part asked for; the JSON written to `opts.output` keeps parts of earlier runs that
    were not run again."""
    work = opts.work.resolve()
    images = work / "images"
    rows = luma_rows(opts.luma)
    started = time.perf_counter()
    say(f"making synthetic photos in {images}")
    # the throughput's offers: one photo each, a quarter with a second one
    layout = random.Random(f"tp-layout:{opts.seed}")
    per_offer = [2 if layout.random() < 0.25 else 1 for _ in range(opts.offers)]
    tp_photos = make_images(opts.luma, images, "tp", sum(per_offer), opts.seed)
    fr_photos = make_images(opts.luma, images, "fr", opts.freshness + DURING_UPSERTS + AFTER_UPSERTS, opts.seed)
    query_photos = make_images(opts.luma, images, "q", opts.query_photos, opts.seed) if "job" in opts.parts else []
    job_photos = make_images(opts.luma, images, "job", opts.distinct_job_images, opts.seed) if "job" in opts.parts else []
    report: dict[str, Any] = {"machine": machine(), "options": {k: str(v) for k, v in dataclasses.asdict(opts).items()}}
    report["images_s"] = round(time.perf_counter() - started, 1)

    with photo_server(work) as base:
        position = 0
        tp_refs = []
        for count in per_offer:
            tp_refs.append([_url(base, work, p) for p in tp_photos[position : position + count]])
            position += count
        tp_offers = offers(rows, "tp", tp_refs)
        tp_file = work / "throughput.jsonl"
        _write_jsonl(tp_file, tp_offers)
        fr_offers = offers(rows, "fr", [[_url(base, work, p)] for p in fr_photos])
        log = work / "serve.log"

        throughput: dict[str, Any] = {"offers": opts.offers, "images": len(tp_photos), "runs": []}
        if "throughput" in opts.parts:  # not measured: the page cache warmed (the model, the code, the photos)
            warm = work / "warm.jsonl"
            _write_jsonl(warm, tp_offers[:32])
            cli_ingest(warm, work / "data-warm", work / "ingest.log")
            shutil.rmtree(work / "data-warm", ignore_errors=True)
        repeats = opts.repeats if "throughput" in opts.parts else 1
        with contextlib.ExitStack() as last:
            running: Server | None = None
            token = ""
            for repeat in range(repeats):
                pair: dict[str, Any] = {}
                if "throughput" in opts.parts:
                    say(f"throughput {repeat + 1}/{repeats}: snapsource ingest of {opts.offers:,} offers")
                    pair["cli"] = cli_ingest(tp_file, work / "data-cli", work / "ingest.log")
                    shutil.rmtree(work / "data-cli", ignore_errors=True)
                data = work / "data-api"
                shutil.rmtree(data, ignore_errors=True)
                token = make_token(data)
                say(f"throughput {repeat + 1}/{repeats}: POST /catalog/offers of the same offers, batches of {opts.batch}")
                if repeat == repeats - 1:  # the last server stays up for the other parts
                    running = last.enter_context(server(data, opts.workers, log))
                    pair["api"] = api_upload(running.url, tp_offers, opts.batch)
                else:
                    with server(data, opts.workers, log) as once:
                        pair["api"] = api_upload(once.url, tp_offers, opts.batch)
                if "cli" in pair:
                    pair["ratio"] = round(pair["api"]["offers_per_s"] / pair["cli"]["offers_per_s"], 3)
                    pair["ratio_wall"] = round(pair["api"]["offers_per_s"] / pair["cli"]["offers_per_s_wall"], 3)
                throughput["runs"].append(pair)
                say(_pair_line(pair))
            if "throughput" in opts.parts:
                runs = throughput["runs"]
                throughput["median"] = {
                    "cli_offers_per_s": round(statistics.median(r["cli"]["offers_per_s"] for r in runs), 3),
                    "cli_images_per_s": round(statistics.median(r["cli"]["images_per_s"] for r in runs), 3),
                    "cli_offers_per_s_wall": round(statistics.median(r["cli"]["offers_per_s_wall"] for r in runs), 3),
                    "api_offers_per_s": round(statistics.median(r["api"]["offers_per_s"] for r in runs), 3),
                    "api_images_per_s": round(statistics.median(r["api"]["images_per_s"] for r in runs), 3),
                    "ratio": round(statistics.median(r["ratio"] for r in runs), 3),
                    "ratio_wall": round(statistics.median(r["ratio_wall"] for r in runs), 3),
                }
                report["throughput"] = throughput
            else:
                report["seed_catalog"] = throughput["runs"][0]["api"]
            assert running is not None
            say(f"workers {running.pids}")

            if "freshness" in opts.parts:
                say(f"freshness: {opts.freshness} single-offer upserts, each searched on every worker")
                report["freshness"] = freshness(running, token, fr_offers[: opts.freshness])
                say(_freshness_line(report["freshness"]))

            if "job" in opts.parts:
                job_rows = _job_offers(rows, base, work, job_photos, opts)
                job_file = work / "job.jsonl"
                _write_jsonl(job_file, job_rows)
                del job_rows
                known = [f"/img/{_sha(p)}.jpg" for p in tp_photos[:500]]
                searcher = Searcher(running, token, [_url(base, work, p) for p in query_photos], known)
                say(f"import job: {opts.job_offers:,} offers over {opts.distinct_job_images:,} photos")
                report["job"] = large_job(
                    running, token, job_file, _url(base, work, job_file), searcher, fr_offers[opts.freshness :], opts
                )
                say(_job_line(report["job"]))
    report["total_s"] = round(time.perf_counter() - started, 1)
    report["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if opts.output:
        report = _merged(opts.output, report, opts.parts)
        opts.output.parent.mkdir(parents=True, exist_ok=True)
        opts.output.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report


def _job_offers(rows: list[dict[str, Any]], base: str, work: Path, photos: list[Path], opts: Options) -> list[dict[str, Any]]:
    """Each photo shown by job_offers / job_images offers, spread over the file (seeded)."""
    use = [n % len(photos) for n in range(opts.job_offers)]
    random.Random(f"job-layout:{opts.seed}").shuffle(use)
    urls = [_url(base, work, p) for p in photos]
    return offers(rows, "job", [[urls[i]] for i in use])


def _merged(output: Path, report: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    """The parts run now, over those of an earlier run kept in the file (each with its run's
    machine line and options)."""
    try:
        earlier = json.loads(output.read_text())
    except (FileNotFoundError, ValueError):
        return report
    keys = ("machine", "options", "finished_at", "total_s")
    runs = earlier.get("runs") or {part: {k: earlier.get(k) for k in keys} for part in PARTS if part in earlier}
    merged = {part: earlier[part] for part in PARTS if part in earlier and part not in parts}
    for part in PARTS:
        if part in report:
            merged[part] = report[part]
            runs[part] = {k: report[k] for k in keys}
    return {"machine": report["machine"], **merged, "runs": runs}


def _pair_line(pair: dict[str, Any]) -> str:
    api = pair["api"]
    line = f"  API {api['offers_per_s']:.1f} offers/s, {api['images_per_s']:.1f} images/s ({api['seconds']:.1f} s)"
    if "cli" in pair:
        cli = pair["cli"]
        line += (
            f"; CLI {cli['offers_per_s']:.1f} offers/s, {cli['images_per_s']:.1f} images/s ({cli['ingest_s']:.1f} s, "
            f"wall {cli['wall_s']:.1f} s); API/CLI {pair['ratio']:.2f} (vs wall {pair['ratio_wall']:.2f})"
        )
    return line


def _freshness_line(f: dict[str, Any]) -> str:
    same, other, ack = f["visible_writing_worker"], f["visible_other_worker"], f["ack"]
    return (
        f"  upsert answered p50 {ack['p50_ms']} ms p99 {ack['p99_ms']} ms; found first after the answer: "
        f"writing worker p50 {same['p50_ms']} ms p99 {same['p99_ms']} ms, other worker p50 {other['p50_ms']} ms "
        f"p99 {other['p99_ms']} ms"
    )


def _job_line(j: dict[str, Any]) -> str:
    s = j["searches"]
    return (
        f"  {j['status']} in {j['total_s']} s: {j['offers_per_s']} offers/s, {j['images_per_s']} images/s; "
        f"search p50 idle {s['idle_before']['all'].get('p50_ms')} ms, during {s['during_job']['all'].get('p50_ms')} ms, "
        f"after {s['idle_after']['all'].get('p50_ms')} ms"
    )


def table(report: dict[str, Any]) -> str:
    """The report as text lines."""
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}, load {m['load_average']}"]
    t = report.get("throughput")
    if t:
        m = t["median"]
        lines.append(
            f"throughput, {t['offers']:,} offers / {t['images']:,} images, medians of {len(t['runs'])}: "
            f"API {m['api_offers_per_s']} offers/s ({m['api_images_per_s']} images/s), CLI {m['cli_offers_per_s']} "
            f"offers/s ({m['cli_images_per_s']} images/s); API/CLI {m['ratio']} (vs the CLI's wall time {m['ratio_wall']})"
        )
    if report.get("freshness"):
        lines.append("freshness:" + _freshness_line(report["freshness"]))
    if report.get("job"):
        lines.append("import job:" + _job_line(report["job"]))
    return "\n".join(lines)
