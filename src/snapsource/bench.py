"""`snapsource bench`: a synthetic catalog of N offers, built straight into an index (no images to
decode), then timed: filtered searches at every selectivity, each sort, recall@100 against exact
search with the same filters, build time, memory and disk.

The catalog is realistic where it matters to search: prices log-normal, sales heavy-tailed, the
boolean facts at the luma catalog's rates, 20% of offers with 2-3 photos, and 1280-d vectors in
thousands of gaussian clusters (products and their near-duplicates), not uniform noise.
Queries are catalog vectors with a little noise: a photo of a product that is in the catalog.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

from .columns import Columns
from .ivf import IvfIndex
from .search import Filters

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


def _memory_mb() -> dict[str, float]:
    """Resident memory: all of it, the process's own (anonymous), and mapped file pages (shared)."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            for key, name in (("VmRSS:", "rss"), ("RssAnon:", "anon"), ("RssFile:", "file"), ("VmHWM:", "peak")):
                if line.startswith(key):
                    out[name] = int(line.split()[1]) / 1024
    return out


def _disk_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20


# building ----------------------------------------------------------------------------------------

def build(directory: Path, offers: int, seed: int = 0) -> dict[str, float]:
    """Offers' columns, their photos' vectors (float32 on disk) and the IVF-SQ8 index."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    photos = np.where(rng.random(offers) < 0.2, rng.integers(2, 4, offers), 1)
    rows = int(photos.sum())
    pair_offer = np.repeat(np.arange(offers), photos)
    flags = {name: rng.random(offers) < rate for name, rate in RATES.items()}
    np.savez(
        directory / "columns.npz",
        item_id=np.arange(offers, dtype=np.int64) + 10**11,
        price=np.round(np.exp(rng.normal(math.log(40), 1.0, offers)), 2),
        sales=np.floor(rng.pareto(1.2, offers) * 20).astype(np.int64),
        created_day=np.full(offers, (TODAY - dt.date(1970, 1, 1)).days - 400, np.int32),
        pair_offer=pair_offer,
        **flags,
    )
    # products are clusters; an offer's photos are views of its product; relisted offers share one
    clusters = max(64, offers // 250)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    product = rng.integers(0, clusters, offers)[pair_offer]
    full = IvfIndex.full_vectors(directory, rows, DIM, mode="w+")
    for start in range(0, rows, CHUNK):
        stop = min(rows, start + CHUNK)
        part = centres[product[start:stop]] + rng.standard_normal((stop - start, DIM), dtype=np.float32) * 0.9
        part /= np.linalg.norm(part, axis=1, keepdims=True)
        full[start:stop] = part
    full.flush()
    generated = time.perf_counter()
    nlist = int(min(8192, max(64, 2 ** round(math.log2(4 * math.sqrt(rows))))))  # lists of ~sqrt(rows)/4
    sample = np.asarray(full[np.sort(rng.choice(rows, min(rows, nlist * 40), replace=False))])
    index = IvfIndex.train(DIM, sample, nlist)
    trained = time.perf_counter()
    nearest = IvfIndex.centroids(index)
    for start in range(0, rows, CHUNK):
        stop = min(rows, start + CHUNK)
        IvfIndex.add(index, nearest, full[start:stop], np.arange(start, stop, dtype=np.int64))
    IvfIndex.write(directory, index, rows, nprobe=16)
    done = time.perf_counter()
    return {
        "offers": offers,
        "vectors": rows,
        "nlist": nlist,
        "generate_s": generated - started,
        "train_s": trained - generated,
        "add_s": done - trained,
        "build_s": done - started,
        "build_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def load_columns(directory: Path) -> Columns:
    data = np.load(directory / "columns.npz")
    offers = len(data["item_id"])
    pair_offer = data["pair_offer"]
    return Columns(
        item_id=data["item_id"],
        price=data["price"],
        sales=data["sales"],
        flags={name: data[name] for name in ("support_dropshipping", "is_factory", "verified_supplier", "free_shipping")},
        new_arrival=data["new_arrival"].astype(np.int8),
        created_day=data["created_day"],
        pair_offer=pair_offer,
        pair_image=np.arange(len(pair_offer), dtype=np.int64),
        images=len(pair_offer),
    ) if offers else Columns.empty()


# measuring ---------------------------------------------------------------------------------------

def cases(columns: Columns) -> dict[str, Filters]:
    """No filter, each boolean, price ranges keeping about 1%, 10% and 50%, everything at once."""
    p = np.quantile(columns.price, [0.45, 0.46, 0.40, 0.50, 0.25, 0.75])
    price = lambda lo, hi: {"price_start": Decimal(f"{lo:.2f}"), "price_end": Decimal(f"{hi:.2f}")}  # noqa: E731
    out = {"none": Filters()}
    out |= {name: Filters(**{name: True}) for name in RATES}
    out["price ~1%"] = Filters(**price(p[0], p[1]))
    out["price ~10%"] = Filters(**price(p[2], p[3]))
    out["price ~50%"] = Filters(**price(p[4], p[5]))
    out["all filters"] = Filters(**price(p[4], p[5]), **{name: True for name in RATES})
    return out


@dataclasses.dataclass
class Case:
    name: str
    kept: float  # share of vectors the filter keeps
    p50_ms: float
    p99_ms: float
    recall: float | None = None


def _exact_top(full: np.ndarray, queries: np.ndarray, masks: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Exact top-k ids per filter case, one pass over the full vectors for all queries and cases."""
    best = {name: (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)) for name in masks}
    for start in range(0, len(full), CHUNK):
        stop = min(len(full), start + CHUNK)
        scores = np.asarray(full[start:stop]) @ queries.T  # [rows, queries]
        ids = np.arange(start, stop)
        for name, mask in masks.items():
            keep = mask[start:stop]
            if not keep.any():
                continue
            s, i = scores[keep].T, ids[keep]
            top_s, top_i = best[name]
            merged_s = np.concatenate([top_s, s], axis=1)
            merged_i = np.concatenate([top_i, np.broadcast_to(i, s.shape)], axis=1)
            pick = np.argpartition(-merged_s, k - 1, axis=1)[:, :k] if merged_s.shape[1] > k else np.argsort(-merged_s, axis=1)
            best[name] = (np.take_along_axis(merged_s, pick, 1), np.take_along_axis(merged_i, pick, 1))
    return best


