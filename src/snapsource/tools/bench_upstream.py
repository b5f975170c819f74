"""`snapsource bench upstream`: snapsource in `fallback` mode in front of the TMAPI stand-in, both
on loopback, starting from an empty catalog (docs/upstream.md, "How the local share grows").

1. The stand-in (tools/tmapi_standin.py): all 214 luma offers, each item's photo its offer's main
   photo, answering a search in `latency` seconds (TMAPI: about 2.5 s).
2. `snapsource serve` (`workers`, 1) on a fresh, empty data dir, with the stand-in as its upstream.
3. Query photos, seeded: half of them distinct luma photos drawn from every photo of catalog.jsonl's
   offers (main photos and other views: the upstream indexes main photos only), the other half a
   near-duplicate of each (bench_catalog.reshot: another shot of the same product, cropped,
   maybe flipped, recoloured). An offer's product is its main photo file: relisted twins (offers
   with the same main photo) are one product, and any of their items is the right answer.
4. A replay: `searches` draws from the photos with repeats (Zipf-like popularity, weight
   1/rank^`zipf`), each a `POST /1688/search/image` upload of the photo (page_size 20), sent by
   `clients` threads in draw order.
5. The report: answers by `data.source`; upstream calls made (the stand-in's counters against
   `GET /admin/upstream`'s totals) and saved; latency by source; the right product first and on
   page 1 by source; for each product, how many later searches of it until one is answered
   locally with it on page 1, after its item first arrived in an upstream answer; the local share
   by tenth of the replay.

`ablation`: the same replay (a lower latency, so that it fits) on a fresh data dir for each
`upstream_min_similarity` in `rules` (2.0: only a `same` match on page 1 makes the local answer
good enough); one row each. The report's JSON keeps the replay and the ablation of earlier runs
that were not run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from snapsource.tools.bench_catalog import machine, reshot, stats

ADMIN_KEY = "bench-upstream-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
STANDIN_TOKEN = "tm_bench_upstream"
SOURCES = ("local", "upstream", "upstream_cache")
SAME_ONLY = 2.0  # an upstream_min_similarity no page reaches: only a `same` match is good enough
PARTS = ("replay", "ablation")


@dataclasses.dataclass
class Options:
    luma: Path = Path("../shared/catalogs/luma")
    work: Path = Path("build/bench-upstream")
    output: Path | None = Path("build/bench-upstream.json")
    searches: int = 1000
    photos: int = 300  # half distinct luma photos, half a near-duplicate of each
    latency: float = 2.5  # seconds the stand-in takes to answer a search
    clients: int = 4
    workers: int = 1
    min_similarity: float = 0.7
    price_per_call: float = 0.01
    page_size: int = 20
    zipf: float = 0.8  # popularity: weight 1/rank^zipf
    ablation: bool = False  # run the ablation instead of the replay
    ablation_latency: float = 0.3
    rules: tuple[float, ...] = (0.5, 0.6, 0.7, SAME_ONLY)
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Photo:
    name: str  # the luma file (images/...), with "~reshot" for a near-duplicate
    data: bytes
    product: str  # the main photo file of the offer it shows
    view: bool  # another view of the product than its main photo (the upstream never indexed it)
    reshot: bool


# the photos --------------------------------------------------------------------------------------


def luma_rows(luma: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (luma / "catalog.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def products_of(rows: list[dict[str, Any]], standin_ids: list[int]) -> dict[str, frozenset[int]]:
    """Each product (a main photo file) and the stand-in's item ids of the offers showing it
    (relisted twins share a main photo); `standin_ids[i]` is row i's item in the stand-in."""
    found: dict[str, set[int]] = {}
    for row, item_id in zip(rows, standin_ids):
        found.setdefault(str(row["img"]), set()).add(item_id)
    return {product: frozenset(ids) for product, ids in found.items()}


