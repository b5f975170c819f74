"""TMAPI behind snapsource (docs/upstream.md): a real `snapsource serve` in front of the TMAPI
stand-in, both on loopback, starting from an empty catalog. Each mode, the stored pages, every
upstream failure, the circuit breaker and the upstream token's secrecy; in both profiles."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from conftest import PROFILE, profile_settings, serve_workers
from snapsource.config import Settings
from snapsource.errors import UpstreamError
from snapsource.tools.loopback import free_port, serve
from snapsource.tools.tmapi_standin import luma_standin
from snapsource.upstream.connector import Connector, MaskSecrets

pytestmark = pytest.mark.profiles

SECRET = "tm_secret_4f1c9a77"  # the upstream token: must never show
ADMIN = "admin-upstream-test"


@pytest.fixture(scope="module")
def standin():
    stand = luma_standin(limit=40, token=SECRET)
    with serve(stand.app) as url:
        yield stand, url


@contextlib.contextmanager
def upstream_server(upstream: str, work: Path, mode: str, **extra: str) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """`snapsource serve` on an empty catalog with the stand-in as its upstream, in `mode`; its
    tokens: `plain` (search) and `chooser` (search and upstream)."""
    port = free_port()
    settings = {
        **profile_settings(),
        "upstream": upstream,
        "upstream_token": SECRET,
        "upstream_mode": mode,
        "public_url": f"http://127.0.0.1:{port}",
        "fetch_allow": "127.0.0.0/8",  # the stand-in's photos are on loopback
        "upstream_timeout": "3",
        "upstream_breaker": "3",
        "upstream_breaker_seconds": "2",
        "upstream_concurrency": "2",
        "upstream_price_per_call": "0.01",
        "admin_key": ADMIN,
        **extra,
    }
    env = {**os.environ, **{f"SNAPSOURCE_{k.upper()}": v for k, v in settings.items()}}
    tokens = {}
    for name, scopes in (("plain", ["search"]), ("chooser", ["search", "upstream"])):
        out = subprocess.run(
            [sys.executable, "-m", "snapsource", "token", "create", "--name", name, "--data", str(work / "data")]
            + [arg for scope in scopes for arg in ("--scope", scope)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        tokens[name] = out.stdout.strip().splitlines()[-1]
    with (
        serve_workers(work / "data", work, workers=1, port=port, **settings) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http, tokens


@pytest.fixture(scope="module")
def server(standin, tmp_path_factory):
    """An empty catalog in fallback mode."""
    work = tmp_path_factory.mktemp("upstream")
    with upstream_server(standin[1], work, "fallback") as (http, tokens):
        yield http, tokens, work


def photo_of(stand, at: int) -> bytes:
    return stand.items[at].photo


def item_id_of(stand, at: int) -> int:
    return int(stand.items[at].item["item_id"])


def post_search(http, token: str, photo: bytes, **params) -> httpx.Response:
    return http.post(
        "/1688/search/image", params={"apiToken": token, **params}, files={"file": ("photo.jpg", photo, "image/jpeg")}
    )


def recompressed(photo: bytes, quality: int = 80) -> bytes:
    """The same photo saved again: another file, another hash, the same product."""
    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def wait_landed(http, item_id: int, timeout: float = 60.0) -> dict:
    """The offer once the upstream's item is in the catalog with its photo embedded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = http.get(f"/catalog/offers/{item_id}", headers={"Authorization": f"Bearer {ADMIN}"})
        if got.status_code == 200:
            data = got.json()["data"]
            if all(photo.get("embedded") for photo in data.get("images", [])) and data.get("images"):
                if PROFILE == "scaleout":  # Milvus searches at Bounded consistency: writes show within
                    time.sleep(1.5)  # its gracefulTime, 1 s in scripts/scaleout-env (docs/scale-out.md)
                return data
        time.sleep(0.3)
    raise AssertionError(f"item {item_id} did not land within {timeout} s")


