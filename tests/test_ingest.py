"""Catalog import of the real luma catalog: upsert, skip unchanged, delete missing, bad rows."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LUMA, PROFILE, luma_offers, open_resources, profile_env, profile_settings, write_catalog
from snapsource.ingest.pipeline import DeleteMissing, ingest
from snapsource.resources import Resources

pytestmark = pytest.mark.profiles


def open_data(path: Path) -> Resources:
    return open_resources(path)


def test_luma_import_report(luma):
    resources, report = luma
    assert report.rows == 214 and report.added == 214 and report.skipped == 0
    assert report.problems == []
    assert resources.catalog.count() == 214
    # every image of every offer is indexed; relisted twins share stored images
    refs = {p for o in luma_offers() for p in [o["img"], *o["images"]]}
    assert len(resources.index) == len(refs) == len(resources.catalog.image_ids())
    assert set(resources.index.ids().tolist()) == resources.catalog.image_ids()


def test_reingest_skips_unchanged_images(resources):
    before = len(resources.index)
    report = ingest(resources, LUMA)
    assert report.images_embedded == 0
    assert report.unchanged == 214 and report.added == report.updated == 0
    assert len(resources.index) == before


def test_upsert_updates_fields_and_delete_missing_removes_offers(tmp_path):
    offers = luma_offers()[:6]
    resources = open_data(tmp_path / "data")
    first = ingest(resources, write_catalog(tmp_path / "a.jsonl", offers))
    assert first.added == 6

    changed = [dict(o) for o in offers[:5]]
    changed[0]["price"] = "1.23"
    gone = offers[5]
    report = ingest(resources, write_catalog(tmp_path / "b.jsonl", changed))
    assert report.updated == 1 and report.unchanged == 4 and report.deleted == 0
    assert gone["item_id"] in resources.catalog.offer_ids()  # without --delete-missing nothing is removed
    facts = resources.catalog.facts([changed[0]["item_id"]])[changed[0]["item_id"]]
    assert str(facts.price) == "1.23"

    # 1 of 6 offers is more than delete_missing_max_share (10%): refused unless confirmed
    report = ingest(resources, write_catalog(tmp_path / "b.jsonl", changed), delete_missing=True)
    assert report.deleted == 0 and report.deletion is not None and "more than delete_missing_max_share" in report.deletion.refused
    assert report.deletion.missing == 1 and report.deletion.sample == [(gone["item_id"], gone["title"])]
    assert gone["item_id"] in resources.catalog.offer_ids()
    report = ingest(resources, write_catalog(tmp_path / "b.jsonl", changed), delete_missing=DeleteMissing(confirmed=True))
    assert report.deleted == 1
    assert gone["item_id"] not in resources.catalog.offer_ids()

    # its photos, shown by no other offer, left the index and the disk; the others' stayed
    def shas(offers: list[dict]) -> set[str]:
        paths = {p for o in offers for p in [o["img"], *o["images"]]}
        return {hashlib.sha256((LUMA.parent / p).read_bytes()).hexdigest() for p in paths}

    kept, only_gone = shas(changed), shas([gone]) - shas(changed)
    assert only_gone, "the deleted offer should have photos of its own"
    assert all(resources.catalog.image_by_sha(sha) is None for sha in only_gone)
    assert all(resources.catalog.image_by_sha(sha) is not None for sha in kept)
    assert set(resources.index.ids().tolist()) == resources.catalog.image_ids()
    assert len(resources.catalog.image_ids()) == len(kept)
    files = list((tmp_path / "data" / "images").rglob("*.jpg"))
    assert len(files) == len(kept)


def test_bad_rows_and_images_are_reported_and_skipped(tmp_path):
    offers = luma_offers()[:4]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((LUMA.parent / offers[0]["img"]).read_bytes()[:200])
    bad_image = dict(offers[1], img=str(broken), images=[])
    half_bad = dict(offers[2])
    half_bad["images"] = [*half_bad["images"], str(tmp_path / "missing.jpg")]
    lines = [
        "{not json",
        json.dumps(dict(offers[3], item_id=777, price="cheap")),
    ]
    path = write_catalog(tmp_path / "c.jsonl", [offers[0], bad_image, half_bad], lines)  # absolute paths stay

    resources = open_data(tmp_path / "data")
    report = ingest(resources, path)
    assert report.added == 2 and report.skipped == 1 and report.rejected == 2 and report.rows == 5
    by_row: dict[tuple[int, int | None], str] = {}
    for p in report.problems:
        by_row[(p.row, p.item_id)] = by_row.get((p.row, p.item_id), "") + p.reason + " | "
    assert "not valid JSON" in by_row[(4, None)]
    assert "price" in by_row[(5, 777)]
    assert "not a readable image" in by_row[(2, offers[1]["item_id"])]
    assert "none of its images" in by_row[(2, offers[1]["item_id"])]
    assert "missing.jpg" in by_row[(3, offers[2]["item_id"])]
    assert resources.catalog.offer_ids() == {offers[0]["item_id"], offers[2]["item_id"]}

    # a rejected or skipped row keeps --delete-missing from guessing what is missing, confirmed or not
    write_catalog(tmp_path / "other.jsonl", [offers[3]])
    ingest(resources, tmp_path / "other.jsonl")
    report = ingest(resources, path, delete_missing=DeleteMissing(confirmed=True))
    assert (
        report.deleted == 0
        and report.deletion is not None
        and "3 row(s) of the file were rejected or skipped" in report.deletion.refused
    )
    assert offers[3]["item_id"] in resources.catalog.offer_ids()


def test_cli_exit_codes(tmp_path):
    good = write_catalog(tmp_path / "good.jsonl", luma_offers()[:2])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": 1}\nnot json\n')
    cli = [sys.executable, "-m", "snapsource"]
    env = {**os.environ, **profile_env(profile_settings())}
    ok = subprocess.run([*cli, "ingest", str(good), "--data", str(tmp_path / "d")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "added 2" in ok.stderr
    failed = subprocess.run([*cli, "ingest", str(bad), "--data", str(tmp_path / "d2")], capture_output=True, text=True, env=env)
    assert failed.returncode == 1
    assert "not valid JSON" in failed.stderr and "title" in failed.stderr


@pytest.mark.skipif(PROFILE != "default", reason="the faiss store's own files")
def test_index_of_another_model_is_a_clear_error(tmp_path):
    from snapsource.store.vectors import IndexMismatch
    from snapsource.store.vectors.faiss_store import FaissStore

    index = FaissStore(tmp_path, model="other-model@9", dim=4)
    index.save()
    with pytest.raises(IndexMismatch, match="--rebuild"):
        FaissStore(tmp_path, model="efficientnet-lite0@1;trim=0.08", dim=4)


def test_images_by_http_url_and_rebuild(tmp_path):
    """Catalog photos given as http URLs (a real server on loopback), then --rebuild re-embeds them."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(LUMA.parent))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        offers = [dict(o, img=base + o["img"], images=[base + p for p in o["images"]]) for o in luma_offers()[:3]]
        offers[2]["images"] = [*offers[2]["images"], base + "images/no-such-photo.jpg"]
        path = tmp_path / "remote.jsonl"
        path.write_text("\n".join(json.dumps(o) for o in offers) + "\n")
        resources = open_data(tmp_path / "data")
        report = ingest(resources, path)
        assert report.added == 3
        assert [p.item_id for p in report.problems] == [offers[2]["item_id"]]
        assert "404" in report.problems[0].reason
        embedded = report.images_embedded
        assert embedded == len(resources.index) > 3

        again = ingest(resources, path, rebuild=True)
        assert again.images_embedded == embedded and len(resources.index) == embedded
    finally:
        httpd.shutdown()


