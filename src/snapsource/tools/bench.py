"""`snapsource bench`: a synthetic catalog of N offers built straight into a data dir's own stores
(the offers database, the vector store), with no images to decode, then measured: build time,
memory and disk; filtered searches at every selectivity and each sort, in process, with their
recall@100 against exact search under the same filters; then `serve --workers 2` on it under a
bounded loopback load, with page 1 against page 5 and the memory the two workers share.

The catalog is realistic where it matters to search: prices log-normal, sales heavy-tailed, the
boolean facts at the luma catalog's rates, 20% of offers with 2-3 photos, and 1280-d vectors in
thousands of gaussian clusters (products and their near-duplicates), not uniform noise.
Queries are catalog vectors with a little noise (in process) or catalog photos given as
`img_url` (over HTTP: "the image is already known", so nothing is fetched or embedded).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np

from snapsource.search import Filters
from snapsource.store import bulk
from snapsource.store.catalog import Catalog
from snapsource.store.columns import Columns, OfferColumns, Where
from snapsource.store.vectors.faiss_store import FaissStore

DIM = 1280
RATES = {  # share of luma offers with each fact true
    "support_dropshipping": 0.50,
    "is_factory": 0.60,
    "verified_supplier": 0.40,
    "free_shipping": 0.30,
    "new_arrival": 0.15,
}
CHUNK = 50_000
TODAY = dt.date(2026, 11, 27)
THRESHOLD = 0.28  # the default similarity_threshold: weaker matches are never candidates


def _memory_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory: all of it, the process's own (anonymous), and mapped file pages (shared)."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            for key, name in (("VmRSS:", "rss"), ("RssAnon:", "anon"), ("RssFile:", "file"), ("VmHWM:", "peak")):
                if line.startswith(key):
                    out[name] = int(line.split()[1]) / 1024
    return out


def _mapped_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident pages of the index files a process maps: the SQ8 lists (hot: every search reads
    them) and the float32 rows (read a shortlist at a time), from /proc/PID/smaps."""
    out = {"lists": 0.0, "rows": 0.0}
    current = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if len(head) >= 6 and "-" in head[0]:
                name = head[-1]
                current = "lists" if name.endswith(".ivf") else "rows" if name.endswith(FaissStore.ROWS) else None
            elif current and line.startswith("Rss:"):
                out[current] += int(head[1]) / 1024
    return out


def _disk_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20


def model_identity() -> str:
    """The identity of the shipped model at the `precision` setting, so `serve` opens the synthetic
    index as its own."""
    from snapsource.config import Settings
    from snapsource.resources import model_identity as identity
    from snapsource.vision.model import model_id

    precision = Settings.load().precision  # the servers it starts read it from the environment too
    return identity(types.SimpleNamespace(name=model_id(precision)), Settings(precision=precision))


# building ----------------------------------------------------------------------------------------


