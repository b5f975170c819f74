"""`snapsource bench` end to end on a small synthetic catalog: built into a real data dir, measured
in process and over HTTP against `serve --workers 2`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from snapsource.store.vectors.faiss_store import SQ8_MARGIN
from snapsource.tools import bench


def test_bench_reports_every_case_with_its_recall_and_serves_the_catalog(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "snapsource", "bench", "--n", "12000", "--queries", "20", "--data", str(tmp_path / "d"),
         "--output", str(out), "--http-seconds", "3", "--concurrency", "4"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    names = [c["name"] for c in report["cases"]]
    assert {"none", "price ~1%", "price ~10%", "price ~50%", "all filters", *bench.RATES} <= set(names)
    for case in report["cases"]:
        assert case["p50_ms"] > 0 and case["p99_ms"] >= case["p50_ms"]
        assert case["recall"] is None or case["recall"] >= 0.97, case
    build = report["build"]
    assert build["vectors"] >= 12000 and build["nlist"] > 0  # large enough for an IVF base
    assert report["sq8_max_error"] < SQ8_MARGIN
    http = report["http"]
    assert http["requests"] > 0 and http["errors"] == 0 and http["statuses"] == {"200": http["requests"]}
    assert http["page1_p50_ms"] > 0 and http["page5_p50_ms"] > 0
    assert "p50 ms" in run.stdout and "req/s" in run.stdout


def test_changes_without_a_rebuild_are_measured_and_undone(tmp_path, monkeypatch):
    from snapsource.store.vectors import faiss_store

    monkeypatch.setattr(faiss_store, "COMPACT_DELTA", 100)
    bench.build(tmp_path, 12000)
    before = faiss_store.FaissStore(tmp_path / "index", bench.model_identity(), bench.DIM)
    ids, vectors = before.ids(), before.vectors(before.ids()[:50])
    report = bench.incremental(tmp_path, changes=500, queries=20)
    assert report["stats_with_delta"]["delta"] == 500 and report["stats_with_delta"]["masked"] == 500
    assert report["compaction"]["added"] == 500 and not report["compaction"]["retrained"]
    after = faiss_store.FaissStore(tmp_path / "index", bench.model_identity(), bench.DIM)
    assert np.array_equal(after.ids(), ids) and np.allclose(after.vectors(ids[:50]), vectors)
    assert after.stats()["delta"] == 0 and after.stats()["masked"] == 0
