"""`snapsource bench` end to end on a small synthetic catalog, and the IVF planner's guarantees."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from snapsource import bench
from snapsource.ivf import IvfIndex


def test_bench_reports_every_case_with_its_recall(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "snapsource", "bench", "--n", "3000", "--queries", "20", "--data", str(tmp_path / "d"), "--output", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    names = [c["name"] for c in report["cases"]]
    assert {"none", "price ~1%", "price ~10%", "price ~50%", "all filters", *bench.RATES} <= set(names)
    for case in report["cases"]:
        assert case["p50_ms"] > 0 and case["p99_ms"] >= case["p50_ms"]
        assert case["recall"] is None or case["recall"] >= 0.97, case
    assert report["build"]["vectors"] >= 3000 and "p50 ms" in run.stdout


def test_filtered_search_returns_only_allowed_ids_at_every_selectivity(tmp_path):
    bench.build(tmp_path, 4000, seed=3)
    index = IvfIndex.open(tmp_path)
    full = np.asarray(index._full)
    rng = np.random.default_rng(0)
    query = full[17] + rng.standard_normal(full.shape[1]).astype(np.float32) * 0.01
    for keep in (0.005, 0.05, 0.5):  # the exact plan, then the IVF plan with more lists
        allowed = rng.random(len(index)) < keep
        allowed[17] = True
        scores, ids = index.search(query, 10, allowed)
        assert allowed[ids].all() and ids[0] == 17
        allowed_ids = np.flatnonzero(allowed)
        exact_scores = full[allowed] @ query
        top = np.argsort(-exact_scores)[:10]
        candidates = set(allowed_ids[top][exact_scores[top] >= bench.THRESHOLD].tolist())
        assert candidates and candidates <= set(ids.tolist())  # every match over the threshold is found
        assert np.all(np.diff(scores) <= 0)
    assert index.search(query, 10, np.zeros(len(index), bool))[1].size == 0
