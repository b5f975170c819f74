"""`snapsource bench --profile scaleout`: the bench's synthetic catalog copied from its data dir into
PostgreSQL and Milvus, then the same cases measured on both profiles, side by side.

The copy is what a move to the scale-out profile does: offers, images, their links and the image
vectors go into PostgreSQL with COPY; the Milvus collection is filled from there (one entity per
offer and image, with the filter fields), flushed, and its IVF_SQ8 index built. Queries, filter
cases and the exact top-100 that recall is measured against are the default profile's.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from snapsource.store import bulk
from snapsource.store.catalog import Catalog
from snapsource.store.columns import OfferColumns
from snapsource.store.vectors.faiss_store import FaissStore
from snapsource.store.vectors.milvus import MilvusStore
from snapsource.tools import bench

COPY_ROWS = 20_000


def load(directory: Path, catalog_url: str, vectors_url: str) -> dict[str, float]:
    """Copy the bench's data dir into an empty PostgreSQL database and Milvus collection."""
    started = time.perf_counter()
    catalog = Catalog(directory / "scaleout", catalog_url)
    if catalog.count():
        raise RuntimeError(f"the catalog database {catalog_url} is not empty")
    lite = Catalog(directory)  # the bench's own, in SQLite
    for table in ("images", "offers", "offer_images"):
        bulk.insert(catalog, table, bulk.rows(lite, table))
    store = FaissStore(directory / "index", bench.model_identity(), bench.DIM)
    ids = store.ids()

    def vectors():
        for start in range(0, len(ids), COPY_ROWS):
            part = ids[start : start + COPY_ROWS]
            yield from zip(part.tolist(), (v.tobytes() for v in store.vectors(part)))

    bulk.insert(catalog, "image_vectors", vectors())
    bulk.analyze(catalog)
    copied = time.perf_counter()
    milvus = MilvusStore(vectors_url, catalog, bench.model_identity(), bench.DIM)
    items = sorted(lite.offer_ids())
    lite.close()
    for start in range(0, len(items), COPY_ROWS):
        milvus.offers_changed(items[start : start + COPY_ROWS])
    filled = time.perf_counter()
    _flush_and_index(milvus)
    indexed = time.perf_counter()
    entities = milvus.entities()
    milvus.close()
    catalog.close()
    store.close()
    return {
        "postgres_copy_s": copied - started,
        "milvus_fill_s": filled - copied,
        "milvus_index_s": indexed - filled,
        "entities": entities,
    }


def _flush_and_index(milvus: MilvusStore, settle: float = 30.0, limit: float = 7200.0) -> None:
    """Seal the collection's segments and wait until every row is indexed and stays so for
    `settle` seconds: Milvus merges the sealed segments afterwards and indexes the merged ones
    again, and until then it scores their rows by brute force. (A first million-offer run that
    waited only for `wait_for_index_building_complete` measured p99 over 900 ms, with a million
    rows still pending.)"""
    from pymilvus import Collection, connections, utility

    alias = "snapsource-bench"
    connections.connect(alias=alias, uri=milvus.address.uri)
    try:
        Collection(milvus.address.collection, using=alias).flush()
        utility.wait_for_index_building_complete(milvus.address.collection, using=alias)
        deadline, quiet_since = time.monotonic() + limit, None
        while time.monotonic() < deadline:
            pending = utility.index_building_progress(milvus.address.collection, using=alias).get("pending_index_rows", 0)
            if pending:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return
            time.sleep(2)
        raise TimeoutError(f"Milvus still had rows to index after {limit:.0f} s")
    finally:
        connections.disconnect(alias)


