"""Query images outlive the process, follow the model, and are pruned when unused."""

from __future__ import annotations

import time

import numpy as np

from imageserver import grocery_photo
from snapsource.config import Settings
from snapsource.resources import Resources
from snapsource.search import queries
from snapsource.store.lru import LRU
from snapsource.store.uploads import Upload, Uploads


def test_vectors_survive_a_restart_and_are_reembedded_for_another_model(tmp_path):
    photo = grocery_photo(3).read_bytes()
    first = Resources.open(Settings.load(environ={}, data_dir=tmp_path))
    query = queries.from_bytes(first, photo)
    first.close()

    again = Resources.open(Settings.load(environ={}, data_dir=tmp_path))
    assert again.uploads.analysis(query.sha256) is not None  # from disk, no embedding
    kept = queries.known(again, query.sha256)
    assert np.allclose(kept.vector, query.vector) and kept.analysis.regions == query.analysis.regions
    again.close()

    other = Uploads(tmp_path / "uploads", pipeline="another-model;trim=0.08")
    assert other.get(query.sha256) is not None and other.analysis(query.sha256) is None  # file kept, stale
    other.close()
    changed = Resources.open(Settings.load(environ={}, data_dir=tmp_path, multi_crop=False))
    requery = queries.known(changed, query.sha256)
    assert requery is not None and changed.uploads.analysis(query.sha256) is not None
    assert not np.allclose(requery.vector, query.vector)  # analysed again, by the new pipeline
    changed.close()


def test_unused_uploads_are_pruned_with_their_files(tmp_path):
    store = Uploads(tmp_path, pipeline="m", keep_days=30)
    old, new = Upload("a" * 64, "jpg", 40, 40), Upload("b" * 64, "png", 40, 40)
    for upload in (old, new):
        store.put(upload, b"bytes", b"analysis")
    store.remember_url("http://x.example/a.jpg", old.sha256)
    with store.write() as db:
        db.execute("UPDATE uploads SET used_at = ? WHERE sha256 = ?", (time.time() - 31 * 86400, old.sha256))
        db.execute("UPDATE urls SET fetched_at = ?", (time.time() - 31 * 86400,))
    assert store.prune() == 1
    assert not store.file(old.sha256, "jpg").exists() and store.file(new.sha256, "png").exists()
    assert store.get(old.sha256) is None and store.get(new.sha256) == new
    fresh = Uploads(tmp_path, pipeline="m")  # another process: nothing cached in memory
    assert fresh.sha_for_url("http://x.example/a.jpg") is None
    store.close()
    fresh.close()


def test_lru_is_bounded():
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)  # evicts b, the least recently used
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3