def _documents(
    rng: np.random.Generator, item_id: np.ndarray, price: np.ndarray, sales: np.ndarray, flags: dict, days: np.ndarray
):
    """Offer rows in the item schema the API returns (what `ingest` would store)."""
    cities = [["广东", "广州市"], ["浙江", "义乌市"], ["河北", "保定市"], ["福建", "泉州市"], ["江苏", "苏州市"]]
    words = ["Cotton", "Steel", "Bamboo", "Travel", "Kitchen", "Sports", "Kids", "Office", "Garden", "Pet"]
    kinds = ["Bottle", "Bag", "Lamp", "Shirt", "Organizer", "Mat", "Brush", "Toy", "Case", "Hook"]
    shop = rng.integers(0, 20_000, len(item_id))
    for i in range(len(item_id)):
        s, p = int(shop[i]), float(price[i])
        city = cities[s % len(cities)]
        doc = {
            "item_id": int(item_id[i]),
            "product_url": f"https://detail.example/offer/{int(item_id[i])}.html",
            "title": f"{words[i % 10]} {kinds[(i // 10) % 10]} {i % 997}",
            "img": f"images/{int(item_id[i])}.jpg",
            "category_path": ["1027", str(1028 + i % 40)],
            "price": f"{p:.2f}",
            "price_info": {"sale_price": f"{p:.2f}", "origin_price": f"{p * 1.08:.2f}"},
            "moq": int(2 + i % 50),
            "quantity_prices": [
                {"begin_num": 2, "end_num": 99, "price": f"{p:.2f}"},
                {"begin_num": 100, "end_num": None, "price": f"{p * 0.92:.2f}"},
            ],
            "sale_info": {
                "sale_quantity": str(int(sales[i])),
                "sale_quantity_int": int(sales[i]),
                "orders_count": int(sales[i]) // 4,
            },
            "delivery_info": {"area_from": city},
            "item_repurchase_rate": f"{i % 70}%",
            "rating_star": None,
            "shop_info": {
                "login_id": f"shop{s}",
                "member_id": f"b2b-{s:012x}",
                "company_name": f"Company {s} Ltd.",
                "shop_url": f"https://shop{s}.example",
                "biz_type": "生产加工" if flags["is_factory"][i] else "经销批发",
                "is_factory": bool(flags["is_factory"][i]),
                "is_super_factory": False,
                "location": city,
                "service_tags": None,
                "shop_years": 1 + s % 15,
                "factory_inspection": bool(flags["verified_supplier"][i]),
                "score_info": {"composite_score": "4.5"},
            },
            "is_ad": False,
        }
        created = (dt.date(1970, 1, 1) + dt.timedelta(days=int(days[i]))).isoformat()
        yield (
            int(item_id[i]),
            json.dumps(doc, ensure_ascii=False),
            f"{p:.2f}",
            int(sales[i]),
            int(flags["is_factory"][i]),
            int(flags["support_dropshipping"][i]),
            int(flags["free_shipping"][i]),
            int(flags["verified_supplier"][i]),
            int(flags["new_arrival"][i]),
            created,
        )


class BuildReport(TypedDict):
    """What `build` measured: written as JSON next to the data dir, and read back by `built`."""

    offers: int
    vectors: int
    nlist: int
    catalog_s: float
    generate_s: float
    compact_s: float
    build_s: float
    build_peak_rss_mb: float


def build(directory: Path, offers: int, seed: int = 0) -> BuildReport:
    """Offers, images and their links in the catalog database; vectors in the vector store; then
    one compaction, which trains the IVF base as the first import of a large catalog does."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    photos = np.where(rng.random(offers) < 0.2, rng.integers(2, 4, offers), 1)
    rows = int(photos.sum())
    pair_offer = np.repeat(np.arange(offers), photos)
    image_id = np.arange(1, rows + 1, dtype=np.int64)  # SQLite row ids: the vector ids
    item_id = np.arange(offers, dtype=np.int64) + 10**11
    flags = {name: rng.random(offers) < rate for name, rate in RATES.items()}
    price = np.round(np.exp(rng.normal(math.log(40), 1.0, offers)), 2)
    sales = np.floor(rng.pareto(1.2, offers) * 20).astype(np.int64)
    days = np.full(offers, (TODAY - dt.date(1970, 1, 1)).days - 400, np.int32)

    catalog = Catalog(directory)
    first = np.r_[0, np.cumsum(photos)[:-1]]  # each offer's first (main) photo
    docs = _documents(rng, item_id, price, sales, flags, days)
    bulk.insert(catalog, "images", ((int(i), hashlib.sha256(b"bench:%d" % i).hexdigest(), "jpg", 800, 800) for i in image_id))
    updated = "2026-11-27T00:00:00+00:00"
    bulk.insert(catalog, "offers", (row + (int(image_id[first[n]]), updated) for n, row in enumerate(docs)))
    position = np.arange(rows) - first[pair_offer]
    bulk.insert(
        catalog,
        "offer_images",
        zip(item_id[pair_offer].tolist(), position.tolist(), image_id.tolist(), itertools.repeat("synthetic")),
    )
    catalog.close()
    catalogued = time.perf_counter()

    # products are clusters; an offer's photos are views of its product; relisted offers share one
    clusters = max(64, offers // 250)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    product = rng.integers(0, clusters, offers)[pair_offer]
    store = FaissStore(directory / "index", model_identity(), DIM)
    for start in range(0, rows, CHUNK):
        stop = min(rows, start + CHUNK)
        part = centres[product[start:stop]] + rng.standard_normal((stop - start, DIM), dtype=np.float32) * 0.9
        part /= np.linalg.norm(part, axis=1, keepdims=True)
        store.add(image_id[start:stop], part)
    store.save()
    generated = time.perf_counter()
    compacted = store.compact()
    store.close()
    if compacted is None:
        raise RuntimeError(f"could not compact {directory / 'index'}: another process holds its compaction lock")
    nlist = compacted.get("lists", 0)
    assert isinstance(nlist, int)  # the number of IVF lists of the base written (none: 0)
    done = time.perf_counter()
    return {
        "offers": offers,
        "vectors": rows,
        "nlist": nlist,
        "catalog_s": catalogued - started,
        "generate_s": generated - catalogued,
        "compact_s": done - generated,
        "build_s": done - started,
        "build_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# measuring in process ----------------------------------------------------------------------------


def cases(columns: Columns) -> dict[str, Filters]:
    """No filter, each boolean, price ranges keeping about 1%, 10% and 50%, everything at once."""
    p = np.quantile(columns.price, [0.45, 0.46, 0.40, 0.50, 0.25, 0.75])
    out = {"none": Filters()}
    out |= {name: _filters((name,)) for name in RATES}
    out["price ~1%"] = _filters(price=(p[0], p[1]))
    out["price ~10%"] = _filters(price=(p[2], p[3]))
    out["price ~50%"] = _filters(price=(p[4], p[5]))
    out["all filters"] = _filters(RATES, price=(p[4], p[5]))
    return out


def _filters(flags: Iterable[str] = (), price: tuple[float, float] | None = None) -> Filters:
    """Filters with these flags true and, if given, this price range (to the cent)."""
    on = set(flags)
    assert on <= RATES.keys(), on
    lo, hi = (None, None) if price is None else (Decimal(f"{price[0]:.2f}"), Decimal(f"{price[1]:.2f}"))
    return Filters(
        price_start=lo,
        price_end=hi,
        support_dropshipping="support_dropshipping" in on,
        is_factory="is_factory" in on,
        verified_supplier="verified_supplier" in on,
        free_shipping="free_shipping" in on,
        new_arrival="new_arrival" in on,
    )


def where_of(filters: Filters) -> Where:
    """The store's condition for one of the filtered cases (every case but "none" filters)."""
    where = filters.where(TODAY, 30)
    assert where is not None, filters
    return where