def upstream_report(http) -> dict:
    time.sleep(1.2)  # metering is written within a second
    return http.get("/admin/upstream", headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]


def test_fallback_asks_the_upstream_then_answers_locally(server, standin):
    http, tokens, _ = server
    stand, _ = standin
    before = stand.calls.copy()
    first = post_search(http, tokens["plain"], photo_of(stand, 0), page_size=10)
    assert first.status_code == 200, first.text
    data = first.json()["data"]
    assert data["source"] == "upstream" and data["items"][0]["item_id"] == item_id_of(stand, 0)
    assert list(data)[:9] == [
        "page",
        "page_size",
        "total_count",
        "keyword",
        "sort",
        "cat_id",
        "filters",
        "items",
        "has_next_page",
    ]
    assert data["image_url"].startswith("/img/")  # later pages name the photo as on any search
    assert stand.calls["convert"] - before["convert"] == 1 and stand.calls["search"] - before["search"] == 1
    # the upstream fetched the query photo from public_url: it holds the same bytes
    offer = wait_landed(http, item_id_of(stand, 0))
    assert offer["offer"]["source"] == "upstream" and offer["offer"]["seen_at"]
    # the same product again (another file of it): found locally now, the same product, no call
    calls = stand.calls["search"]
    again = post_search(http, tokens["plain"], recompressed(photo_of(stand, 0)), page_size=10, explain="true")
    local = again.json()["data"]
    assert local["source"] == "local" and local["items"][0]["item_id"] == item_id_of(stand, 0)
    assert local["items"][0]["match"] == "same"
    assert stand.calls["search"] == calls
    report = upstream_report(http)
    assert report["totals"]["calls"] >= 1 and report["totals"]["local"] >= 1 and report["token"] == "***"
    assert report["breaker"]["state"] == "closed"


def test_stored_pages_and_paths_are_reused(server, standin):
    http, tokens, _ = server
    stand, _ = standin
    photo = photo_of(stand, 1)
    first = post_search(http, tokens["chooser"], photo, source="upstream", sort="sales")
    assert first.json()["data"]["source"] == "upstream"
    path = first.json()["data"]["image_url"]
    calls, converts = stand.calls["search"], stand.calls["convert"]
    # the same photo and parameters: the stored page, no call
    again = http.get(
        "/1688/search/image", params={"apiToken": tokens["chooser"], "img_url": path, "source": "upstream", "sort": "sales"}
    )
    assert again.json()["data"]["source"] == "upstream_cache"
    assert again.json()["data"]["items"] == first.json()["data"]["items"]
    assert stand.calls["search"] == calls
    # page 2: a call, with the photo's converted path reused (no second conversion)
    second = http.get(
        "/1688/search/image",
        params={"apiToken": tokens["chooser"], "img_url": path, "source": "upstream", "sort": "sales", "page": 2},
    )
    assert second.json()["data"]["source"] == "upstream" and second.json()["data"]["page"] == 2
    assert stand.calls["search"] == calls + 1 and stand.calls["convert"] == converts
    assert stand.seen[-1]["sort"] == "sales" and stand.seen[-1]["page"] == "2"
    assert set(stand.seen[-1]) <= {"apiToken", "img_url", "page", "page_size", "sort"}  # only TMAPI's parameters


def test_source_local_never_calls_and_needs_the_scope(server, standin):
    http, tokens, _ = server
    stand, _ = standin
    calls = stand.calls["search"]
    local = post_search(http, tokens["chooser"], photo_of(stand, 2), source="local")
    assert local.status_code == 200 and local.json()["data"]["source"] == "local"
    assert stand.calls["search"] == calls
    pinned = post_search(http, tokens["plain"], photo_of(stand, 2), source="LOCAL")  # costs nothing: any token, any case
    assert pinned.status_code == 200 and pinned.json()["data"]["source"] == "local"
    refused = post_search(http, tokens["plain"], photo_of(stand, 2), source="upstream")
    assert refused.status_code == 403 and refused.json()["code"] == 403 and "upstream scope" in refused.json()["msg"]
    bad = post_search(http, tokens["chooser"], photo_of(stand, 2), source="elsewhere")
    assert bad.status_code == 422 and "local" in bad.json()["msg"]