def test_repeated_item_id_later_row_wins(tmp_path):
    offer = luma_offers()[0]
    path = write_catalog(tmp_path / "dup.jsonl", [offer, dict(offer, title="Renamed")])
    resources = open_data(tmp_path / "data")
    report = ingest(resources, path, outcomes=True)
    assert resources.catalog.count() == 1
    assert [p.row for p in report.problems] == [2] and "this row is imported and row 1 is not" in report.problems[0].reason
    # the rows add up: the first is replaced (not also counted as added)
    assert (report.added, report.updated, report.rejected) == (1, 0, 1)
    assert report.outcomes is not None
    assert sorted((o.row, o.result) for o in report.outcomes) == [(1, "rejected"), (2, "added")]
    doc, _ = resources.catalog.documents([offer["item_id"]])[offer["item_id"]]
    assert json.loads(doc)["title"] == "Renamed"


def test_cli_summary_counts_every_row(tmp_path):
    """3 rows, 2 of them invalid: the summary adds up to the rows; a file where no row imports says
    so, fails, and leaves no data dir behind (when there was none)."""
    good = luma_offers()[0]
    path = write_catalog(tmp_path / "three.jsonl", [good], ["{not json", json.dumps(dict(good, item_id=778, price="cheap"))])
    cli = [sys.executable, "-m", "snapsource", "ingest"]
    env = {**os.environ, **profile_env(profile_settings()), "COLUMNS": "200"}
    some = subprocess.run([*cli, str(path), "--data", str(tmp_path / "d")], capture_output=True, text=True, env=env)
    assert some.returncode == 0, some.stderr
    assert "rows 3: added 1, updated 0, unchanged 0, rejected 2 (invalid), skipped 0 (no readable image)" in some.stderr
    assert "nothing imported" not in some.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n" + json.dumps(dict(good, price="cheap")) + "\n")
    none = subprocess.run([*cli, str(bad), "--data", str(tmp_path / "new")], capture_output=True, text=True, env=env)
    assert none.returncode == 1
    assert "rows 2: added 0, updated 0, unchanged 0, rejected 2 (invalid)" in none.stderr and "nothing imported" in none.stderr
    assert not (tmp_path / "new").exists()
    again = subprocess.run([*cli, str(bad), "--data", str(tmp_path / "d")], capture_output=True, text=True, env=env)
    assert again.returncode == 1 and "nothing imported" in again.stderr
    assert (tmp_path / "d" / "catalog.db").exists() or PROFILE != "default"  # a data dir that was there stays


