"""`snapsource bench upstream` on a tiny replay: a real `snapsource serve` in fallback mode on an
empty catalog in front of the TMAPI stand-in (0.5 s a search, so that the first landings finish
before the repeats), through the bench's own function."""

from __future__ import annotations

import json

from snapsource.tools import bench_upstream


def test_a_tiny_replay_adds_up_and_matches_the_standins_counts(tmp_path, monkeypatch):
    from snapsource.tools import tmapi_standin

    standins = []  # the stand-in the bench makes, to read its own counters
    made = tmapi_standin.luma_standin

    def kept(*args, **kwargs):
        stand = made(*args, **kwargs)
        standins.append(stand)
        return stand

    monkeypatch.setattr(tmapi_standin, "luma_standin", kept)
    out = tmp_path / "bench-upstream.json"
    opts = bench_upstream.Options(
        work=tmp_path / "work", output=out, searches=24, photos=8, latency=0.5, clients=2, price_per_call=0.01
    )
    report = bench_upstream.run(opts, say=lambda line: None)

    replay = report["replay"]
    assert replay["searches"] == 24 and replay["errors"] == {}
    assert sum(replay["by_source"].values()) == 24 == replay["answered"]
    (stand,) = standins
    calls = replay["upstream_calls"]
    assert calls["standin"]["searches"] == stand.calls["search"] == calls["admin"]["calls"] == replay["by_source"]["upstream"]
    assert calls["standin"]["conversions"] == stand.calls["convert"] == calls["admin"]["conversions"]
    assert calls["agree"] and calls["admin"]["local"] == replay["by_source"]["local"]
    assert calls["admin"]["cached"] == replay["by_source"]["upstream_cache"]
    assert replay["saved"]["calls"] == 24 - replay["by_source"]["upstream"] == replay["saved"]["admin_saved_calls"]

    records = [json.loads(line) for line in (tmp_path / "work" / "replay-searches.jsonl").read_text().splitlines()]
    assert [r["at"] for r in records] == list(range(24))
    first_upstream = min(r["done_s"] for r in records if r["source"] == "upstream")
    assert any(r["source"] == "local" and r["sent_s"] > first_upstream for r in records)  # repeats answered locally
    assert all(r["source"] != "upstream_cache" or r["sent_s"] > first_upstream for r in records)

    written = json.loads(out.read_text())
    for field in ("share", "latency", "right_product", "saved", "found_locally_after_arrival", "local_share_by_tenth"):
        assert field in written["replay"], field
    assert set(written["replay"]["latency"]) == set(bench_upstream.SOURCES)
    assert written["replay"]["latency"]["upstream"]["p50_ms"] > 0 and len(written["replay"]["local_share_by_tenth"]) == 10
    found = written["replay"]["found_locally_after_arrival"]
    assert found["products_arrived"] >= 1 and {"median_searches", "p90_searches", "next_search_share", "never_share"} <= set(
        found
    )
    assert written["photos"]["query_photos"] == 8 and written["photos"]["near_duplicates"] == 4
    assert bench_upstream.tables(written)  # the rich tables render from the JSON
