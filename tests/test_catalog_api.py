"""The catalog API over real HTTP: batches answered row by row and searchable at once, offers read,
listed and deleted, import jobs from an upload and from a URL, and who may call it.

Photos come from a loopback server that serves the luma catalog's folder (`fetch_allow` lets the
guarded fetcher reach it), inline as data: URIs, or as /img/ paths of stored photos.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import LUMA, luma_offers, open_resources, profile_settings, serve_workers
from snapsource.api.app import create_app
from snapsource.ingest import jobs
from snapsource.ingest.pipeline import ingest
from snapsource.ingest.rows import JsonLines
from snapsource.tools.loopback import serve

pytestmark = pytest.mark.profiles
ADMIN = {"Authorization": "Bearer catalog-admin-key"}


@contextmanager
def photo_server(directory: Path = LUMA.parent) -> Iterator[str]:
    """A folder (the luma catalog's) over HTTP on loopback; yields its base URL (ending in /)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An empty catalog behind a real server with an import runner, and the photo server."""
    resources = open_resources(tmp_path_factory.mktemp("catalog-api"), admin_key="catalog-admin-key", fetch_allow="127.0.0.1")
    app = create_app(resources=resources)
    runner = jobs.Runner(resources).start()
    app.state.import_runner = runner
    with photo_server() as photos, serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield resources, client, photos
    runner.stop()


def by_url(offer: dict, photos: str) -> dict:
    return dict(offer, img=photos + offer["img"], images=[photos + ref for ref in offer["images"][:1]])


def found_first(client: httpx.Client, token: str, img: str) -> int | None:
    body = client.get("/1688/search/image", params={"apiToken": token, "img_url": img, "page_size": 3}).json()
    items = body["data"]["items"] if body["code"] == 200 else []
    return items[0]["item_id"] if items else None


def test_who_may_change_the_catalog(world):
    resources, client, _ = world
    searching = resources.tokens.create("searching")
    cataloguing = resources.tokens.create("cataloguing", scopes=["catalog"])
    nobody = client.get("/catalog/offers")
    assert nobody.status_code == 401 and "admin key or a token with the catalog scope" in nobody.json()["msg"]
    wrong = client.get("/catalog/offers", params={"apiToken": searching})  # a read as well as a write
    assert (
        wrong.status_code == 403 and "lacks the catalog scope" in wrong.json()["msg"] and "--scope catalog" in wrong.json()["msg"]
    )
    unknown = client.get("/catalog/offers", params={"apiToken": "ss_never-made"})
    assert unknown.status_code == 401 and "neither the admin key nor a token" in unknown.json()["msg"]
    assert client.get("/catalog/offers", params={"apiToken": cataloguing}).status_code == 200
    assert client.get("/catalog/offers", headers={"Authorization": f"Bearer {cataloguing}"}).status_code == 200
    assert client.get("/catalog/offers", headers=ADMIN).status_code == 200
    # a catalog-only token does not search
    refused = client.get("/1688/search/image", params={"apiToken": cataloguing, "img_url": "/img/x.jpg"})
    assert refused.status_code == 401 and "lacks the search scope" in refused.json()["msg"]
    revoked = resources.tokens.create("cataloguing-revoked", scopes=["catalog"])
    resources.tokens.revoke("cataloguing-revoked")
    gone = client.get("/catalog/offers", headers={"Authorization": f"Bearer {revoked}"})
    assert gone.status_code == 401 and "was revoked on" in gone.json()["msg"]


def test_catalog_tokens_have_the_limits_and_metering_of_search(world):
    """Expiry, quota and rate as on search (439, 439, 503 with Retry-After), and every call counted."""
    resources, client, _ = world
    offer = luma_offers()[30]
    item_id = offer["item_id"]
    expired = resources.tokens.create("catalog-expired", scopes=["catalog"], expires=dt.date(2020, 1, 1))
    refused = client.post("/catalog/offers/delete", json={"item_ids": [item_id]}, params={"apiToken": expired})
    assert refused.status_code == 439 and "expired on 2020-01-01" in refused.json()["msg"], refused.text
    assert refused.json()["data"] is None

    quota = resources.tokens.create("catalog-quota", scopes=["catalog"], quota=2)
    assert [client.get("/catalog/offers", params={"apiToken": quota}).status_code for _ in range(2)] == [200, 200]
    over = client.get("/catalog/offers", params={"apiToken": quota})
    assert over.status_code == 439 and "all 2 calls are used" in over.json()["msg"]
    assert resources.tokens.info(quota).calls_used == 2

    slow = resources.tokens.create("catalog-qps", scopes=["catalog"], qps=0.5)
    assert client.get("/catalog/offers", params={"apiToken": slow}).status_code == 200
    limited = client.get("/catalog/offers", params={"apiToken": slow})
    assert limited.status_code == 503 and "concurrency limit exceeded" in limited.json()["msg"]
    assert int(limited.headers["Retry-After"]) >= 1

    plain = resources.tokens.create("catalog-metered", scopes=["catalog"])  # no limits: counted all the same
    assert client.get("/catalog/offers", headers={"Authorization": f"Bearer {plain}"}).status_code == 200
    assert client.get(f"/catalog/offers/{2**62}", params={"apiToken": plain}).status_code == 404
    assert resources.tokens.info(plain).calls_used == 2
    usage = {(u["endpoint"], u["calls"], u["errors"]) for u in resources.tokens.usage(name="catalog-metered")}
    assert usage == {("/catalog/offers", 1, 0), ("/catalog/offers/{item_id:int}", 1, 1)}

    before = {t.id: t.calls_used for t in resources.tokens.list()}
    for _ in range(3):  # the admin key: unlimited and not a token
        assert client.get("/catalog/offers", headers=ADMIN).status_code == 200
    assert {t.id: t.calls_used for t in resources.tokens.list()} == before


def test_a_batch_is_answered_row_by_row_and_searchable_at_once(world):
    resources, client, photos = world
    token = resources.tokens.create("batch")
    offers = luma_offers()[20:24]
    inline = "data:image/jpeg;base64," + base64.b64encode((LUMA.parent / offers[1]["img"]).read_bytes()).decode()
    batch = [
        by_url(offers[0], photos),
        dict(offers[1], img=inline, images=[]),
        dict(offers[2], img="/etc/passwd", images=[]),  # a path on the server: never read
        dict(offers[3], price="cheap"),
        dict(by_url(offers[3], photos), images=[photos + "no-such-photo.jpg"]),  # one photo of two fails
    ]
    answer = client.post("/catalog/offers", json=batch, headers=ADMIN).json()
    assert answer["code"] == 200
    results = answer["data"]["results"]
    assert [(r["row"], r["result"]) for r in results] == [
        (1, "added"),
        (2, "added"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "added"),
    ]
    assert "a path on the server is read only" in results[2]["reason"]
    assert "price" in results[3]["reason"]
    assert "no-such-photo.jpg" in results[4]["warnings"][0]
    assert answer["data"]["counts"] == {"added": 3, "updated": 0, "unchanged": 0, "rejected": 2}

    # searchable as soon as answered
    assert found_first(client, token, photos + offers[0]["img"]) == offers[0]["item_id"]
    assert found_first(client, token, photos + offers[1]["img"]) == offers[1]["item_id"]

    # the stored offer: the inline photo became its stored path, and every photo has a vector
    stored = client.get(f"/catalog/offers/{offers[1]['item_id']}", headers=ADMIN).json()["data"]
    assert stored["offer"]["img"].startswith("/img/") and stored["images"][0]["embedded"] is True
    # every photo of the offer is listed, the one that failed too (not embedded)
    failing = client.get(f"/catalog/offers/{offers[3]['item_id']}", headers=ADMIN).json()["data"]
    assert [(p["source"], p["embedded"]) for p in failing["images"]] == [
        (photos + offers[3]["img"], True),
        (photos + "no-such-photo.jpg", False),
    ]
    assert failing["images"][1]["img"] is None
    # sent back as it was read: unchanged; a new price: updated
    again = client.post("/catalog/offers", json=[stored["offer"], dict(batch[0], price="9.99")], headers=ADMIN).json()
    assert [r["result"] for r in again["data"]["results"]] == ["unchanged", "updated"]


def test_an_offer_of_snapsource_ingest_is_sent_back_unchanged(world, tmp_path):
    """Photos of a catalog file are paths on the server's disk: the stored offer names them by
    their /img/ paths, which the API takes back."""
    resources, client, _ = world
    offers = luma_offers()[70:72]
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in offers) + "\n")
    report = ingest(resources, JsonLines(path, base_dir=LUMA.parent))
    assert report.added == 2
    stored = client.get(f"/catalog/offers/{offers[0]['item_id']}", headers=ADMIN).json()["data"]
    assert stored["offer"]["img"].startswith("/img/")
    assert all(p["embedded"] and p["img"] for p in stored["images"])
    assert ingest(resources, JsonLines(path, base_dir=LUMA.parent)).unchanged == 2  # the file again: unchanged
    again = client.post("/catalog/offers", json=[stored["offer"]], headers=ADMIN).json()
    assert [r["result"] for r in again["data"]["results"]] == ["unchanged"]


