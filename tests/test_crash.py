"""An import killed with SIGKILL at random points, restarted, loses and duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import LUMA, luma_offers, main_image_url
from snapsource import search
from snapsource.config import Settings
from snapsource.ingest import doctor
from snapsource.resources import Resources
from snapsource.search import queries

KILLS = 3


def _top(resources: Resources, offer: dict, k: int = 5) -> list[int]:
    query = queries.known(resources, main_image_url(resources, offer).split("/")[-1].split(".")[0])
    return [c.item_id for c in search.ranked(resources, query.analysis.vectors, query.analysis.local)[:k]]


def test_killed_imports_leave_a_consistent_store_with_the_same_results(tmp_path, resources):
    rng = random.Random(7)
    cli = [sys.executable, "-m", "snapsource"]
    data = tmp_path / "data"
    kills = []
    for _ in range(KILLS):
        run = subprocess.Popen(
            [*cli, "ingest", str(LUMA), "--data", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        delay = rng.uniform(2.0, 9.0)
        time.sleep(delay)
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)
            kills.append(round(delay, 1))
        run.wait(30)
        checkup = subprocess.run([*cli, "doctor", "--data", str(data)], capture_output=True, text=True)
        assert "doctor:" in checkup.stderr  # it reads a killed store without error, whatever it finds
    assert kills, "every import finished before its kill: nothing was tested"

    finished = subprocess.run([*cli, "ingest", str(LUMA), "--data", str(data)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    restored = Resources.open(Settings.load(environ={}, data_dir=data))
    findings = doctor.check(restored)
    assert findings.consistent, findings.summary()
    assert restored.catalog.count() == len({o["item_id"] for o in luma_offers()})  # each offer once
    shown = restored.catalog.shown_image_ids()
    assert set(restored.index.ids().tolist()) == shown == {i.id for i in restored.catalog.all_images()}
    assert len(restored.index) == len(resources.index)
    for offer in luma_offers()[::40]:
        assert _top(restored, offer) == _top(resources, offer), offer["item_id"]
    restored.close()


def test_doctor_repairs_missing_orphan_and_unused(tmp_path, resources):
    """Vectors lost, a stray vector and an image no offer shows: repair restores the state."""
    data = tmp_path / "copy"
    # copied by another process: closing files of a live SQLite database in this process would
    # drop this process's POSIX locks on it, and the session's connections with them
    subprocess.run(["cp", "-r", str(resources.settings.data_dir), str(data)], check=True)
    damaged = Resources.open(Settings.load(environ={}, data_dir=data))
    lost = damaged.index.ids()[:5]
    damaged.index.remove(lost)
    damaged.index.add(np.asarray([10_000_000]), np.ones((1, damaged.embedder.dim), np.float32))
    image = damaged.catalog.add_image("f" * 64, "jpg", 40, 40, b"not shown by any offer")
    damaged.index.save()
    found = doctor.check(damaged)
    assert [i.id for i in found.missing_vectors] == sorted(lost.tolist())
    assert found.orphan_vectors == [10_000_000] and found.unused_images == [image]
    repaired = doctor.repair(damaged)
    assert repaired.consistent and len(damaged.index) == len(resources.index)
    assert not damaged.catalog.image_file(image.sha256, "jpg").exists()
    got = damaged.index.vectors(lost)
    assert np.allclose(got, resources.index.vectors(lost), atol=1e-4)  # the same vectors again
    damaged.close()
    cli = subprocess.run([sys.executable, "-m", "snapsource", "doctor", "--data", str(data)], capture_output=True, text=True)
    assert cli.returncode == 0 and "consistent" in cli.stderr