@dataclasses.dataclass
class Case:
    name: str
    kept: float  # share of vectors the filter keeps
    p50_ms: float
    p99_ms: float
    recall: float | None = None


def _exact_top(rows: np.ndarray, ids: np.ndarray, queries: np.ndarray, masks: dict[str, np.ndarray], k: int) -> dict[str, tuple]:
    """Exact top-k ids per filter case, one pass over the full vectors for all queries and cases."""
    best = {name: (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)) for name in masks}
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        scores = np.asarray(rows[part]) @ queries.T  # [rows, queries]
        for name, mask in masks.items():
            keep = mask[part]
            if not keep.any():
                continue
            s, i = scores[keep].T, part[keep]
            top_s, top_i = best[name]
            merged_s = np.concatenate([top_s, s], axis=1)
            merged_i = np.concatenate([top_i, np.broadcast_to(i, s.shape)], axis=1)
            pick = np.argpartition(-merged_s, k - 1, axis=1)[:, :k] if merged_s.shape[1] > k else np.argsort(-merged_s, axis=1)
            best[name] = (np.take_along_axis(merged_s, pick, 1), np.take_along_axis(merged_i, pick, 1))
    return best


def queries_of(store: FaissStore, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The store's ids, and `queries` of its vectors with a little noise (the same for a seed)."""
    ids = store.ids()
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(ids, queries, replace=False))
    vectors = store.vectors(picks) + rng.standard_normal((queries, DIM)).astype(np.float32) * 0.01
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def recall(table: list[Case], results: dict[str, list[np.ndarray]], exact: dict[str, tuple]) -> None:
    """Each case's recall@100: of the exact top 100 over the similarity threshold (the candidate
    set), the share that the search found, per query, averaged."""
    for case in table:
        if case.name in results:
            truth_scores, truth_ids = exact[case.name]
            hits = []
            for found, t_scores, t_ids in zip(results[case.name], truth_scores, truth_ids):
                truth = set(t_ids[(t_ids >= 0) & (t_scores >= THRESHOLD)].tolist())
                if truth:
                    hits.append(len(truth & set(found.tolist())) / len(truth))
            case.recall = float(np.mean(hits)) if hits else None