def test_own_parameters_are_answered_locally(server, standin):
    http, tokens, _ = server
    stand, _ = standin
    calls = stand.calls["search"]
    got = post_search(http, tokens["chooser"], photo_of(stand, 3), source="auto", keyword="tee")
    assert got.status_code == 200 and got.json()["data"]["source"] == "local"
    assert "keyword" in got.json()["data"]["upstream_skipped"]
    assert stand.calls["search"] == calls
    alone = post_search(http, tokens["chooser"], photo_of(stand, 3), source="upstream", keyword="tee")
    assert alone.status_code == 422 and "keyword" in alone.json()["msg"] and "source=local or auto" in alone.json()["msg"]
    path_only = http.get(
        "/1688/search/image", params={"apiToken": tokens["chooser"], "img_url": "/search/imgextra/1_x.jpg", "keyword": "tee"}
    )
    assert path_only.status_code == 422 and "upstream" in path_only.json()["msg"]


@pytest.mark.parametrize("failure", [417, 439, 499, 503, "timeout", "malformed", "bad_items"])
def test_upstream_failures_give_the_local_answer_or_the_upstream_code(server, standin, failure):
    http, tokens, work = server
    stand, _ = standin
    photo = photo_of(stand, 0)  # landed by the first test: a local answer exists
    wait_landed(http, item_id_of(stand, 0))
    stand.fail(failure, times=-1)
    try:
        with_local = post_search(http, tokens["chooser"], photo, source="upstream", page_size=7, price_start="0.5")
        assert with_local.status_code == 200, with_local.text
        data = with_local.json()["data"]
        assert data["source"] == "local" and data["items"]
        code = {"timeout": 499, "malformed": 417, "bad_items": 417}.get(failure, failure)
        assert data["upstream_error"]["code"] == code
        # nothing local matches a price no offer has: the upstream's code and message
        without = post_search(http, tokens["chooser"], photo, source="upstream", price_end="0.01", page_size=7)
        assert without.status_code == code and without.json()["code"] == code and without.json()["data"] is None
        assert "upstream" in without.json()["msg"] and SECRET not in without.text
    finally:
        stand.clear()
    assert http.get("/readyz").status_code == 200  # a broken upstream never takes the local search down
    close_breaker(http, tokens, stand)


def close_breaker(http, tokens, stand) -> None:
    """A successful upstream call closes the breaker (once its 2 s have passed, if it opened)."""
    time.sleep(2.2)
    healed = post_search(
        http, tokens["chooser"], recompressed(photo_of(stand, 6), 60), source="upstream", page=int(time.time()) % 1000 + 20
    )
    assert healed.json()["data"]["source"] == "upstream", healed.text


def test_a_hanging_upstream_holds_at_most_upstream_concurrency_searches(server, standin):
    """Two calls may wait on a hanging upstream (upstream_concurrency=2); the searches beyond them,
    and local searches, are answered at once."""
    http, tokens, _ = server
    stand, _ = standin
    photo = photo_of(stand, 0)
    wait_landed(http, item_id_of(stand, 0))
    stand.fail("timeout", times=-1, only="search")

    def timed(**params) -> tuple[float, dict]:
        started = time.monotonic()
        answer = post_search(http, tokens["chooser"], photo, **params).json()
        return time.monotonic() - started, answer

    try:
        with ThreadPoolExecutor(6) as pool:
            hanging = [pool.submit(timed, source="upstream", page=40 + at) for at in range(2)]
            time.sleep(0.5)  # both are waiting on the upstream now
            beyond = [pool.submit(timed, source="upstream", page=50 + at) for at in range(3)]
            local = pool.submit(timed, source="local")
            quick = [f.result() for f in beyond]
            assert all(answer["data"]["upstream_error"]["code"] == 503 for _, answer in quick)
            assert all("in flight" in answer["data"]["upstream_error"]["msg"] for _, answer in quick)
            assert max(seconds for seconds, _ in quick) < 2.5 and local.result()[0] < 2.5
            slow = [f.result() for f in hanging]
            assert all(answer["data"]["upstream_error"]["code"] == 499 for _, answer in slow)
    finally:
        stand.clear()
    close_breaker(http, tokens, stand)