def test_offers_listed_by_change_and_deleted(world):
    resources, client, photos = world
    token = resources.tokens.create("listing")
    offers = luma_offers()[30:33]
    client.post("/catalog/offers", json=[by_url(o, photos) for o in offers[:2]], headers=ADMIN)
    listed = client.get("/catalog/offers", params={"page_size": 1000}, headers=ADMIN).json()["data"]
    last = listed["items"][-1]["updated_at"]
    assert {o["item_id"] for o in offers[:2]} <= {i["item_id"] for i in listed["items"]}
    assert [i["updated_at"] for i in listed["items"]] == sorted(i["updated_at"] for i in listed["items"])
    client.post("/catalog/offers", json=[by_url(offers[2], photos)], headers=ADMIN)
    newer = client.get("/catalog/offers", params={"updated_since": last}, headers=ADMIN).json()["data"]
    # at or after: the batch that set `last` comes again (one instant), then the newer offer
    assert [i["item_id"] for i in newer["items"]] == [*sorted(o["item_id"] for o in offers[:2]), offers[2]["item_id"]]
    # pasted into a URL unencoded, as the docs' "ask again with it" invites: "+00:00" arrives as " 00:00"
    pasted = client.get(f"/catalog/offers?updated_since={last}", headers=ADMIN).json()["data"]
    assert pasted["items"] == newer["items"]
    bad = client.get("/catalog/offers", params={"updated_since": "yesterday"}, headers=ADMIN)
    assert bad.status_code == 422 and "ISO 8601" in bad.json()["msg"]

    gone = client.delete(f"/catalog/offers/{offers[0]['item_id']}", headers=ADMIN)
    assert gone.json()["data"] == {"deleted": [offers[0]["item_id"]]}
    assert found_first(client, token, photos + offers[0]["img"]) != offers[0]["item_id"]
    assert client.get(f"/catalog/offers/{offers[0]['item_id']}", headers=ADMIN).status_code == 404
    assert client.delete(f"/catalog/offers/{offers[0]['item_id']}", headers=ADMIN).status_code == 404
    both = client.post("/catalog/offers/delete", json={"item_ids": [offers[1]["item_id"], 123]}, headers=ADMIN).json()
    assert both["data"] == {"deleted": [offers[1]["item_id"]], "missing": [123]}