def near_duplicate(data: bytes, rng: random.Random) -> bytes:
    """Another shot of the product: reshot() (cropped to at least 70% of each side, maybe flipped,
    recoloured), resized to 70-100% and saved again at quality 75-92."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        img = reshot(opened.convert("RGB"), rng, smallest=0.7)
    scale = rng.uniform(0.7, 1.0)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=rng.randint(75, 92))
    return out.getvalue()


def query_photos(luma: Path, rows: list[dict[str, Any]], count: int, seed: int) -> list[Photo]:
    """(count + 1) // 2 distinct photos drawn from every photo of the offers, then a near-duplicate
    of the first count // 2 of them."""
    owner: dict[str, str] = {}
    for row in rows:
        for name in (row["img"], *row.get("images", [])):
            owner.setdefault(str(name), str(row["img"]))
    names = sorted(owner)
    distinct = (count + 1) // 2
    if distinct > len(names):
        raise ValueError(f"--photos {count}: the luma offers have {len(names)} photos, so at most {2 * len(names)}")
    chosen = random.Random(f"photos:{seed}").sample(names, distinct)
    photos = [Photo(n, (luma / n).read_bytes(), owner[n], n != owner[n], False) for n in chosen]
    for at, photo in enumerate(photos[: count // 2]):
        data = near_duplicate(photo.data, random.Random(f"reshot:{seed}:{at}"))
        photos.append(Photo(photo.name + "~reshot", data, photo.product, photo.view, True))
    return photos


def draws(photos: int, searches: int, zipf: float, seed: int) -> list[int]:
    """The replay's photos in order: popularity 1/rank^zipf over a seeded ranking of the photos."""
    rng = random.Random(f"draws:{seed}")
    ranking = list(range(photos))
    rng.shuffle(ranking)
    weights = [0.0] * photos
    for rank, at in enumerate(ranking, start=1):
        weights[at] = 1 / rank**zipf
    return rng.choices(range(photos), weights, k=searches)


# the servers -------------------------------------------------------------------------------------


def server_env(upstream: str, port: int, opts: Options, min_similarity: float, work: Path) -> dict[str, str]:
    metrics = work / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    return {
        "SNAPSOURCE_UPSTREAM": upstream,
        "SNAPSOURCE_UPSTREAM_TOKEN": STANDIN_TOKEN,
        "SNAPSOURCE_UPSTREAM_MODE": "fallback",
        "SNAPSOURCE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SNAPSOURCE_FETCH_ALLOW": "127.0.0.0/8",  # the stand-in's photos are on loopback
        "SNAPSOURCE_UPSTREAM_MIN_SIMILARITY": repr(min_similarity),
        "SNAPSOURCE_UPSTREAM_PRICE_PER_CALL": repr(opts.price_per_call),
        "SNAPSOURCE_ADMIN_KEY": ADMIN_KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


@contextlib.contextmanager
def snapsource(upstream: str, work: Path, opts: Options, min_similarity: float) -> Iterator[tuple[str, str]]:
    """`snapsource serve` on a fresh, empty data dir in `work`, in fallback mode in front of
    `upstream`; yields its URL and a search token (made by `snapsource token create`)."""
    from snapsource.tools.loopback import free_port, serve_workers

    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    env = server_env(upstream, port, opts, min_similarity, work)
    made = subprocess.run(
        [sys.executable, "-m", "snapsource", "token", "create", "--name", "bench-upstream", "--data", str(data)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    with open(work / "serve.log", "ab") as log, serve_workers(data, opts.workers, env, log, timeout=300, port=port) as (url, _):
        yield url, token


# the replay --------------------------------------------------------------------------------------


def replay(
    url: str, token: str, photos: list[Photo], order: list[int], products: dict[str, frozenset[int]], opts: Options
) -> list[dict[str, Any]]:
    """Each drawn photo uploaded once, by `clients` threads taking the next draw in turn; one
    record per search, in draw order (times in seconds from the replay's start)."""
    records: list[dict[str, Any]] = [{} for _ in order]
    lock = threading.Lock()
    taken = iter(range(len(order)))
    started = time.perf_counter()
    failures: list[BaseException] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while True:
                with lock:
                    at = next(taken, None)
                if at is None:
                    return
                photo = photos[order[at]]
                sent = time.perf_counter()
                answer = http.post(
                    "/1688/search/image",
                    params={"apiToken": token, "page_size": opts.page_size},
                    files={"file": ("photo.jpg", photo.data, "image/jpeg")},
                )
                done = time.perf_counter()
                records[at] = record(at, order[at], photo, answer, products[photo.product], sent - started, done - started)

    def guarded() -> None:
        try:
            client()
        except BaseException as exc:  # noqa: BLE001 - reported after the other clients finish
            failures.append(exc)

    threads = [threading.Thread(target=guarded, daemon=True) for _ in range(max(1, opts.clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return records


def record(
    at: int, photo_at: int, photo: Photo, answer: httpx.Response, right: frozenset[int], sent: float, done: float
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        body = answer.json()
    data = body.get("data") if isinstance(body, dict) else None
    data = data if isinstance(data, dict) else {}
    items = [int(item["item_id"]) for item in data.get("items") or []]
    return {
        "at": at,
        "photo": photo_at,
        "product": photo.product,
        "view": photo.view,
        "reshot": photo.reshot,
        "status": answer.status_code,
        "source": data.get("source") if answer.status_code == 200 else None,
        "upstream_error": (data.get("upstream_error") or {}).get("code"),
        "error": None if answer.status_code == 200 else str(body.get("msg") if isinstance(body, dict) else answer.text)[:200],
        "sent_s": round(sent, 4),
        "done_s": round(done, 4),
        "latency_s": round(done - sent, 4),
        "items": items,
        "first_right": bool(items) and items[0] in right,
        "on_page1": any(item in right for item in items),
    }


def admin_report(url: str, answered: int, timeout: float = 15.0) -> dict[str, Any]:
    """`GET /admin/upstream`'s data, once its metering counts every answered search (it is
    written within a second or so)."""
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = httpx.get(url + "/admin/upstream", headers=AUTH, timeout=30).json()["data"]
        totals = data["totals"]
        if totals["calls"] + totals["cached"] + totals["local"] >= answered or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def catalog_state(url: str) -> dict[str, Any]:
    """The catalog the replay left: offers and vectors, and the landing jobs (the 50 most recent)."""
    ready = httpx.get(url + "/readyz", timeout=30).json()
    jobs = httpx.get(url + "/catalog/imports", headers=AUTH, timeout=30).json()["data"]["jobs"]
    return {
        "offers": ready.get("offers"),
        "vectors": ready.get("vectors"),
        "recent_jobs": dict(Counter(job["status"] for job in jobs)),
    }


# the figures ---------------------------------------------------------------------------------------


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rates(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The right product first, and on page 1."""
    return {
        "n": len(records),
        "first": share(sum(r["first_right"] for r in records), len(records)),
        "page1": share(sum(r["on_page1"] for r in records), len(records)),
    }


def found_after_arrival(records: list[dict[str, Any]], products: dict[str, frozenset[int]]) -> dict[str, Any]:
    """For each product whose item first arrived in an upstream answer (at that answer's time),
    the later searches of the product (sent after it) until one is answered locally with the
    product on page 1: 1 is the very next search of it."""
    product_of = {item: product for product, items in products.items() for item in items}
    arrived: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["done_s"]):
        if r["source"] == "upstream":
            for item in r["items"]:
                product = product_of.get(item)
                if product is not None and product not in arrived:
                    arrived[product] = r
    counts: list[int] = []
    seconds: list[float] = []
    with_later = never = 0
    for product, first in arrived.items():
        later = [r for r in records if r["product"] == product and r["sent_s"] >= first["done_s"]]
        if not later:
            continue
        with_later += 1
        right = products[product]
        found = next(
            (n for n, r in enumerate(later, start=1) if r["source"] == "local" and any(i in right for i in r["items"])), None
        )
        if found is None:
            never += 1
            continue
        counts.append(found)
        seconds.append(later[found - 1]["sent_s"] - first["done_s"])
    ordered = sorted(counts)
    return {
        "products_arrived": len(arrived),
        "searched_again": with_later,
        "found": len(counts),
        "median_searches": statistics.median(counts) if counts else None,
        "p90_searches": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))] if ordered else None,
        "next_search_share": share(sum(n == 1 for n in counts), with_later),
        "never_share": share(never, with_later),
        "median_seconds": round(statistics.median(seconds), 1) if seconds else None,
        "histogram": {str(n): c for n, c in sorted(Counter(counts).items())},
    }


def tenths(records: list[dict[str, Any]]) -> list[float | None]:
    """The local share of each tenth of the replay (in draw order)."""
    n = len(records)
    out = []
    for k in range(10):
        part = records[k * n // 10 : (k + 1) * n // 10]
        out.append(share(sum(r["source"] == "local" for r in part), len(part)))
    return out


def repeat_calls(records: list[dict[str, Any]]) -> dict[str, int]:
    """Upstream calls for a photo (the same bytes) already asked about in the replay: while the
    earlier call was still in flight (its page not stored yet), or after it was stored."""
    earlier: dict[int, float] = {}  # photo -> when its first upstream answer came back
    out = {"in_flight": 0, "after_stored": 0}
    for r in sorted((r for r in records if r["source"] == "upstream"), key=lambda r: r["sent_s"]):
        if r["photo"] in earlier:
            out["in_flight" if r["sent_s"] < earlier[r["photo"]] else "after_stored"] += 1
        else:
            earlier[r["photo"]] = r["done_s"]
    return out


def summary(
    records: list[dict[str, Any]],
    products: dict[str, frozenset[int]],
    calls: dict[str, int],
    admin: dict[str, Any],
    price: float,
) -> dict[str, Any]:
    """The replay's figures; `calls` are the stand-in's counters over the replay."""
    n = len(records)
    by_source = {s: [r for r in records if r["source"] == s] for s in SOURCES}
    answered = sum(len(rs) for rs in by_source.values())
    totals = admin["totals"]
    saved = len(by_source["local"]) + len(by_source["upstream_cache"])
    kinds = {
        "main": [r for r in records if not r["view"] and not r["reshot"]],
        "main reshot": [r for r in records if not r["view"] and r["reshot"]],
        "view": [r for r in records if r["view"] and not r["reshot"]],
        "view reshot": [r for r in records if r["view"] and r["reshot"]],
    }
    return {
        "searches": n,
        "answered": answered,
        "errors": dict(Counter(f"{r['status']}: {r['error']}" for r in records if r["status"] != 200)),
        "by_source": {s: len(rs) for s, rs in by_source.items()},
        "share": {s: share(len(rs), n) for s, rs in by_source.items()},
        "local_with_upstream_error": dict(Counter(str(r["upstream_error"]) for r in by_source["local"] if r["upstream_error"])),
        "upstream_calls": {
            "standin": {
                "searches": calls.get("search", 0),
                "conversions": calls.get("convert", 0),
                "photos": calls.get("photo", 0),
            },
            "admin": {k: totals[k] for k in ("calls", "conversions", "cached", "local")},
            "agree": calls.get("search", 0) == totals["calls"] and calls.get("convert", 0) == totals["conversions"],
            "same_photo_again": repeat_calls(records),
        },
        "saved": {
            "calls": saved,
            "share": share(saved, n),
            "admin_saved_calls": totals["saved_calls"],
            "price_per_call": price,
            "estimated_saving": totals["estimated_saving"],
            "estimated_cost": totals["estimated_cost"],
            "cost_without_snapsource": round(n * 2 * price, 2),  # a conversion and a search per search
        },
        "latency": {s: stats([r["latency_s"] for r in rs]) for s, rs in by_source.items()},
        "right_product": {**{s: rates(rs) for s, rs in by_source.items()}, "all": rates(records)},
        "by_kind": {
            kind: {"n": len(rs), "local_share": share(sum(r["source"] == "local" for r in rs), len(rs)), **rates(rs)}
            for kind, rs in kinds.items()
        },
        "found_locally_after_arrival": found_after_arrival(records, products),
        "local_share_by_tenth": tenths(records),
        "wall_s": round(max((r["done_s"] for r in records), default=0.0), 1),
    }


def one_run(
    upstream: str,
    standin: Any,
    work: Path,
    photos: list[Photo],
    order: list[int],
    products: dict[str, frozenset[int]],
    opts: Options,
    min_similarity: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The replay against a fresh server: its summary and its records."""
    with snapsource(upstream, work, opts, min_similarity) as (url, token):
        before = Counter(standin.calls)
        records = replay(url, token, photos, order, products, opts)
        answered = sum(r["source"] in SOURCES for r in records)
        admin = admin_report(url, answered)
        calls = {k: standin.calls[k] - before[k] for k in ("search", "convert", "photo")}
        result = summary(records, products, calls, admin, opts.price_per_call)
        result["admin"] = {k: admin[k] for k in ("mode", "breaker", "pages_stored", "photos_converted")}
        result["catalog_at_end"] = catalog_state(url)
    return result, records


def rule_name(rule: float) -> str:
    return "same only" if rule >= SAME_ONLY else f"{rule:g}"


def run(opts: Options, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The replay, or with `ablation` the ablation's runs; the JSON written to `opts.output` keeps
    the other part of an earlier run."""
    from snapsource.tools.loopback import serve
    from snapsource.tools.tmapi_standin import luma_standin

    started = time.perf_counter()
    work = opts.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = luma_rows(opts.luma)
    say(f"the TMAPI stand-in: {len(rows)} luma offers")
    standin = luma_standin(catalog=opts.luma / "catalog.jsonl", token=STANDIN_TOKEN, latency=opts.latency)
    products = products_of(rows, [int(item.item["item_id"]) for item in standin.items])
    photos = query_photos(opts.luma, rows, opts.photos, opts.seed)
    order = draws(len(photos), opts.searches, opts.zipf, opts.seed)
    report: dict[str, Any] = {
        "machine": machine(),
        "options": {k: str(v) for k, v in dataclasses.asdict(opts).items()},
        "photos": {
            "query_photos": len(photos),
            "distinct": sum(not p.reshot for p in photos),
            "distinct_views": sum(p.view and not p.reshot for p in photos),
            "near_duplicates": sum(p.reshot for p in photos),
            "products": len({p.product for p in photos}),
            "photos_drawn": len(set(order)),
            "top_photo_share": share(max(Counter(order).values(), default=0), len(order)),
            "standin_items": len(standin.items),
            "standin_products": len(products),
        },
    }
    with serve(standin.app) as upstream:
        if not opts.ablation:
            say(
                f"replay: {opts.searches} searches of {len(photos)} photos, {opts.clients} clients, upstream latency "
                f"{opts.latency:g} s, upstream_min_similarity {opts.min_similarity:g}"
            )
            result, records = one_run(upstream, standin, work / "replay", photos, order, products, opts, opts.min_similarity)
            result["upstream_latency_s"] = opts.latency
            result["min_similarity"] = opts.min_similarity
            report["replay"] = result
            (work / "replay-searches.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            say(replay_line(result))
        else:
            standin.latency = opts.ablation_latency
            report["ablation"] = {"upstream_latency_s": opts.ablation_latency, "rows": []}
            for rule in opts.rules:
                say(f"ablation: upstream_min_similarity {rule_name(rule)}, upstream latency {opts.ablation_latency:g} s")
                result, _ = one_run(upstream, standin, work / f"ablation-{rule:g}", photos, order, products, opts, rule)
                row = ablation_row(rule, result)
                report["ablation"]["rows"].append(row)
                say("  " + json.dumps(row))
    report["total_s"] = round(time.perf_counter() - started, 1)
    report["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if opts.output:
        report = merged(opts.output, report)
        opts.output.parent.mkdir(parents=True, exist_ok=True)
        opts.output.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report


def ablation_row(rule: float, result: dict[str, Any]) -> dict[str, Any]:
    right = result["right_product"]
    found = result["found_locally_after_arrival"]
    return {
        "rule": rule_name(rule),
        "min_similarity": rule,
        "local_share": result["share"]["local"],
        "calls_saved": result["saved"]["calls"],
        "saved_share": result["saved"]["share"],
        "upstream_calls": result["upstream_calls"]["admin"]["calls"],
        "local_first": right["local"]["first"],
        "local_page1": right["local"]["page1"],
        "all_first": right["all"]["first"],
        "all_page1": right["all"]["page1"],
        "found_next_search": found["next_search_share"],
        "local_share_last_tenth": result["local_share_by_tenth"][-1],
        "local_p50_ms": result["latency"]["local"].get("p50_ms"),
        "wall_s": result["wall_s"],
    }


def merged(output: Path, report: dict[str, Any]) -> dict[str, Any]:
    """This run's part over the other part of an earlier run kept in the file (each part with its
    run's machine line, options and photos)."""
    keys = ("machine", "options", "photos", "finished_at", "total_s")
    try:
        earlier = json.loads(output.read_text())
    except (FileNotFoundError, ValueError):
        earlier = {}
    runs = earlier.get("runs") or {}
    out = {part: earlier[part] for part in PARTS if part in earlier}
    for part in PARTS:
        if part in report:
            out[part] = report[part]
            runs[part] = {k: report[k] for k in keys}
    return {**{k: report[k] for k in keys}, **out, "runs": runs}


# the tables ----------------------------------------------------------------------------------------


def replay_line(r: dict[str, Any]) -> str:
    lat, found = r["latency"], r["found_locally_after_arrival"]
    return (
        f"  {r['searches']} searches in {r['wall_s']} s: local {r['share']['local']}, upstream {r['share']['upstream']}, "
        f"cached {r['share']['upstream_cache']}; calls saved {r['saved']['calls']}; p50 local "
        f"{lat['local'].get('p50_ms')} ms, upstream {lat['upstream'].get('p50_ms')} ms; found locally at the next "
        f"search {found['next_search_share']}"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def tables(report: dict[str, Any]) -> list[Any]:
    """The report as rich tables: the replay's and the ablation's, when there."""
    from rich.table import Column, Table

    out: list[Any] = []
    r = report.get("replay")
    if r:
        title = (
            f"bench upstream: {r['searches']} searches, {r['upstream_latency_s']:g} s upstream, "
            f"min_similarity {r['min_similarity']:g}, {r['wall_s']} s"
        )
        t = Table("data.source", "answers", "share", "p50 ms", "p90 ms", "right first", "right on page 1", title=title)
        for source in (*SOURCES, "all"):
            lat = r["latency"].get(source, {})
            right = r["right_product"][source]
            n = r["by_source"].get(source, r["searches"])
            t.add_row(
                source,
                str(n),
                _pct(r["share"].get(source, 1.0)),
                _ms(lat.get("p50_ms")),
                _ms(lat.get("p90_ms")),
                _pct(right["first"]),
                _pct(right["page1"]),
            )
        out.append(t)
        calls, saved, found = r["upstream_calls"], r["saved"], r["found_locally_after_arrival"]
        f = Table("figure", "value", title="calls, saving, and found locally after arrival")
        f.add_row("upstream searches (stand-in / admin)", f"{calls['standin']['searches']} / {calls['admin']['calls']}")
        f.add_row("conversions (stand-in / admin)", f"{calls['standin']['conversions']} / {calls['admin']['conversions']}")
        f.add_row("counts agree", str(calls["agree"]))
        f.add_row("calls saved (cached + local)", f"{saved['calls']} ({_pct(saved['share'])})")
        f.add_row(
            "estimated saving / cost", f"{saved['estimated_saving']} / {saved['estimated_cost']} at {saved['price_per_call']}"
        )
        f.add_row("products arrived / searched again", f"{found['products_arrived']} / {found['searched_again']}")
        f.add_row("found locally: median, p90 searches", f"{found['median_searches']}, {found['p90_searches']}")
        f.add_row("found at the very next search", _pct(found["next_search_share"]))
        f.add_row("never found within the replay", _pct(found["never_share"]))
        f.add_row("local share by tenth", " ".join(_pct(s) for s in r["local_share_by_tenth"]))
        out.append(f)
    a = report.get("ablation")
    if a:
        t = Table(
            Column("min similarity", no_wrap=True),
            "local share",
            "calls saved",
            "upstream calls",
            "local right first",
            "local right page 1",
            "all right first",
            "all right page 1",
            "last tenth local",
            title=f"ablation: {a['upstream_latency_s']:g} s upstream, each on a fresh data dir",
        )
        for row in a["rows"]:
            t.add_row(
                row["rule"],
                _pct(row["local_share"]),
                f"{row['calls_saved']} ({_pct(row['saved_share'])})",
                str(row["upstream_calls"]),
                _pct(row["local_first"]),
                _pct(row["local_page1"]),
                _pct(row["all_first"]),
                _pct(row["all_page1"]),
                _pct(row["local_share_last_tenth"]),
            )
        out.append(t)
    return out