def measure(directory: Path, queries: int = 200, seed: int = 1) -> dict[str, object]:
    opened = time.perf_counter()
    index = IvfIndex.open(directory)
    columns = load_columns(directory)
    open_s = time.perf_counter() - opened
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(index), queries, replace=False))
    query_vectors = index.vectors(picks) + rng.standard_normal((queries, index.dim)).astype(np.float32) * 0.01
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    filters = cases(columns)
    masks, mask_ms = {}, {}
    for name, f in filters.items():
        started = time.perf_counter()
        masks[name] = None if name == "none" else columns.select(f, TODAY, 30).images
        mask_ms[name] = (time.perf_counter() - started) * 1000
    results: dict[str, list[np.ndarray]] = {}
    table: list[Case] = []
    for name in filters:
        allowed = masks[name]
        times, found = [], []
        for q in query_vectors:
            started = time.perf_counter()
            scores, ids = index.search(q, 100, allowed)
            times.append((time.perf_counter() - started) * 1000)
            found.append(ids[scores >= THRESHOLD])
        results[name] = found
        kept = 1.0 if allowed is None else float(allowed.mean())
        table.append(Case(name, kept, statistics.median(times), float(np.percentile(times, 99))))
    # sorts: the candidates of an unfiltered search, ordered by the offers' columns
    image_offer = columns.pair_offer
    for sort, key in {"sales": lambda o: -columns.sales[o], "price_up": lambda o: columns.price[o], "price_down": lambda o: -columns.price[o]}.items():
        times = []
        for q in query_vectors:
            started = time.perf_counter()
            _, ids = index.search(q, 1000, None)
            offers = image_offer[ids]
            _ = offers[np.argsort(key(offers), kind="stable")][:20]
            times.append((time.perf_counter() - started) * 1000)
        table.append(Case(f"sort {sort} (1000 cand.)", 1.0, statistics.median(times), float(np.percentile(times, 99))))
    memory = _memory_mb()
    exact = _exact_top(index._full, query_vectors, {n: (np.ones(len(index), bool) if m is None else m) for n, m in masks.items()}, 100)
    for case in table:
        if case.name in results:
            # the candidate set is what passes the similarity threshold: recall of that, per query
            truth_scores, truth_ids = exact[case.name]
            hits = []
            for found, t_scores, t_ids in zip(results[case.name], truth_scores, truth_ids):
                truth = set(t_ids[(t_ids >= 0) & (t_scores >= THRESHOLD)].tolist())
                if truth:
                    hits.append(len(truth & set(found.tolist())) / len(truth))
            case.recall = float(np.mean(hits)) if hits else None
    return {
        "open_s": open_s,
        "memory_after_searches_mb": memory,
        "mask_ms": mask_ms,
        "cases": [dataclasses.asdict(c) for c in table],
        "disk_mb": _disk_mb(directory),
    }


def table(report: dict[str, object]) -> str:
    b, m = report["build"], report["memory_after_searches_mb"]
    lines = [
        f"{b['offers']:,} offers, {b['vectors']:,} vectors (1280-d), IVF{b['nlist']}-SQ8 + float32 re-scoring",
        f"build {b['build_s']:.0f} s (generate {b['generate_s']:.0f}, train {b['train_s']:.0f}, add {b['add_s']:.0f}), "
        f"build peak RSS {b['build_peak_rss_mb']:.0f} MB; disk {report['disk_mb']:.0f} MB; "
        f"open {report['open_s']:.2f} s; after the searches: RSS {m['rss']:.0f} MB = own {m['anon']:.0f} MB "
        f"+ mapped files {m['file']:.0f} MB (shared page cache)",
        f"{'case':<26} {'kept':>7} {'p50 ms':>8} {'p99 ms':>8} {'recall@100':>11}",
    ]
    for c in report["cases"]:
        recall = "" if c["recall"] is None else f"{c['recall']:.4f}"
        lines.append(f"{c['name']:<26} {c['kept']:>7.1%} {c['p50_ms']:>8.2f} {c['p99_ms']:>8.2f} {recall:>11}")
    return "\n".join(lines)


def run(directory: Path, offers: int, queries: int, output: Path | None) -> dict[str, object]:
    """Build in a child process (its peak memory is the build's), then measure here."""
    import faiss

    faiss.omp_set_num_threads(1)  # a search request is served by one thread; workers scale out
    built = subprocess.run(
        [sys.executable, "-m", "snapsource.bench", "--build", str(directory), str(offers)],
        capture_output=True, text=True, check=True,
    )
    report = {"build": json.loads(built.stdout.strip().splitlines()[-1]), **measure(directory, queries)}
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":  # the build step, in its own process
    assert sys.argv[1] == "--build"
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    print(json.dumps(build(Path(sys.argv[2]), int(sys.argv[3]))))
