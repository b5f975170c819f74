"""Two API servers on one PostgreSQL and one Milvus: what is imported through one is found through
the other, and a token's quota holds across both. Runs in the scale-out run of `make test`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from conftest import luma_offers, main_image_url, open_resources, profile_env, profile_settings, serve_workers, write_catalog
from snapsource.ingest import ingest

pytestmark = pytest.mark.scaleout


def _search(url: str, token: str, img: str) -> httpx.Response:
    return httpx.get(f"{url}/1688/search/image", params={"apiToken": token, "img_url": img, "page_size": 5}, timeout=30)


def test_two_servers_share_offers_and_a_quota(tmp_path):
    settings = profile_settings()
    data = tmp_path / "shared"  # the volume both servers mount: image files and the token pepper
    offers = luma_offers()
    resources = open_resources(data, **settings)
    ingest(resources, write_catalog(tmp_path / "first.jsonl", offers[:3]))
    searching = resources.tokens.create("searching")
    limited = resources.tokens.create("limited", quota=4)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with serve_workers(data, tmp_path / "a", workers=1, **settings) as a, serve_workers(data, tmp_path / "b", workers=1, **settings) as b:
        # an offer imported by another process after both servers started
        later = offers[3]
        made = subprocess.run(
            [sys.executable, "-m", "snapsource", "ingest", str(write_catalog(tmp_path / "later.jsonl", [later])), "--data", str(data)],
            env={**os.environ, **profile_env(settings)}, capture_output=True, text=True,
        )
        assert made.returncode == 0, made.stderr
        img = main_image_url(resources, later)
        deadline = time.monotonic() + 20  # Milvus reads at "Bounded" consistency: 5 s at most
        while True:
            items = [_search(url, searching, img).json()["data"]["items"] for url in (a, b)]
            if all(found and found[0]["item_id"] == later["item_id"] for found in items) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [found[0]["item_id"] for found in items] == [later["item_id"]] * 2

        first = main_image_url(resources, offers[0])
        statuses = [_search(url, limited, first).status_code for url in (a, b, a, b, a, b)]
        assert statuses == [200, 200, 200, 200, 439, 439]
    assert resources.tokens.info(limited).calls_used == 4
    assert not (data / "catalog.db").exists() and not (data / "index").exists()  # nothing of either server's own
    resources.close()
