"""SIGTERM lets in-flight requests finish; an index being rebuilt never serves half of itself."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from conftest import luma_offers, main_image_url
from imageserver import ImageServer, grocery_photo
from snapsource.tools.loopback import serve_workers


def test_sigterm_drains_the_request_in_flight(resources, tmp_path):
    token = resources.tokens.create("graceful")
    photo = grocery_photo(0).read_bytes()
    env = {"SNAPSOURCE_FETCH_ALLOW": "127.0.0.0/8", "SNAPSOURCE_FETCH_TIMEOUT": "3", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with ImageServer(photo, photo).running() as images, serve_workers(resources.settings.data_dir, 2, env) as (url, server):
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(
                httpx.get, url + "/1688/search/image", params={"apiToken": token, "img_url": images + "/slow.jpg"}, timeout=30
            )
            time.sleep(1.0)
            server.send_signal(signal.SIGTERM)
            answer = slow.result()
        assert answer.status_code == 422 and "longer than 3 s" in answer.json()["msg"]  # answered, not cut
        assert server.wait(30) == 0
        try:
            httpx.get(url + "/healthz", timeout=2)
            refused = False
        except httpx.TransportError:
            refused = True
        assert refused  # and then it is gone


def test_searches_keep_working_while_the_index_is_replaced(resources, search):
    """Saving writes a new file and renames it over the old one; a server reloading meanwhile sees
    the old index or the new one, never a partial file."""
    offer = luma_offers()[0]
    img_url = main_image_url(resources, offer)
    first = search(img_url)["data"]["items"][0]["item_id"]
    index_file = resources.index.directory / resources.index.STATE
    before = index_file.stat().st_ino
    with ThreadPoolExecutor(1) as pool:
        saving = pool.submit(lambda: [resources.index.save() for _ in range(5)])
        answers = [search(img_url) for _ in range(10)]
        saving.result()
    assert all(a["code"] == 200 and a["data"]["items"][0]["item_id"] == first for a in answers)
    assert index_file.stat().st_ino != before  # the file was replaced, not written in place