def test_out_of_range_numbers_and_too_long_text_reject_their_row_only(tmp_path):
    """A sales count past any 64-bit integer (the OverflowError that failed whole imports), a long
    digit string, a title of megabytes, a 5,000-digit number: each rejects its own row, naming the
    field and its limit; the good row imports and the stored documents stay small."""
    good, *others = luma_offers()[:6]
    lines = [
        json.dumps(dict(others[0], sale_info={"sale_quantity_int": 10**29})),
        json.dumps(dict(others[1], sale_info={"sale_quantity": "1" * 30})),
        json.dumps(dict(others[2], title="t" * 2_000_000)),
        json.dumps(dict(others[3], price="1e300")),
        '{"item_id": 5, "title": "x", "img": "a.jpg", "price": "1", "moq": ' + "9" * 5000 + "}",
        json.dumps(dict(others[4], shop_info={"company_name": "c" * 301})),
    ]
    path = write_catalog(tmp_path / "c.jsonl", [good], lines)
    resources = open_data(tmp_path / "data")
    report = ingest(resources, path)
    assert report.added == 1 and report.rejected == 6, report.problems
    reasons = {p.row: p.reason for p in report.problems}
    assert "sale_info.sale_quantity_int: Input should be less than or equal to 1000000000000000" in reasons[2]
    assert "sale_info.sale_quantity_int: Input should be less than or equal to 1000000000000000" in reasons[3]
    assert "title: String should have at most 1000 characters" in reasons[4]
    assert "price: '1e300' is over the largest price, 1,000,000,000" in reasons[5]
    assert "a number of more than 4,300 digits" in reasons[6] and "sys.set_int" not in reasons[6]
    assert "shop_info.company_name: String should have at most 300 characters" in reasons[7]
    assert all(len(reason) < 1000 for reason in reasons.values())
    assert resources.catalog.offer_ids() == {good["item_id"]}