def test_503_is_retried_and_the_breaker_opens_and_closes(server, standin):
    http, tokens, _ = server
    stand, _ = standin
    photo = recompressed(photo_of(stand, 4), 70)
    stand.fail(503, times=1, only="search")
    calls = stand.calls["search"]
    got = post_search(http, tokens["chooser"], photo, source="upstream")
    assert got.json()["data"]["source"] == "upstream" and stand.calls["search"] == calls + 2  # retried once
    before = upstream_report(http)["totals"]
    stand.fail(417, times=-1)
    try:
        for at in range(3):  # three failures in a row open it (the photo's path is stored: no conversion)
            post_search(http, tokens["chooser"], photo, source="upstream", page=at + 2)
        calls, converts = stand.calls["search"], stand.calls["convert"]
        opened = post_search(http, tokens["chooser"], photo, source="upstream", page=9)
        fresh = post_search(http, tokens["chooser"], recompressed(photo, 55), source="upstream")  # a new photo too
        assert (stand.calls["search"], stand.calls["convert"]) == (calls, converts)  # nothing sent while open
        state = http.get("/admin/upstream", headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]["breaker"]
        assert state["state"] == "open" and state["failures_in_a_row"] >= 3
        assert fresh.json()["data"]["upstream_error"]["code"] == 417
        assert opened.json()["data"]["upstream_error"]["code"] == 417
        assert "repeated failures" in opened.json()["data"]["upstream_error"]["msg"]
        after = upstream_report(http)["totals"]
        # the three calls sent are counted; nothing kept back is, and local answers for want of the upstream
        # saved nothing: they are failed_over, not local
        assert (after["calls"], after["conversions"], after["local"]) == (
            before["calls"] + 3,
            before["conversions"],
            before["local"],
        )
        assert after["failed_over"] >= before["failed_over"] + 2
    finally:
        stand.clear()
    time.sleep(2.2)
    healed = post_search(http, tokens["chooser"], photo, source="upstream", page=10)
    assert healed.json()["data"]["source"] == "upstream"  # the trial call succeeded: closed again


def test_the_upstream_token_never_shows(server, standin):
    http, tokens, work = server
    stand, _ = standin
    metrics = http.get("/metrics").text
    assert "snapsource_upstream" in metrics and SECRET not in metrics
    report = http.get("/admin/upstream", headers={"Authorization": f"Bearer {ADMIN}"})
    assert SECRET not in report.text
    console = http.get("/console").text
    assert SECRET not in console
    time.sleep(0.5)
    assert SECRET not in (work / "serve.log").read_text(errors="replace")
    assert any(SECRET == seen.get("apiToken") for seen in stand.seen)  # it was sent, to the upstream only