def test_json_lines_bodies_and_limits(world, tmp_path):
    resources, client, photos = world
    offers = luma_offers()[40:42]
    lines = "\n".join(json.dumps(by_url(o, photos)) for o in offers)
    answer = client.post("/catalog/offers", content=lines, headers={**ADMIN, "Content-Type": "application/x-ndjson"})
    assert answer.json()["data"]["counts"]["added"] == 2
    broken = client.post("/catalog/offers", content="[{", headers={**ADMIN, "Content-Type": "application/json"})
    assert broken.status_code == 422 and "not JSON" in broken.json()["msg"]
    # a row that cannot be an offer is rejected with the reason; the others go on
    shapeless = client.post("/catalog/offers", json=[by_url(offers[0], photos), 42], headers=ADMIN).json()
    assert [(r["row"], r["result"]) for r in shapeless["data"]["results"]] == [(1, "unchanged"), (2, "rejected")]
    assert "offer 2 of the batch is not a JSON object" in shapeless["data"]["results"][1]["reason"]
    bad_line = lines.replace("\n", "\n{not json\n", 1)
    answer = client.post("/catalog/offers", content=bad_line, headers={**ADMIN, "Content-Type": "application/x-ndjson"})
    results = answer.json()["data"]["results"]
    assert [r["result"] for r in results] == ["unchanged", "rejected", "unchanged"]
    assert "line 2 of the JSON Lines body: not valid JSON" in results[1]["reason"]
    nothing = client.post("/catalog/offers", content="hello\nworld", headers={**ADMIN, "Content-Type": "application/x-ndjson"})
    assert nothing.status_code == 422 and "not JSON Lines" in nothing.json()["msg"]
    empty = client.post("/catalog/offers", json=[], headers=ADMIN)
    assert empty.status_code == 422 and "no offers" in empty.json()["msg"]
    limit = resources.settings.catalog_max_offers
    many = client.post("/catalog/offers", json=[{"item_id": i} for i in range(1, limit + 2)], headers=ADMIN)
    assert many.status_code == 413 and "POST /catalog/imports" in many.json()["msg"]
    huge = client.post(
        "/catalog/offers",
        content=b"[" + b" " * (resources.settings.catalog_max_bytes + 1) + b"]",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and "catalog_max_bytes" in huge.json()["msg"]


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/catalog/imports/{job_id}", headers=ADMIN).json()["data"]
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def test_import_jobs_from_an_upload_and_a_url(world, tmp_path):
    resources, client, photos = world
    token = resources.tokens.create("jobs")
    offers = luma_offers()[50:56]
    lines = [json.dumps(by_url(o, photos)) for o in offers[:4]] + ["{not json", json.dumps(dict(offers[4], img="a.jpg"))]
    started = client.post("/catalog/imports", files={"file": ("offers.jsonl", "\n".join(lines).encode())}, headers=ADMIN)
    assert started.status_code == 200 and started.json()["data"]["status"] in ("queued", "running", "done")
    job = wait_for_job(client, started.json()["data"]["id"])
    assert job["status"] == "done", job
    assert job["counts"]["rows"] == 6 and job["counts"]["added"] == 4 and job["counts"]["rejected"] == 1
    assert job["counts"]["skipped"] == 1 and job["rows_done"] == job["rows_total"] == 6 and job["progress"] == 1.0
    assert [p["row"] for p in job["problems"]] == [5, 6] and "a path on the server" in job["problems"][1]["reason"]
    assert job["format"] == "jsonl"  # found from the content, and kept
    assert found_first(client, token, photos + offers[2]["img"]) == offers[2]["item_id"]
    listed = client.get("/catalog/imports", headers=ADMIN).json()["data"]["jobs"]
    assert job["id"] in [j["id"] for j in listed]

    # a URL: the job fetches the file (here the demo catalog's own JSON Lines: its local paths are refused)
    by_link = client.post("/catalog/imports", json={"url": photos + "catalog.jsonl", "format": "jsonl"}, headers=ADMIN)
    job = wait_for_job(client, by_link.json()["data"]["id"])
    assert job["status"] == "done" and job["counts"]["rows"] == len(luma_offers()) and job["counts"]["added"] == 0
    missing = client.post("/catalog/imports", json={"url": photos + "nothing.jsonl"}, headers=ADMIN)
    job = wait_for_job(client, missing.json()["data"]["id"])
    assert job["status"] == "failed" and "404" in job["error"]

    assert client.get("/catalog/imports/imp_nope", headers=ADMIN).status_code == 404
    bad_format = client.post("/catalog/imports", json={"url": photos + "x.csv", "format": "xml"}, headers=ADMIN)
    assert bad_format.status_code == 422 and "shopify" in bad_format.json()["msg"]
    not_a_catalog = client.post("/catalog/imports", files={"file": ("x.bin", b"\x00\x01\x02")}, headers=ADMIN)
    assert not_a_catalog.status_code == 422
    no_body = client.post("/catalog/imports", json={}, headers=ADMIN)
    assert no_body.status_code == 422 and "multipart" in no_body.json()["msg"]
    assert "`url` is required" in no_body.json()["msg"] and "validation error" not in no_body.json()["msg"]
    ftp = client.post("/catalog/imports", json={"url": "ftp://files.example.com/x.csv"}, headers=ADMIN)
    assert ftp.status_code == 422 and "`url` must be an http(s) URL" in ftp.json()["msg"]
    unknown = client.post("/catalog/imports", files={"file": ("x.txt", b"hello there\nworld\n")}, headers=ADMIN)
    assert (
        unknown.status_code == 422 and "the `format` field" in unknown.json()["msg"] and "--format" not in unknown.json()["msg"]
    )


def test_a_shop_export_job_counts_products(world):
    """rows_done and rows_total both count products (rows of the catalog), not the file's lines;
    the format found from the content is the job's."""
    resources, client, photos = world
    from test_formats import shopify_classic

    export = shopify_classic(photos + "images/").encode()
    started = client.post("/catalog/imports", files={"file": ("products_export.csv", export)}, headers=ADMIN)
    assert started.status_code == 200 and started.json()["data"]["format"] == "shopify"
    job = wait_for_job(client, started.json()["data"]["id"])
    assert job["status"] == "done", job
    assert job["rows_done"] == job["rows_total"] == job["counts"]["rows"] == 3 and job["progress"] == 1.0
    assert job["counts"]["added"] + job["counts"]["unchanged"] == 2 and job["format"] == "shopify"


def test_an_upload_without_offers_is_refused(world):
    _, client, _ = world
    empty = client.post("/catalog/imports", files={"file": ("empty.csv", b"")}, headers=ADMIN)
    assert empty.status_code == 422 and empty.json()["code"] == 422 and "empty" in empty.json()["msg"]
    header = client.post("/catalog/imports", files={"file": ("offers.csv", b"item_id,title,img,price\n")}, headers=ADMIN)
    assert header.status_code == 422 and "has no offers" in header.json()["msg"]
    listed = client.get("/catalog/imports", headers=ADMIN).json()["data"]["jobs"]
    assert not [j for j in listed if j["source"] in ("empty.csv", "offers.csv")]  # no job was made


def test_messages_say_what_the_body_must_be(world):
    _, client, photos = world
    for body in (b"[1, 2]", b"not json", b'{"ids": [1]}', b'{"item_ids": ["x"]}'):
        answer = client.post("/catalog/offers/delete", content=body, headers={**ADMIN, "Content-Type": "application/json"})
        assert answer.status_code == 422 and answer.json()["code"] == 422
        assert '{"item_ids": [<item_id>, ...]}' in answer.json()["msg"], answer.json()
    blob = "QUJD" * 3000  # a raw base64 photo without its data: head, 12 KB
    offer = dict(luma_offers()[80], img=blob, images=[], price="cheap")
    answer = client.post("/catalog/offers", json=[offer, dict(luma_offers()[81], img=blob, images=[])], headers=ADMIN).json()
    assert all(len(r["reason"]) < 400 for r in answer["data"]["results"]), answer


def wait_found(url: str, token: str, img: str, item_id: int, present: bool, timeout: float = 15.0) -> float:
    """Seconds until 6 searches in a row (spread over the server's workers) agree that `item_id` is
    (or is no longer) the best match; fails after `timeout`."""
    started = time.monotonic()
    streak = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while streak < 6:
            assert time.monotonic() - started < timeout, f"{url} did not see the change in {timeout} s"
            streak = streak + 1 if (found_first(client, token, img) == item_id) == present else 0
            if not streak:
                time.sleep(0.1)
    return time.monotonic() - started


def test_two_servers_see_each_others_changes(tmp_path):
    """Two servers of two workers each on one catalog (one data dir, or PostgreSQL + Milvus): a
    change through one is searchable through the other, without a restart."""
    settings = {**profile_settings(), "admin_key": "catalog-admin-key", "fetch_allow": "127.0.0.1"}
    data = tmp_path / "shared"
    resources = open_resources(data, **settings)
    token = resources.tokens.create("two-servers")
    offer = luma_offers()[60]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        photo_server() as photos,
        serve_workers(data, tmp_path / "a", workers=2, **settings) as a,
        serve_workers(data, tmp_path / "b", workers=2, **settings) as b,
    ):
        img = photos + offer["img"]
        added = httpx.post(f"{a}/catalog/offers", json=[by_url(offer, photos)], headers=ADMIN, timeout=60).json()
        assert added["data"]["counts"]["added"] == 1, added
        wait_found(b, token, img, offer["item_id"], present=True)
        gone = httpx.delete(f"{b}/catalog/offers/{offer['item_id']}", headers=ADMIN, timeout=60).json()
        assert gone["data"] == {"deleted": [offer["item_id"]]}
        wait_found(a, token, img, offer["item_id"], present=False)
    resources.close()