def _process_mb(name: str) -> float:
    """Resident memory of the processes called `name` (the Milvus server), in MB."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                total += bench._memory_mb(comm.parent.name)["rss"]
        except OSError:
            continue
    return total


def measure(directory: Path, catalog_url: str, vectors_url: str, queries: int = 200, seed: int = 1) -> dict[str, object]:
    """The default profile's cases against PostgreSQL (filter columns) and Milvus (search)."""
    store = FaissStore(directory / "index", bench.model_identity(), bench.DIM)
    catalog = Catalog(directory / "scaleout", catalog_url)
    loaded = time.perf_counter()
    offer_columns = OfferColumns(catalog)
    columns = offer_columns.current()
    columns_s = time.perf_counter() - loaded
    milvus = MilvusStore(vectors_url, catalog, bench.model_identity(), bench.DIM)
    ids, query_vectors = bench.queries_of(store, queries, seed)
    filters = bench.cases(columns)
    selections = {name: None if name == "none" else columns.select(bench.where_of(f)) for name, f in filters.items()}
    table: list[bench.Case] = []
    results: dict[str, list[np.ndarray]] = {}
    for name, selection in selections.items():
        share = 1.0 if selection is None else selection.share
        found: list[np.ndarray] = []

        def one(q, selection=selection, found=found):
            found.append(milvus.search_offers(q, 100, columns, selection, bench.THRESHOLD).image_ids)

        one(query_vectors[0])  # the first search of a filter loads its fields
        found.clear()
        times = bench._timed(one, [(q,) for q in query_vectors])
        results[name] = found
        table.append(bench.Case(name, share, statistics.median(times), float(np.percentile(times, 99))))
    for sort, key in bench.sort_keys(columns).items():

        def ordered(q, key=key):
            rows = columns.rows_of(milvus.search_offers(q, 1000, columns, None, bench.THRESHOLD).item_ids)
            return rows[np.argsort(key(rows), kind="stable")][:20]

        times = bench._timed(ordered, [(q,) for q in query_vectors])
        table.append(bench.Case(f"sort {sort} (1000 cand.)", 1.0, statistics.median(times), float(np.percentile(times, 99))))
    present = np.zeros(columns.images, bool)
    present[ids] = True
    masks = {n: present if s is None else s.images & present for n, s in selections.items()}
    bench.recall(table, results, bench._exact_top(store._rows, ids, query_vectors, masks, 100))
    size = bulk.size_bytes(catalog)
    report = {
        "columns_load_s": columns_s,
        "index": milvus.address.index,
        "search_params": {
            name: milvus.address.search_params(100, 1.0 if s is None else s.share) for name, s in selections.items()
        },
        "cases": [dataclasses.asdict(c) for c in table],
        "milvus_rss_mb": _process_mb("milvus"),
        "postgres_mb": size / 2**20,
        "entities": milvus.entities(),
    }
    milvus.close()
    catalog.close()
    store.close()
    return report


def side_by_side(default: dict[str, Any], scaleout: dict[str, Any]) -> str:
    """The reports of both profiles (JSON documents: `bench.run`'s, and `measure`'s with the load
    and HTTP) as text."""
    b, load_report = default["build"], scaleout["load"]
    lines = [
        f"{b['offers']:,} offers, {b['vectors']:,} vectors (1280-d): default = SQLite + faiss IVF{b['nlist']}-SQ8 "
        f"(re-scored); scaleout = PostgreSQL + Milvus {scaleout['index']}, {scaleout['entities']:,} offer-image entities",
        f"scaleout load: PostgreSQL COPY {load_report['postgres_copy_s']:.0f} s, Milvus fill {load_report['milvus_fill_s']:.0f} s, "
        f"flush and index {load_report['milvus_index_s']:.0f} s; Milvus RSS {scaleout['milvus_rss_mb']:.0f} MB, "
        f"PostgreSQL database {scaleout['postgres_mb']:.0f} MB; filter columns from PostgreSQL in {scaleout['columns_load_s']:.2f} s",
        f"{'':<28} {'':>7} {'default':^29} {'scaleout':^29}",
        f"{'case':<28} {'kept':>7} {'p50 ms':>8} {'p99 ms':>8} {'recall':>11} {'p50 ms':>8} {'p99 ms':>8} {'recall':>11}",
    ]
    theirs = {c["name"]: c for c in scaleout["cases"]}
    for ours in default["cases"]:
        other = theirs.get(ours["name"])
        row = f"{ours['name']:<28} {ours['kept']:>7.1%} " + _cells(ours)
        if other:
            row += " " + _cells(other)
        lines.append(row)
    http_default, http_scaleout = default.get("http"), scaleout.get("http")
    if http_default and http_scaleout:
        lines.append(
            f"HTTP, serve --workers {http_default['workers']}, {http_default['seconds']:.0f} s at concurrency "
            f"{http_default['concurrency']}:"
            f"{'default':>26} {'scaleout':>33}"
        )
        for label, pick in (
            (
                "photos not searched before",
                lambda h: f"{h['requests_per_s']:.1f} req/s, p50 {h['p50_ms']:.0f}, p99 {h['p99_ms']:.0f} ms",
            ),
            (
                "the same photos again",
                lambda h: f"{h['repeated']['requests_per_s']:.1f} req/s, p50 {h['repeated']['p50_ms']:.0f}, p99 {h['repeated']['p99_ms']:.0f} ms",
            ),
            ("page 1 / page 5, p50", lambda h: f"{h['page1_p50_ms']:.1f} / {h['page5_p50_ms']:.1f} ms"),
            ("errors (fresh, repeated)", lambda h: f"{h['errors']}, {h['repeated']['errors']}"),
            ("each worker's own memory", lambda h: ", ".join(f"{w['anon']:.0f}" for w in h["workers_memory_mb"]) + " MB"),
        ):
            lines.append(f"  {label:<44} {pick(http_default):>34} {pick(http_scaleout):>34}")
    return "\n".join(lines)


def _cells(case: dict[str, Any]) -> str:
    recall = "" if case["recall"] is None else f"{case['recall']:.4f}"
    return f"{case['p50_ms']:>8.2f} {case['p99_ms']:>8.2f} {recall:>11}"