def test_refused_connections_and_the_log_mask(standin, caplog):
    """An upstream that refuses connections fails as 417; httpx's request log masks the token."""
    stand, url = standin
    closed = Settings.load(environ={}, upstream=f"http://127.0.0.1:{free_port()}", upstream_token=SECRET, upstream_timeout=2.0)
    connector = Connector.open(closed)
    with pytest.raises(UpstreamError) as caught:
        connector.search("/search/imgextra/1_a.jpg", {"page": "1"})
    assert caught.value.status == 417 and "could not be reached" in caught.value.msg and SECRET not in caught.value.msg
    connector.close()
    working = Connector.open(Settings.load(environ={}, upstream=url, upstream_token=SECRET))
    with caplog.at_level(logging.INFO, logger="httpx"):
        with pytest.raises(UpstreamError):
            working.search("/not-converted.jpg", {"page": "1"})
    assert caplog.records and all(SECRET not in record.getMessage() for record in caplog.records)
    assert any(isinstance(f, MaskSecrets) for f in logging.getLogger("httpx").filters)
    working.close()


def test_serve_refuses_an_upstream_without_public_url(tmp_path):
    env = {
        **os.environ,
        "SNAPSOURCE_UPSTREAM": "http://127.0.0.1:9",
        "SNAPSOURCE_UPSTREAM_TOKEN": "x",
        "SNAPSOURCE_UPSTREAM_MODE": "fallback",
    }
    env.pop("SNAPSOURCE_PUBLIC_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "snapsource", "serve", "--data", str(tmp_path), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "public_url" in done.stderr and "SNAPSOURCE_PUBLIC_URL" in done.stderr
    assert "--public-url" in done.stderr
    for name, value in (("SNAPSOURCE_UPSTREAM", "127.0.0.1:8400"), ("SNAPSOURCE_PUBLIC_URL", "127.0.0.1:8300")):
        bad = subprocess.run(
            [sys.executable, "-m", "snapsource", "serve", "--data", str(tmp_path), "--port", "0"],
            env={**env, "SNAPSOURCE_PUBLIC_URL": "http://127.0.0.1:8300", name: value},
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 2 and name in bad.stderr and "http(s) URL" in bad.stderr, bad.stderr


def test_the_upstream_scope_comes_with_search(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "snapsource", "token", "create", "--name", "x", "--scope", "upstream", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "with the search scope" in done.stderr


def test_query_photo_reaches_the_upstream_as_sent(server, standin):
    """convert_url is given the photo's URL under public_url; the upstream fetched those very bytes."""
    http, tokens, _ = server
    stand, _ = standin
    photo = recompressed(photo_of(stand, 5), 65)
    got = post_search(http, tokens["chooser"], photo, source="upstream")
    assert got.status_code == 200
    sha = hashlib.sha256(photo).hexdigest()
    assert sha[:8] in stand.seen[-1]["img_url"]  # the stand-in names its paths by the photo's hash
    assert Path(got.json()["data"]["image_url"]).stem == sha


def test_always_asks_the_upstream_and_off_never_does(standin, tmp_path):
    """always: the upstream answers even a photo the catalog knows; off (an upstream configured):
    the local catalog only, and source= still lets a token with the scope ask the upstream."""
    stand, url = standin
    photo = photo_of(stand, 7)
    with upstream_server(url, tmp_path / "always", "always") as (http, tokens):
        first = post_search(http, tokens["plain"], photo)
        assert first.json()["data"]["source"] == "upstream"
        wait_landed(http, item_id_of(stand, 7))
        again = post_search(http, tokens["plain"], recompressed(photo))  # the catalog has it now, as `same`
        assert again.json()["data"]["source"] == "upstream"
        auto = post_search(http, tokens["chooser"], recompressed(photo), source="auto")
        assert auto.json()["data"]["source"] == "local"  # fallback's rule, for this search
    with upstream_server(url, tmp_path / "off", "off") as (http, tokens):
        calls = stand.calls["search"]
        local = post_search(http, tokens["plain"], photo)
        assert local.status_code == 200 and local.json()["data"]["source"] == "local" and not local.json()["data"]["items"]
        assert stand.calls["search"] == calls
        asked = post_search(http, tokens["chooser"], photo, source="upstream")
        assert asked.json()["data"]["source"] == "upstream" and stand.calls["search"] == calls + 1