def sort_keys(columns: Columns) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each sort's key over offer rows, ascending: what the ranking's `_order` sorts by."""
    return {
        "sales": lambda rows: -columns.sales[rows],
        "price_up": lambda rows: columns.price[rows],
        "price_down": lambda rows: -columns.price[rows],
    }


def _timed(fn, repeat) -> list[float]:
    times = []
    for args in repeat:
        started = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(directory: Path, queries: int = 200, seed: int = 1, rescore: bool = True) -> dict[str, Any]:
    opened = time.perf_counter()
    store = FaissStore(directory / "index", model_identity(), DIM, rescore=rescore)
    open_s = time.perf_counter() - opened
    catalog = Catalog(directory)
    loaded = time.perf_counter()
    columns = OfferColumns(catalog).current()
    columns_s = time.perf_counter() - loaded
    ids, query_vectors = queries_of(store, queries, seed)
    filters = cases(columns)
    masks: dict[str, np.ndarray | None] = {}
    mask_ms: dict[str, float] = {}
    for name, f in filters.items():
        started = time.perf_counter()
        masks[name] = None if name == "none" else columns.select(where_of(f)).images
        mask_ms[name] = (time.perf_counter() - started) * 1000
    # the first pass after opening reads the lists and rows from disk unless the page cache holds them
    first = _timed(lambda q: store.search_images(q, 100, None, THRESHOLD), [(q,) for q in query_vectors])
    warmed = time.perf_counter()
    _read_through(sorted((directory / "index").glob("base-*.ivf")) + [directory / "index" / FaissStore.ROWS])
    warm_s = time.perf_counter() - warmed
    results: dict[str, list[np.ndarray]] = {}
    table: list[Case] = []
    for name in filters:
        allowed = masks[name]
        found: list[np.ndarray] = []

        def one(q, allowed=allowed, found=found):
            scores, hit = store.search_images(q, 100, allowed, THRESHOLD)
            found.append(hit[scores >= THRESHOLD])

        times = _timed(one, [(q,) for q in query_vectors])
        results[name] = found
        kept = 1.0 if allowed is None else float(allowed[ids].mean())
        table.append(Case(name, kept, statistics.median(times), float(np.percentile(times, 99))))
    # sorts: the 1,000 candidates of an unfiltered search, ordered by the offers' columns
    image_offer = np.zeros(columns.images, np.int64)
    image_offer[columns.pair_image] = columns.pair_offer
    for sort, key in sort_keys(columns).items():

        def ordered(q, key=key):
            scores, hit = store.search_images(q, 1000, None, THRESHOLD)
            offers = image_offer[hit[scores >= THRESHOLD]]
            return offers[np.argsort(key(offers), kind="stable")][:20]

        times = _timed(ordered, [(q,) for q in query_vectors])
        table.append(Case(f"sort {sort} (1000 cand.)", 1.0, statistics.median(times), float(np.percentile(times, 99))))
    memory = _memory_mb() | _mapped_mb()  # before the exact pass below reads every row
    present = np.zeros(columns.images, bool)
    present[ids] = True
    exact = _exact_top(
        store._rows, ids, query_vectors, {n: (present if m is None else m & present) for n, m in masks.items()}, 100
    )
    recall(table, results, exact)
    sq8_error = _sq8_error(store, query_vectors[:20])
    catalog.close()
    return {
        "open_s": open_s,
        "first_pass_ms": {"p50": statistics.median(first), "p99": float(np.percentile(first, 99))},
        "read_ahead_s": warm_s,
        "columns_load_s": columns_s,
        "memory_after_searches_mb": memory,
        "mask_ms": mask_ms,
        "sq8_max_error": sq8_error,
        "cases": [dataclasses.asdict(c) for c in table],
        "disk_mb": _disk_mb(directory),
    }


def _read_through(paths: list[Path]) -> None:
    """Read files once, sequentially, so that the timings below are of a server whose index is in
    the page cache (as one under steady load keeps it), not of the disk. This machine pages out
    page cache that has not been touched for a minute or so (a kdamond "pageout" scheme), so
    without it a run's numbers depend on how long the data dir sat idle before."""
    buffer = bytearray(8 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buffer):
                pass