def test_the_openapi_document_shows_each_catalog_answer(world):
    """Swagger shows an example of every catalog route's 200 answer, in TMAPI's envelope."""
    _, client, _ = world
    paths = client.get("/openapi.json").json()["paths"]
    routes = [(path, method, op) for path, ops in paths.items() if path.startswith("/catalog") for method, op in ops.items()]
    assert len(routes) == 9
    for path, method, op in routes:
        example = op["responses"]["200"]["content"]["application/json"]["example"]
        assert example["code"] == 200 and example["msg"] == "success" and example["data"], (method, path)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A catalog of its own (its offers are deleted here), behind a real server with an import runner."""
    resources = open_resources(tmp_path_factory.mktemp("catalog-delete"), admin_key="catalog-admin-key", fetch_allow="127.0.0.1")
    app = create_app(resources=resources)
    runner = jobs.Runner(resources).start()
    app.state.import_runner = runner
    with photo_server() as photos, serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield resources, client, photos
    runner.stop()


def test_a_batch_with_a_value_out_of_range_rejects_that_row_only(small):
    """A sales count of 10^29 (an OverflowError and a 500 before), a long digit string, a title
    of megabytes: each row rejected with its field and limit; the good row in the batch is added."""
    resources, client, photos = small
    offers = [by_url(o, photos) for o in luma_offers()[60:64]]
    batch = [
        dict(offers[0], sale_info={"sale_quantity_int": 10**29}),
        offers[1],
        dict(offers[2], sale_info={"sale_quantity": "9" * 40}),
        dict(offers[3], title="t" * 3_000_000),
    ]
    answer = client.post("/catalog/offers", json=batch, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    results = answer.json()["data"]["results"]
    assert [(r["row"], r["result"]) for r in results] == [(1, "rejected"), (2, "added"), (3, "rejected"), (4, "rejected")]
    assert "sale_info.sale_quantity_int: Input should be less than or equal to 1000000000000000" in results[0]["reason"]
    assert "sale_info.sale_quantity" in results[2]["reason"] and "title: String should have at most 1000" in results[3]["reason"]
    assert len(answer.content) < 10_000  # no reason repeats the value
    assert resources.catalog.existing([o["item_id"] for o in offers]) == {offers[1]["item_id"]}


def test_an_import_job_deletes_missing_offers_only_when_safe_and_confirmed(small):
    """delete_missing: refused while a row is rejected or skipped, and above 10% of the catalog
    without confirm_delete=true; the job says what it would delete (count and sample); a job
    with a row out of range ends done with the other rows; problems come in row order."""
    resources, client, photos = small
    offers = [by_url(o, photos) for o in luma_offers()[70:74]]
    assert client.post("/catalog/offers", json=offers, headers=ADMIN).json()["data"]["counts"]["added"] == 4
    total = resources.catalog.count()

    def job_of(lines: list[str], **fields: str) -> dict:
        upload = {"file": ("offers.jsonl", "\n".join(lines).encode())}
        started = client.post("/catalog/imports", files=upload, data=fields, headers=ADMIN)
        assert started.status_code == 200, started.text
        return wait_for_job(client, started.json()["data"]["id"])

    kept = [json.dumps(offers[0])]
    job = job_of(kept, delete_missing="true")
    assert job["status"] == "done" and job["delete_missing"] is True and job["counts"]["deleted"] == 0
    deletion = job["deletion"]
    assert deletion["missing"] == total - 1 and deletion["deleted"] == 0 and "confirm_delete=true" in deletion["refused"]
    assert offers[1]["item_id"] in [s["item_id"] for s in deletion["sample"]] and resources.catalog.count() == total

    # a photo that cannot be read (row 1, skipped) and a sales count out of range (row 2): the job
    # finishes with the good row, lists both in row order, and deletes nothing, confirmed or not
    broken = [
        json.dumps(dict(offers[1], img=photos + "no-such.jpg", images=[])),
        json.dumps(dict(offers[2], sale_info={"sale_quantity_int": 10**29})),
        *kept,
    ]
    job = job_of(broken, delete_missing="true", confirm_delete="true")
    assert job["status"] == "done" and job["counts"]["unchanged"] == 1 and job["counts"]["rejected"] == 1, job
    assert [p["row"] for p in job["problems"]] == [1, 2] and "sale_quantity_int" in job["problems"][1]["reason"]
    assert "2 row(s) of the file were rejected or skipped" in job["deletion"]["refused"] and resources.catalog.count() == total

    job = job_of(kept, delete_missing="true", confirm_delete="true")
    assert job["status"] == "done" and job["counts"]["deleted"] == total - 1 and job["deletion"]["refused"] is None
    assert resources.catalog.offer_ids() == {offers[0]["item_id"]}
    assert client.post("/catalog/imports", files={"file": ("a.jsonl", kept[0].encode())}, data={"delete_missing": "maybe"},
                       headers=ADMIN).status_code == 422  # fmt: skip


def test_an_upstream_page_with_an_item_out_of_range_keeps_and_lands_the_others(small):
    """The upstream's answer: an item out of the schema's limits is left out of the page (the
    others answer) and, landed, rejects its own row: the job ends done with the good item."""
    from snapsource.upstream import connector, landing

    resources, client, photos = small
    items = [
        {**by_url(o, photos), "images": []}
        for o in luma_offers()[80:82]
    ]  # fmt: skip
    items[1]["sale_info"] = {"sale_quantity_int": 10**29}
    page = {"page": 1, "page_size": 20, "total_count": 2, "items": [dict(i) for i in items]}
    assert connector._not_a_page(page) == "" and [i["item_id"] for i in page["items"]] == [items[0]["item_id"]]
    assert "sale_quantity_int" in connector._not_a_page({"total_count": 1, "items": [items[1]]})  # nothing usable: no page

    job = landing.land(resources, items, time.time())
    assert job is not None
    runner_job = wait_for_job(client, job.wire()["id"])
    assert runner_job["status"] == "done" and runner_job["counts"]["added"] == 1 and runner_job["counts"]["rejected"] == 1
    assert "sale_info.sale_quantity_int" in runner_job["problems"][0]["reason"]
    assert items[0]["item_id"] in resources.catalog.offer_ids() and items[1]["item_id"] not in resources.catalog.offer_ids()
