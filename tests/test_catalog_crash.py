"""A server killed (SIGKILL) while the catalog API writes: every acknowledged batch is there after
the restart, no offer is half-written (`snapsource doctor` agrees), and the import job it was
running resumes from its last checkpoint and finishes. Searches run meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import luma_offers, open_resources, profile_env, profile_settings
from snapsource.ingest import doctor
from snapsource.tools import loopback
from test_catalog_api import ADMIN, by_url, found_first, photo_server

pytestmark = pytest.mark.profiles


def _batches(url: str, offers: list[dict], acknowledged: list[int], stop: threading.Event) -> None:
    """Batches of three, one after another, until the server dies; the ids of each answered one."""
    for start in range(0, len(offers), 3):
        if stop.is_set():
            return
        batch = offers[start : start + 3]
        try:
            answer = httpx.post(f"{url}/catalog/offers", json=batch, headers=ADMIN, timeout=60)
        except httpx.TransportError:
            return
        if answer.status_code == 200:
            acknowledged += [r["item_id"] for r in answer.json()["data"]["results"] if r["result"] == "added"]


def test_a_killed_server_loses_no_acknowledged_batch_and_its_job_resumes(tmp_path):
    settings = {**profile_settings(), "admin_key": "catalog-admin-key", "fetch_allow": "127.0.0.1"}
    env = {**profile_env(settings)}
    data = tmp_path / "data"
    open_resources(data, **settings).close()  # the catalog exists before either server starts
    offers = luma_offers()
    job_offers, batch_offers = offers[:120], offers[120:200]
    with photo_server() as photos:
        lines = "\n".join(json.dumps(by_url(o, photos)) for o in job_offers).encode()
        acknowledged: list[int] = []
        stop = threading.Event()
        with open(tmp_path / "first.log", "wb") as log, loopback.serve_workers(data, 1, env, log) as (url, server):
            job = httpx.post(f"{url}/catalog/imports", files={"file": ("job.jsonl", lines)}, headers=ADMIN).json()["data"]
            writer = threading.Thread(target=_batches, args=(url, [by_url(o, photos) for o in batch_offers], acknowledged, stop))
            writer.start()
            deadline = time.monotonic() + 120
            while True:  # kill once the job has written a checkpoint and some batches are answered
                state = httpx.get(f"{url}/catalog/imports/{job['id']}", headers=ADMIN).json()["data"]
                if (state["rows_done"] > 0 and len(acknowledged) >= 3) or state["status"] == "done":
                    break
                assert time.monotonic() < deadline, state
                time.sleep(0.1)
            os.kill(server.pid, signal.SIGKILL)
            server.wait(30)
            stop.set()
            writer.join(60)
        killed_at = state["rows_done"]
        assert state["status"] == "running" and 0 < killed_at < len(job_offers), "the job was not killed mid-way"

        checkup = subprocess.run(
            [sys.executable, "-m", "snapsource", "doctor", "--data", str(data)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert "doctor:" in checkup.stderr, checkup.stderr

        with open(tmp_path / "second.log", "wb") as log, loopback.serve_workers(data, 1, env, log) as (url, _):
            token = httpx.post(f"{url}/admin/tokens", json={"name": "after"}, headers=ADMIN).json()["data"]["token"]
            deadline = time.monotonic() + 180
            while True:
                state = httpx.get(f"{url}/catalog/imports/{job['id']}", headers=ADMIN).json()["data"]
                if state["status"] in ("done", "failed"):
                    break
                assert time.monotonic() < deadline, state
                # searches while the job resumes
                assert (
                    httpx.get(
                        f"{url}/1688/search/image", params={"apiToken": token, "img_url": photos + offers[0]["img"]}
                    ).status_code
                    == 200
                )
                time.sleep(0.3)
            assert state["status"] == "done", state
            assert state["rows_done"] == state["rows_total"] == len(job_offers)
            counts = state["counts"]
            assert counts["rows"] == len(job_offers) and counts["rejected"] == counts["skipped"] == 0, counts
            # rows written twice (the chunk in flight at the kill) count as unchanged the second time
            assert counts["added"] + counts["updated"] + counts["unchanged"] == len(job_offers)
            with httpx.Client(base_url=url, timeout=30) as client:
                for offer in [*job_offers[::20], *(o for o in batch_offers if o["item_id"] in acknowledged[::3])]:
                    assert found_first(client, token, photos + offer["img"]) in _twins(offer), offer["item_id"]

    restored = open_resources(data, **settings)
    findings = doctor.check(restored)
    assert findings.consistent, findings.summary()
    stored = restored.catalog.offer_ids()
    assert {o["item_id"] for o in job_offers} <= stored
    assert set(acknowledged) <= stored, "an acknowledged batch was lost"
    for item_id in acknowledged:
        offer = restored.catalog.stored_offer(item_id)
        assert offer is not None and offer.images
        assert restored.index.embedded([image.id for _, image in offer.images]) == {image.id for _, image in offer.images}
    restored.close()


def _twins(offer: dict) -> set[int]:
    """The offers that show the same main photo (relistings): any of them may come first."""
    return {o["item_id"] for o in luma_offers() if o["img"] == offer["img"]}