def _sq8_error(store: FaissStore, queries: np.ndarray) -> float:
    """The largest gap between an SQ8 score and the exact one, over each query's shortlist: what
    the store's SQ8_MARGIN must cover when it skips results below the threshold."""
    from snapsource.store.vectors import ivf

    base = store.view().base
    if base is None:
        return 0.0
    worst = 0.0
    for q in queries:
        approx, ids = ivf.search(base.index, q, 200)
        worst = max(worst, float(np.abs(approx - store.vectors(ids) @ q).max()))
    return worst


# changing the catalog -----------------------------------------------------------------------------


def incremental(directory: Path, changes: int = 5000, queries: int = 100, seed: int = 5) -> dict[str, object]:
    """Adds and deletes without a rebuild, then compaction, then putting everything back: the
    latency of searches with a delta and masked entries, and what compacting costs at this size."""
    store = FaissStore(directory / "index", model_identity(), DIM)
    rng = np.random.default_rng(seed)
    ids = store.ids()
    query_ids = rng.choice(ids, queries, replace=False)
    probe = store.vectors(np.sort(query_ids))

    def p50() -> float:
        return statistics.median(_timed(lambda q: store.search_images(q, 100, None, THRESHOLD), [(q,) for q in probe]))

    out: dict[str, object] = {"changes": changes, "p50_ms_before": p50()}
    gone = np.sort(rng.choice(np.setdiff1d(ids, query_ids), changes, replace=False))
    kept_vectors = store.vectors(gone)
    fresh = np.arange(int(ids[-1]) + 1, int(ids[-1]) + 1 + changes, dtype=np.int64)
    noisy = kept_vectors + rng.standard_normal(kept_vectors.shape).astype(np.float32) * 0.05
    started = time.perf_counter()
    store.remove(gone)
    store.add(fresh, noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
    store.save()
    out["add_and_delete_s"] = time.perf_counter() - started
    out["p50_ms_with_delta"] = p50()
    out["stats_with_delta"] = store.stats()
    started = time.perf_counter()
    out["compaction"] = store.compact()
    out["compact_s"] = time.perf_counter() - started
    out["p50_ms_after_compaction"] = p50()
    store.remove(fresh)  # back as it was: the catalog's images keep their vectors
    store.add(gone, kept_vectors)
    store.save()
    started = time.perf_counter()
    store.compact()
    out["restore_compact_s"] = time.perf_counter() - started
    reopened = time.perf_counter()
    FaissStore(directory / "index", model_identity(), DIM).view()
    out["reopen_s"] = time.perf_counter() - reopened
    store.close()
    return out


# measuring over HTTP ------------------------------------------------------------------------------

SORTS = ("default", "sales", "price_up", "price_down")
POPULAR = 200  # photos of the repeated load: with 5 filter variants, 1,000 rankings (a worker keeps 2,048)
HTTP_FILTERS: tuple[dict[str, str], ...] = (
    {},
    {},
    {"is_factory": "true"},
    {"free_shipping": "true"},
    {"price_start": "20", "price_end": "80"},
)


async def _load(
    url: str, token: str, shas: list[str], seconds: float, concurrency: int, seed: int = 0, repeat: bool = False
) -> dict[str, Any]:
    """`concurrency` clients sending searches back to back for `seconds`, each with a random sort
    and filter: with catalog photos not searched before (every request searches and ranks anew),
    or with `repeat`, photos drawn again and again from `shas` (popular products: the rankings
    of a photo are kept, so a request costs a lookup and a page)."""
    import httpx

    rng = random.Random(seed)
    order = iter(() if repeat else rng.sample(shas, len(shas)))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def client(n: int) -> None:
            # clients connect one after another, as users do: started together, their
            # connections would all be accepted by whichever worker woke first
            await asyncio.sleep(n * 0.05)
            while time.monotonic() < deadline:
                sha = next(order, None) or rng.choice(shas)
                params = {"apiToken": token, "img_url": f"/img/{sha}.jpg", "sort": rng.choice(SORTS), **rng.choice(HTTP_FILTERS)}
                started = time.perf_counter()
                try:
                    response = await http.get("/1688/search/image", params=params)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

        began = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "seconds": elapsed,
        "concurrency": concurrency,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
        "statuses": statuses,
        "errors": len(errors),
        "error_samples": errors[:5],
    }


