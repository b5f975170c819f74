"""Two API servers on one PostgreSQL and one Milvus: what is imported through one is found through
the other, and a token's quota holds across both. Runs in the scale-out run of `make test`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from conftest import (
    LUMA,
    luma_offers,
    main_image_url,
    open_resources,
    profile_env,
    profile_settings,
    serve_workers,
    write_catalog,
)
from snapsource.ingest.pipeline import DeleteMissing, ingest

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
    with (
        serve_workers(data, tmp_path / "a", workers=1, **settings) as a,
        serve_workers(data, tmp_path / "b", workers=1, **settings) as b,
    ):
        # an offer imported by another process after both servers started
        later = offers[3]
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "snapsource",
                "ingest",
                str(write_catalog(tmp_path / "later.jsonl", [later])),
                "--data",
                str(data),
            ],
            env={**os.environ, **profile_env(settings)},
            capture_output=True,
            text=True,
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


def test_tokens_made_by_the_cli_live_in_the_catalog_the_servers_read(tmp_path):
    """`snapsource token` opens the catalog the settings name (SNAPSOURCE_CATALOG), as `serve`
    does: what it creates, lists and revokes is what servers on PostgreSQL see."""
    settings = profile_settings()
    data = tmp_path / "data"
    offer = luma_offers()[0]
    resources = open_resources(data, **settings)
    ingest(resources, write_catalog(tmp_path / "c.jsonl", [offer]))
    img = main_image_url(resources, offer)
    resources.close()
    env = {**os.environ, **profile_env(settings)}

    def token(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "snapsource", "token", *args, "--data", str(data)], env=env, capture_output=True, text=True
        )

    made = token("create", "--name", "from-cli", "--quota", "2")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    with serve_workers(data, tmp_path, workers=1, **settings) as url:
        assert [_search(url, secret, img).status_code for _ in range(3)] == [200, 200, 439]
        [listed] = [json.loads(line) for line in token("list", "--json").stdout.splitlines()]
        assert (listed["name"], listed["quota"], listed["calls_used"]) == ("from-cli", 2, 2)
        again = token("create", "--name", "again")
        assert _search(url, again.stdout.strip(), img).status_code == 200
        assert token("revoke", "again").returncode == 0
        assert _search(url, again.stdout.strip(), img).status_code == 401
    assert not (data / "catalog.db").exists()  # no SQLite catalog of the data dir's own


def _poll(check, seconds: float = 20.0):
    """Milvus reads at "Bounded" consistency: what was just written shows within 5 s."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _vector(resources, offer: dict):
    image = resources.catalog.image_by_sha(hashlib.sha256((LUMA.parent / offer["img"]).read_bytes()).hexdigest())
    return resources.index.vectors([image.id])


def _found(resources, vector, offer: dict, **filters) -> bool:
    from snapsource import search

    page = search.run(resources, vector, filters=search.Filters.from_params(**filters))
    return offer["item_id"] in [h.doc["item_id"] for h in page.hits]


def test_milvus_follows_price_changes_and_deletions(tmp_path):
    """Filters run inside Milvus on each entity's own fields: a new price re-files the offer there,
    and an offer deleted from the catalog leaves Milvus too."""
    offers = luma_offers()[:4]
    offer = offers[0]
    cheap = f"{float(offer['price']) / 2:.2f}"
    resources = open_resources(tmp_path / "data")
    ingest(resources, write_catalog(tmp_path / "c.jsonl", offers))
    vector = _vector(resources, offer)
    assert _poll(lambda: _found(resources, vector, offer))
    assert not _found(resources, vector, offer, price_end=cheap)

    ingest(resources, write_catalog(tmp_path / "c.jsonl", [dict(offer, price=cheap), *offers[1:]]))
    assert _poll(lambda: _found(resources, vector, offer, price_end=cheap))

    ingest(resources, write_catalog(tmp_path / "c.jsonl", offers[1:]), delete_missing=DeleteMissing(confirmed=True))
    assert _poll(lambda: not _found(resources, vector, offer))
    kept = sum(min(len(o["images"]) or 1, 64) for o in offers[1:])
    assert _poll(lambda: resources.index.entities() <= kept)
    resources.close()


def test_compact_retrain_refills_the_collection_from_postgresql(tmp_path):
    resources = open_resources(tmp_path / "data")
    ingest(resources, write_catalog(tmp_path / "c.jsonl", luma_offers()[:5]))
    pairs = resources.catalog.db.execute("SELECT count(*) FROM offer_images").fetchone()[0]
    assert _poll(lambda: resources.index.entities() == pairs)
    report = resources.index.compact(retrain=True)  # nothing embedded again: vectors come from PostgreSQL
    assert _poll(lambda: resources.index.entities() == pairs), report
    assert _poll(lambda: _found(resources, _vector(resources, luma_offers()[0]), luma_offers()[0]))
    resources.close()


def test_a_collection_of_another_model_is_refused(tmp_path):
    from snapsource.store.vectors import IndexMismatch
    from snapsource.store.vectors.milvus import MilvusStore

    resources = open_resources(tmp_path / "data")
    with pytest.raises(IndexMismatch, match="--rebuild"):
        MilvusStore(resources.settings.vectors, resources.catalog, "another-model@2", resources.embedder.dim)
    resources.close()
