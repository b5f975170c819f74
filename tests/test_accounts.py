"""Tokens and their limits (439, 503), usage metering and the admin API, over real HTTP.

The limits live in SQLite, so they are tested across two worker processes as well.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import luma_offers, main_image_url, serve_workers, with_settings
from imageserver import ImageServer, grocery_photo
from snapsource.api.app import create_app
from snapsource.tools.loopback import serve

ADMIN_KEY = "test-admin-key-5d1f"


@pytest.fixture(scope="module")
def admin_resources(resources):
    return with_settings(resources, admin_key=ADMIN_KEY)


@pytest.fixture(scope="module")
def api(admin_resources):
    with serve(create_app(resources=admin_resources)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def searcher(api, resources):
    img_url = main_image_url(resources, luma_offers()[0])

    def call(token: str, **params) -> httpx.Response:
        return api.get("/1688/search/image", params={"apiToken": token, "img_url": img_url, "page_size": 1, **params})

    return call


def envelope(response: httpx.Response, status: int, needle: str = "") -> dict:
    body = response.json()
    assert response.status_code == status and body["code"] == status, body
    assert needle in body["msg"], body["msg"]
    return body


def test_quota_is_exhausted_at_exactly_n_calls(api, resources):
    token = resources.tokens.create("quota-3", quota=3)
    call = searcher(api, resources)
    assert [call(token).status_code for _ in range(3)] == [200, 200, 200]
    envelope(call(token), 439, "Subscription expired or insufficient balance")
    info = resources.tokens.info(token)
    assert info.calls_used == 3 and info.quota == 3


def test_expired_and_revoked_tokens(api, resources):
    call = searcher(api, resources)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    expired = resources.tokens.create("expired", expires=yesterday)
    envelope(call(expired), 439, f"expired on {yesterday.isoformat()}")
    today = resources.tokens.create("until-today", expires=dt.date.today())
    assert call(today).status_code == 200
    revoked = resources.tokens.create("to-revoke")
    assert call(revoked).status_code == 200
    assert resources.tokens.revoke("to-revoke") == 1
    envelope(call(revoked), 401, "was revoked on")
    envelope(call("ss_never-made"), 401, "not valid")


def test_rate_limit_answers_503_with_retry_after(api, resources):
    token = resources.tokens.create("two-per-second", qps=2)
    call = searcher(api, resources)
    answers = [call(token) for _ in range(6)]
    limited = [a for a in answers if a.status_code == 503]
    assert limited and sum(a.status_code == 200 for a in answers) >= 2
    body = envelope(limited[0], 503, "concurrency limit exceeded")
    assert int(limited[0].headers["Retry-After"]) >= 1 and body["data"] is None
    time.sleep(1.1)
    assert call(token).status_code == 200  # the bucket refills


def test_concurrency_limit_counts_calls_in_flight(admin_resources, resources):
    """A slow image URL keeps one call in flight; a second call of the same token is refused."""
    slow = with_settings(admin_resources, fetch_allow="127.0.0.0/8", fetch_timeout=2.0)
    token = resources.tokens.create("one-at-a-time", concurrency=1)
    photo = grocery_photo(0).read_bytes()
    with ImageServer(photo, photo).running() as images, serve(create_app(resources=slow)) as url:

        def slow_call():
            return httpx.get(url + "/1688/search/image", params={"apiToken": token, "img_url": images + "/slow.jpg"}, timeout=30)

        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(slow_call)
            time.sleep(0.5)
            second = httpx.get(url + "/1688/search/image", params={"apiToken": token, "img_url": "/img/x.jpg"}, timeout=30)
            envelope(second, 503, "concurrency limit exceeded")
            assert "Retry-After" in second.headers
            envelope(first.result(), 422, "longer than 2 s")  # the slow call itself ran
        after = httpx.get(url + "/1688/search/image", params={"apiToken": token, "img_url": "/img/x.jpg"}, timeout=30)
        envelope(after, 422, "img_url")  # its slot was freed
    slow.fetcher.close()


def test_usage_is_metered_per_token_endpoint_and_day(api, resources):
    token = resources.tokens.create("metered")
    call = searcher(api, resources)
    for _ in range(3):
        assert call(token).status_code == 200
    envelope(call(token, page=0), 422)
    rows = [r for r in resources.tokens.usage(1, "metered")]
    assert len(rows) == 1
    row = rows[0]
    assert row["endpoint"] == "/1688/search/image" and row["day"] == dt.date.today().isoformat()
    assert row["calls"] == 4 and row["errors"] == 1 and row["p50_ms"] is not None


def test_admin_api_needs_its_key(api):
    envelope(api.get("/admin/tokens"), 401, "admin key")
    envelope(api.get("/admin/tokens", headers={"Authorization": "Bearer wrong"}), 401, "admin key")
    envelope(api.get("/admin/tokens", params={"apiToken": ADMIN_KEY}), 401, "admin key")  # not in the URL


def test_admin_api_creates_lists_revokes_and_reports(api, resources):
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    made = envelope(api.post("/admin/tokens", headers=headers, json={"name": "console", "quota": 10, "qps": 5}), 200)["data"]
    assert made["token"].startswith("ss_") and made["quota"] == 10 and made["qps"] == 5 and made["calls_used"] == 0
    call = searcher(api, resources)
    assert call(made["token"]).status_code == 200
    listed = envelope(api.get("/admin/tokens", headers=headers), 200)["data"]["tokens"]
    entry = next(t for t in listed if t["id"] == made["id"])
    assert entry["calls_used"] == 1 and "token" not in entry and "hash" not in entry
    usage = envelope(api.get("/admin/usage", headers=headers, params={"name": "console"}), 200)["data"]["usage"]
    assert usage[0]["calls"] == 1
    envelope(api.delete(f"/admin/tokens/{made['id']}", headers={"X-Admin-Key": ADMIN_KEY}), 200)
    envelope(call(made["token"]), 401)
    envelope(api.delete(f"/admin/tokens/{made['id']}", headers=headers), 404, "no active token")
    envelope(api.post("/admin/tokens", headers=headers, json={"name": "bad", "quota": 0}), 422, "quota")


def test_admin_api_creates_tokens_with_scopes(api, resources):
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    made = envelope(api.post("/admin/tokens", headers=headers, json={"name": "cat", "scopes": ["catalog"]}), 200)["data"]
    assert made["scopes"] == ["catalog"]
    assert api.get("/catalog/offers", params={"apiToken": made["token"]}).status_code == 200
    envelope(searcher(api, resources)(made["token"]), 401, "lacks the search scope")
    both = envelope(
        api.post("/admin/tokens", headers=headers, json={"name": "both", "scopes": ["search", "catalog", "search"]}), 200
    )
    assert both["data"]["scopes"] == ["search", "catalog"]
    plain = envelope(api.post("/admin/tokens", headers=headers, json={"name": "plain"}), 200)["data"]
    assert plain["scopes"] == ["search"]
    listed = envelope(api.get("/admin/tokens", headers=headers), 200)["data"]["tokens"]
    assert next(t for t in listed if t["id"] == made["id"])["scopes"] == ["catalog"]
    envelope(api.post("/admin/tokens", headers=headers, json={"name": "x", "scopes": ["admin"]}), 422, "unknown scope 'admin'")
    envelope(api.post("/admin/tokens", headers=headers, json={"name": "x", "scopes": []}), 422, "scopes")
    envelope(api.post("/admin/tokens", headers=headers, json={"name": "x", "scopes": "catalog"}), 422, "scopes")


def test_admin_api_refuses_what_it_cannot_store(api):
    """Found by the schema fuzzer: each of these was a 500 or was taken as something else."""
    headers = {"X-Admin-Key": ADMIN_KEY}
    envelope(api.post("/admin/tokens", headers=headers, json={"name": "big", "quota": 2**64}), 422, "quota")
    envelope(api.post("/admin/tokens", headers=headers, json={"name": "epoch", "expires": 0}), 422, "YYYY-MM-DD")
    envelope(api.post("/admin/tokens", headers=headers, json={"name": "yes", "quota": True}), 422, "quota")
    bad_text = b'{"name": "\\udafa"}'  # an unpaired surrogate cannot be stored as UTF-8
    envelope(api.post("/admin/tokens", headers={**headers, "Content-Type": "application/json"}, content=bad_text), 422, "name")
    envelope(api.post("/admin/tokens", headers={**headers, "Content-Type": "application/json"}, content=b"\xff{"), 422, "body")
    envelope(api.delete(f"/admin/tokens/{2**64}", headers=headers), 422, "token_id")
    refused = api.request("PUT", "/admin/tokens", headers=headers)
    envelope(refused, 405)
    assert refused.headers["Allow"] == "GET, POST"  # both routes at this path, as RFC 9110 asks


def test_cli_token_options_list_and_usage(tmp_path):
    cli = [sys.executable, "-m", "snapsource", "token"]
    made = subprocess.run(
        [
            *cli,
            "create",
            "--name",
            "shop",
            "--quota",
            "100",
            "--qps",
            "2",
            "--concurrency",
            "3",
            "--expires",
            "2030-01-31",
            "--scope",
            "catalog",
            "--scope",
            "search",
            "--data",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    listed = subprocess.run([*cli, "list", "--json", "--data", str(tmp_path)], capture_output=True, text=True)
    assert '"quota": 100' in listed.stdout and '"expires_at": "2030-01-31"' in listed.stdout
    assert made.stdout.strip() not in listed.stdout
    assert '"scopes": ["catalog", "search"]' in listed.stdout
    table = subprocess.run(
        [*cli, "list", "--data", str(tmp_path)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert "scopes" in table.stdout and "catalog,search" in table.stdout
    usage = subprocess.run([*cli, "usage", "--data", str(tmp_path)], capture_output=True, text=True)
    assert usage.returncode == 0
    bad = subprocess.run(
        [*cli, "create", "--name", "x", "--expires", "soon", "--data", str(tmp_path)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


def test_limits_hold_across_two_worker_processes_and_no_token_is_logged(resources, tmp_path):
    quota = resources.tokens.create("two-workers-quota", quota=12)
    rate = resources.tokens.create("two-workers-rate", qps=1)
    single = resources.tokens.create("two-workers-concurrency", concurrency=1)
    img_url = main_image_url(resources, luma_offers()[0])
    photo = grocery_photo(0).read_bytes()
    with (
        ImageServer(photo, photo).running() as images,
        serve_workers(resources.settings.data_dir, tmp_path, fetch_allow="127.0.0.0/8", fetch_timeout="3") as url,
    ):

        def call(token: str) -> int:  # a new connection each time: both workers answer
            return httpx.get(
                url + "/1688/search/image", params={"apiToken": token, "img_url": img_url, "page_size": 1}, timeout=30
            ).status_code

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: call(quota), range(20)))
        assert codes.count(200) == 12 and codes.count(439) == 8  # exactly the quota, whichever worker
        started = time.monotonic()
        rated = [call(rate) for _ in range(8)]
        elapsed = time.monotonic() - started
        assert rated.count(200) <= 1 + int(elapsed) + 1 and rated.count(503) >= 1

        with ThreadPoolExecutor(1) as pool:  # one slow call in flight in one worker...
            slow = pool.submit(
                lambda: httpx.get(
                    url + "/1688/search/image", params={"apiToken": single, "img_url": images + "/slow.jpg"}, timeout=30
                )
            )
            time.sleep(0.8)
            during = [call(single) for _ in range(6)]  # ...refuses the token's calls in both workers
            assert slow.result().status_code == 422
        assert during == [503] * 6
        assert call(single) == 200
    output = (tmp_path / "serve.log").read_text()
    assert "GET /1688/search/image?apiToken=***" in output  # access lines were written, masked
    assert quota not in output and rate not in output and single not in output


def test_metering_reaches_the_database_within_a_second_without_a_read(api, resources):
    """Calls of a token without limits are metered in memory and written once a second: another
    process (a console, `token usage`) sees them without this one being asked."""
    import sqlite3

    from snapsource.accounts.tokens import FLUSH_SECONDS

    token = resources.tokens.create("batched")
    token_id = resources.tokens.info(token).id
    call = searcher(api, resources)
    for _ in range(5):
        assert call(token).status_code == 200
    other = sqlite3.connect(resources.catalog.database.path)  # as another process reads it
    deadline = time.monotonic() + FLUSH_SECONDS + 5
    row = None
    while time.monotonic() < deadline:
        row = other.execute("SELECT calls FROM token_usage WHERE token_id = ?", (token_id,)).fetchone()
        if row and row[0] == 5:
            break
        time.sleep(0.1)
    assert row == (5,)
    assert other.execute("SELECT calls_used FROM tokens WHERE id = ?", (token_id,)).fetchone() == (5,)
    other.close()


def test_a_usage_read_waits_for_a_flush_still_writing(resources, monkeypatch):
    """The console's flake: the timer's flush had taken the metering and was still writing it
    (slow under load) when a usage read flushed, found nothing left to write, and read the table
    without that call. A read's flush now waits for the one in progress."""
    import threading

    tokens = resources.tokens
    token = tokens.create("flushing")
    lease = tokens.admit(token)
    tokens.release(lease, "/1688/search/image", 200, 0.01)
    slow, writing = tokens.table.add_usage, threading.Event()

    def add_usage_slowly(*args):
        writing.set()
        time.sleep(0.5)  # a write lock held by an import, say
        slow(*args)

    monkeypatch.setattr(tokens.table, "add_usage", add_usage_slowly)
    timer = threading.Thread(target=tokens.flush)
    timer.start()
    assert writing.wait(5)
    rows = tokens.usage(1, "flushing")
    timer.join()
    assert [(row["endpoint"], row["calls"]) for row in rows] == [("/1688/search/image", 1)]