def _pages(url: str, token: str, shas: list[str]) -> dict[str, float]:
    """Page 1 (search and rank) against page 5 of the same photo (the ranking kept)."""
    import httpx

    first: list[float] = []
    fifth: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for sha in shas:
            for page, times in ((1, first), (5, fifth)):
                params = {"apiToken": token, "img_url": f"/img/{sha}.jpg", "page": str(page), "page_size": "20"}
                started = time.perf_counter()
                response = http.get("/1688/search/image", params=params)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
    return {"page1_p50_ms": statistics.median(first), "page5_p50_ms": statistics.median(fifth)}


def _workers_memory(server_pid: int) -> list[dict[str, float]]:
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    out = []
    for pid in children:
        try:
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue  # multiprocessing's helper, not a worker
            out.append(_memory_mb(pid) | _mapped_mb(pid))
        except (FileNotFoundError, PermissionError):
            continue
    return out


def http(
    directory: Path,
    seconds: float = 30,
    concurrency: int = 16,
    workers: int = 2,
    log: Path | None = None,
    rescore: bool = True,
    settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`serve --workers N` on the bench data dir, warmed, then loaded from one asyncio client;
    `settings` (e.g. catalog and vectors) are given to the server as SNAPSOURCE_* variables."""
    from snapsource.tools.loopback import serve_workers

    settings = settings or {}
    token, shas = token_and_photos(directory, settings.get("catalog", ""))
    env = {
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="snapsource-bench-"),
        "SNAPSOURCE_COMPACT_INTERVAL": "0",
        "SNAPSOURCE_INDEX_RESCORE": "true" if rescore else "false",
        **{f"SNAPSOURCE_{name.upper()}": value for name, value in settings.items()},
    }
    log = log or directory / "serve.log"
    with open(log, "wb") as out, serve_workers(directory, workers, env, out, timeout=600) as (url, server):
        report = loads(url, token, shas, seconds, concurrency)
        report |= _pages(url, token, random.Random(8).sample(shas, 30))
        report |= {"workers": workers, "workers_memory_mb": _workers_memory(server.pid)}
    return report


def token_and_photos(directory: Path, catalog_url: str = "") -> tuple[str, list[str]]:
    """A new token for the load, and the hashes of every catalog photo (the `img_url`s)."""
    from snapsource.accounts.tokens import Tokens

    catalog = Catalog(directory, catalog_url)
    token = Tokens(catalog).create(f"bench-{time.time_ns()}")
    shas = [image.sha256 for image in catalog.all_images()]
    catalog.close()
    return token, shas


def loads(url: str, token: str, shas: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    """The server warmed (each worker loads its columns), then the load with photos not searched
    before, and the one with POPULAR photos again and again (after searching each once)."""
    rng = random.Random(7)
    started = time.perf_counter()
    asyncio.run(_load(url, token, rng.sample(shas, 64), 3, 8, seed=1))
    warm_s = time.perf_counter() - started
    report = asyncio.run(_load(url, token, shas, seconds, concurrency, seed=2))
    popular = rng.sample(shas, POPULAR)
    asyncio.run(_load(url, token, popular, min(seconds, 5), concurrency, seed=3, repeat=True))
    report["repeated"] = asyncio.run(_load(url, token, popular, seconds, concurrency, seed=4, repeat=True))
    return report | {"warm_s": warm_s}


# running ------------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    """The report of `run` (a JSON document: build, measure, http and incremental) as text."""
    b, m = report["build"], report["memory_after_searches_mb"]
    lines = [
        f"{b['offers']:,} offers, {b['vectors']:,} vectors (1280-d), IVF{b['nlist']}-SQ8 base"
        + (" re-scored on float32 rows" if report.get("rescore", True) else " ranked by its SQ8 scores (index_rescore off)"),
        f"build {b['build_s']:.0f} s (catalog database {b['catalog_s']:.0f}, vectors {b['generate_s']:.0f}, "
        f"IVF training and filing {b['compact_s']:.0f}), build peak RSS {b['build_peak_rss_mb']:.0f} MB; "
        f"disk {report['disk_mb']:.0f} MB",
        f"open: index {report['open_s']:.2f} s, filter columns {report['columns_load_s']:.2f} s; after the searches: "
        f"RSS {m['rss']:.0f} MB = own {m['anon']:.0f} MB + mapped {m['file']:.0f} MB (SQ8 lists {m['lists']:.0f}, "
        f"float32 rows read so far {m['rows']:.0f}: shared page cache); largest SQ8 score error {report['sq8_max_error']:.4f}",
        f"first pass after opening (page cache as found): p50 {report['first_pass_ms']['p50']:.2f} ms, "
        f"p99 {report['first_pass_ms']['p99']:.2f} ms; index files read through in {report['read_ahead_s']:.0f} s; then:",
        f"{'case':<28} {'kept':>7} {'p50 ms':>8} {'p99 ms':>8} {'recall@100':>11}",
    ]
    for c in report["cases"]:
        recall = "" if c["recall"] is None else f"{c['recall']:.4f}"
        lines.append(f"{c['name']:<28} {c['kept']:>7.1%} {c['p50_ms']:>8.2f} {c['p99_ms']:>8.2f} {recall:>11}")
    inc = report.get("incremental")
    if inc:
        st = inc["stats_with_delta"]
        lines.append(
            f"changes without a rebuild: {inc['changes']:,} added and {inc['changes']:,} deleted in "
            f"{inc['add_and_delete_s']:.2f} s (delta {st['delta']:,}, masked {st['masked']:,}); search p50 "
            f"{inc['p50_ms_before']:.2f} ms before, {inc['p50_ms_with_delta']:.2f} ms with them, "
            f"{inc['p50_ms_after_compaction']:.2f} ms after compaction ({inc['compact_s']:.0f} s); reopen {inc['reopen_s']:.2f} s"
        )
    h = report.get("http")
    if h:
        r = h["repeated"]
        own = ", ".join(f"{w['anon']:.0f}" for w in h["workers_memory_mb"])
        shared = ", ".join(f"{w['lists']:.0f} + {w['rows']:.0f}" for w in h["workers_memory_mb"])
        lines += [
            f"HTTP, serve --workers {h['workers']}, {h['seconds']:.0f} s at concurrency {h['concurrency']}, photos not searched before: "
            f"{h['requests']} requests, {h['requests_per_s']:.1f} req/s, p50 {h['p50_ms']:.1f} ms, "
            f"p99 {h['p99_ms']:.1f} ms, {h['errors']} errors {h['statuses']}",
            f"  the same with {POPULAR} photos searched again and again (rankings kept): {r['requests_per_s']:.1f} req/s, "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['errors']} errors",
            f"page 1 p50 {h['page1_p50_ms']:.1f} ms, page 5 p50 {h['page5_p50_ms']:.1f} ms; "
            f"workers' own memory {own} MB; mapped, shared between them: SQ8 lists + float32 rows {shared} MB",
        ]
    return "\n".join(lines)


BUILT = "bench-build.json"


def built(directory: Path, offers: int) -> BuildReport | None:
    """The build report of a data dir that this bench built with this many offers, if any."""
    try:
        report = json.loads((directory / BUILT).read_text())
    except (FileNotFoundError, ValueError):
        return None
    # a file `run` wrote from a `build` report, so of its shape
    return cast(BuildReport, report) if report.get("offers") == offers else None


def run(
    directory: Path,
    offers: int,
    queries: int,
    output: Path | None,
    http_seconds: float = 30,
    concurrency: int = 16,
    rescore: bool = True,
) -> dict[str, Any]:
    """Build in a child process (its peak memory is the build's) unless the data dir holds this
    build already, measure here, then over HTTP."""
    import faiss

    faiss.omp_set_num_threads(1)  # a search request is served by one thread; workers scale out
    build_report = built(directory, offers)
    if build_report is None:
        done = subprocess.run(
            [sys.executable, "-m", "snapsource.tools.bench", "--build", str(directory), str(offers)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the build failed:\n{done.stderr[-4000:]}")
        build_report = cast(BuildReport, json.loads(done.stdout.strip().splitlines()[-1]))
        (directory / BUILT).write_text(json.dumps(build_report) + "\n")
    report: dict[str, Any] = {"build": build_report, "rescore": rescore, **measure(directory, queries, rescore=rescore)}
    if http_seconds > 0:
        report["http"] = http(directory, http_seconds, concurrency, rescore=rescore)
    report["incremental"] = incremental(directory)  # last: it rewrites the base twice
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":  # the build step, in its own process
    assert sys.argv[1] == "--build"
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    print(json.dumps(build(Path(sys.argv[2]), int(sys.argv[3]))))