def test_cli_delete_missing_refuses_shows_and_asks(tmp_path):
    """The real command on a catalog of 20 offers: a file with a rejected row deletes nothing; one
    that would delete half of the catalog shows the count and a sample and asks for --yes;
    --dry-run writes nothing; what is deleted is logged with the offers' documents kept."""
    offers = luma_offers()[:20]
    data = tmp_path / "d"
    where = profile_settings()  # one catalog for the test and the command (a fresh one per call)
    resources = open_resources(data, **where)
    ingest(resources, write_catalog(tmp_path / "all.jsonl", offers))
    resources.close()
    cli = [sys.executable, "-m", "snapsource", "ingest", "--data", str(data), "--delete-missing"]
    env = {**os.environ, **profile_env(where), "COLUMNS": "200"}

    def run(path: Path, *flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, str(path), *flags], capture_output=True, text=True, env=env)

    def count() -> int:
        resources = open_resources(data, **where)
        try:
            return resources.catalog.count()
        finally:
            resources.close()

    typo = write_catalog(tmp_path / "typo.jsonl", offers[:6], ['{"item_id": 5, "title": "no price"}'])
    refused = run(typo, "--yes")
    assert refused.returncode == 1 and count() == 20, refused.stderr
    assert "14 of the catalog's 20 offers are not in the file" in refused.stderr
    assert "1 row(s) of the file were rejected or skipped" in refused.stderr and "deleted 0" in refused.stderr

    half = write_catalog(tmp_path / "half.jsonl", offers[:10])
    dry = run(half, "--dry-run")
    assert dry.returncode == 1 and count() == 20, dry.stderr
    assert "dry run, nothing written: rows 10: 0 new, 10 in the catalog already" in dry.stderr
    assert f"{offers[10]['item_id']} {offers[10]['title']!r}" in dry.stderr and "would be refused" in dry.stderr
    unconfirmed = run(half)
    assert unconfirmed.returncode == 1 and count() == 20
    assert "it would delete 10 of the catalog's 20 offers, more than delete_missing_max_share (10%)" in unconfirmed.stderr
    assert "--yes" in unconfirmed.stderr and "and 0 more" not in unconfirmed.stderr

    most = write_catalog(tmp_path / "most.jsonl", offers[:19])  # 1 of 20: within the share, no --yes needed
    within = run(most, "--dry-run")
    assert within.returncode == 0 and "--delete-missing would delete 1 offer(s)" in within.stderr and count() == 20
    assert run(most).returncode == 0 and count() == 19
    confirmed = run(half, "--yes")
    assert confirmed.returncode == 0 and count() == 10, confirmed.stderr
    assert "deleted 9 offer(s) not in the file" in confirmed.stderr
    kept = sorted((data / "deleted").glob("*.jsonl"))
    assert len(kept) == 2
    assert {json.loads(line)["item_id"] for line in kept[1].read_text().splitlines()} == {o["item_id"] for o in offers[10:19]}


def test_an_import_stops_asking_a_host_that_does_not_answer(tmp_path):
    """Photos on a host that refuses every connection: after UNREACHABLE_RUN of them in a row the
    rest fail at once, so the import is not held for hours; another host's photos still import."""
    from snapsource.ingest.pipeline import UNREACHABLE_RUN

    offers = luma_offers()[:3]
    dead = [dict(offers[0], item_id=900_000 + n, img=f"http://127.0.0.1:9/{n}.jpg", images=[]) for n in range(60)]
    good = dict(offers[1], img=str(LUMA.parent / offers[1]["img"]), images=[])
    path = tmp_path / "dead.jsonl"
    path.write_text("".join(json.dumps(offer) + "\n" for offer in [*dead, good]))
    resources = open_data(tmp_path / "data")
    try:
        started = time.perf_counter()
        report = ingest(resources, path, outcomes=True)
        seconds = time.perf_counter() - started
    finally:
        resources.close()
    reasons = [p.reason for p in report.problems if "127.0.0.1" in p.reason or "did not answer" in p.reason]
    gave_up = [r for r in reasons if f"did not answer the last {UNREACHABLE_RUN}" in r]
    assert report.added == 1 and report.skipped == 60, (report.added, report.skipped)
    assert len(gave_up) >= 60 - 2 * UNREACHABLE_RUN, reasons[:3]  # reading threads may each ask before the run is counted
    print(f"60 photos of a dead host: {seconds:.2f} s, {len(gave_up)} not asked")
