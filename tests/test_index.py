"""The vector store: exact below TRAIN_MIN, IVF base + exact delta above it, changes without a
rebuild, compaction, reloads by other processes, and filters at every selectivity."""

from __future__ import annotations

import fcntl
import json
import time

import numpy as np
import pytest

from snapsource.store.vectors import IndexMismatch
from snapsource.store.vectors import faiss_store as index_mod
from snapsource.store.vectors.faiss_store import FaissStore

DIM = 64
MODEL = "test-model@1"


def clustered(n: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    v = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, DIM)).astype(np.float32) * 0.9
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exact_top(vectors: dict[int, np.ndarray], query: np.ndarray, k: int, allowed=None) -> list[int]:
    ids = [i for i in vectors if allowed is None or (i < len(allowed) and allowed[i])]
    scores = np.array([vectors[i] @ query for i in ids])
    return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture
def small_base(monkeypatch):
    """An IVF base from 2,000 vectors, a compaction after 100 new ones: the large-catalog paths on small data."""
    monkeypatch.setattr(index_mod, "TRAIN_MIN", 2000)
    monkeypatch.setattr(index_mod, "COMPACT_DELTA", 100)


def test_a_small_store_is_exact_and_survives_a_reopen(tmp_path):
    store = FaissStore(tmp_path, MODEL, DIM)
    vectors = clustered(300)
    ids = np.arange(1, 301) * 3  # ids with gaps, as images deleted from a catalog leave them
    store.add(ids, vectors)
    truth = dict(zip(ids.tolist(), vectors))
    query = vectors[10]
    scores, found = store.search_images(query, 5)
    assert found.tolist() == exact_top(truth, query, 5) and np.isclose(scores[0], 1.0)
    store.remove(ids[10:11])
    assert ids[10] not in store.search_images(query, 5)[1] and len(store) == 299
    with pytest.raises(RuntimeError):
        store.vectors(ids[10:11])
    store.save()
    again = FaissStore(tmp_path, MODEL, DIM)
    assert len(again) == 299 and set(again.ids().tolist()) == set(ids.tolist()) - {int(ids[10])}
    np.testing.assert_allclose(again.vectors(ids[:2]), vectors[:2])
    assert not again.due() and again.stats()["base_lists"] == 0


def test_unsaved_vectors_are_not_seen_after_a_crash(tmp_path):
    store = FaissStore(tmp_path, MODEL, DIM)
    store.add(np.arange(10), clustered(10))
    store.save()
    store.add(np.arange(10, 20), clustered(10, seed=1))  # rows on disk, state not saved: a kill now
    reopened = FaissStore(tmp_path, MODEL, DIM)
    assert sorted(reopened.ids().tolist()) == list(range(10))


def test_an_index_of_another_model_is_refused(tmp_path):
    FaissStore(tmp_path, "other-model@9", 4).save()
    with pytest.raises(IndexMismatch, match="other-model@9"):
        FaissStore(tmp_path, MODEL, 4)


def test_adds_and_deletes_work_without_a_rebuild_and_compaction_folds_them_in(tmp_path, small_base):
    store = FaissStore(tmp_path, MODEL, DIM)
    vectors = clustered(3000)
    store.add(np.arange(3000), vectors)
    store.save()
    assert store.due()
    report = store.compact()
    assert report["retrained"] and report["base"] == 3000
    assert store.stats() == {"vectors": 3000, "base": 3000, "base_lists": report["lists"], "delta": 0, "masked": 0}
    truth = dict(enumerate(vectors))

    # new vectors are found at once (the delta), deleted ones never, a replaced one by its new vector
    fresh = clustered(50, seed=7)
    store.add(np.arange(3000, 3050), fresh)
    store.remove(np.arange(0, 30))
    store.add(np.array([40]), fresh[:1])
    truth.update(zip(range(3000, 3050), fresh))
    truth[40] = fresh[0]
    for i in range(30):
        truth.pop(i)
    scores, found = store.search_images(fresh[0], 3)
    assert set(found.tolist()) <= set(truth) and {3000, 40} <= set(found.tolist()) and np.isclose(scores[0], 1.0)
    assert not set(store.search_images(vectors[5], 50)[1].tolist()) & set(range(30))
    assert store.stats()["delta"] == 51 and store.stats()["masked"] == 31

    # another process (a server) takes the saved changes up, then a compaction by a third
    store.save()
    server = FaissStore(tmp_path, MODEL, DIM)
    before = [server.search_images(q, 10)[1].tolist() for q in fresh[:5]]
    store.add(np.arange(3050, 3200), clustered(150, seed=8))
    store.save()
    assert server.refresh() and server.due()
    report = FaissStore(tmp_path, MODEL, DIM).compact()
    assert not report["retrained"] and report["base"] == 3200 - 30
    assert server.refresh() and server.stats()["delta"] == 0 and server.stats()["masked"] == 0
    for q, ids in zip(fresh[:5], before):
        assert set(ids) <= set(server.search_images(q, 20)[1].tolist())
    assert len(list(tmp_path.glob("base-*.ivf"))) == 1  # older bases are removed

    # recall against exact search, over a base with masked entries and a delta
    store.remove(np.arange(100, 200))
    queries = clustered(20, seed=9)
    truth = dict(zip(store.ids().tolist(), store.vectors(store.ids())))
    recall = np.mean([len(set(store.search_images(q, 20)[1].tolist()) & set(exact_top(truth, q, 20))) / 20 for q in queries])
    assert recall >= 0.95


def test_a_catalog_that_grows_fourfold_gets_new_lists_and_one_that_shrinks_loses_its_base(tmp_path, small_base):
    store = FaissStore(tmp_path, MODEL, DIM)
    store.add(np.arange(2000), clustered(2000))
    store.save()
    first = store.compact()
    store.add(np.arange(2000, 10000), clustered(8000, seed=2))
    store.save()
    second = store.compact()
    assert second["retrained"] and second["lists"] > first["lists"]
    store.remove(np.arange(1000, 10000))
    store.save()
    assert store.due()
    store.compact()
    assert store.stats()["base_lists"] == 0 and len(store) == 1000
    query = store.vectors(np.array([5]))[0]
    assert store.search_images(query, 1)[1].tolist() == [5]


def test_one_compaction_at_a_time(tmp_path, small_base):
    store = FaissStore(tmp_path, MODEL, DIM)
    store.add(np.arange(2500), clustered(2500))
    store.save()
    with open(tmp_path / FaissStore.LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert store.compact() is None
    assert store.compact() is not None


@pytest.mark.parametrize("rescore", [True, False])
@pytest.mark.parametrize("keep", [0.003, 0.05, 0.5, 1.0])
def test_filtered_search_returns_only_allowed_ids_and_every_match(tmp_path, small_base, keep, rescore):
    """The exact plan (few allowed), then the IVF plan with more lists, over a base and a delta;
    with the float32 rows re-scoring the base's shortlist, and with the base's SQ8 scores alone."""
    store = FaissStore(tmp_path, MODEL, DIM, rescore=rescore)
    vectors = clustered(4000, seed=3)
    store.add(np.arange(3800), vectors[:3800])
    store.save()
    store.compact()
    store.add(np.arange(3800, 4000), vectors[3800:])  # a delta, too
    rng = np.random.default_rng(0)
    truth = dict(enumerate(vectors))
    for target in (17, 3900):
        query = vectors[target] + rng.standard_normal(DIM).astype(np.float32) * 0.01
        query /= np.linalg.norm(query)
        allowed = rng.random(3990) < keep  # shorter than the ids: those past its end are not allowed
        allowed[target] = True
        scores, ids = store.search_images(query, 10, allowed)
        assert allowed[ids].all() and ids[0] == target and np.all(np.diff(scores) <= 0)
        assert set(exact_top(truth, query, 5, allowed)) <= set(ids.tolist())
    assert store.search_images(vectors[0], 10, np.zeros(4000, bool))[1].size == 0


def test_a_threshold_skips_what_is_clearly_below_it(tmp_path, small_base):
    store = FaissStore(tmp_path, MODEL, DIM)
    vectors = clustered(3000, seed=4)
    store.add(np.arange(3000), vectors)
    store.save()
    store.compact()
    scores, ids = store.search_images(vectors[0], 500, threshold=0.5)
    full_scores, full_ids = store.search_images(vectors[0], 500)
    over = full_ids[full_scores >= 0.5]
    assert set(over.tolist()) <= set(ids.tolist()) and len(ids) < 500


def test_meta_records_the_model(tmp_path):
    store = FaissStore(tmp_path, MODEL, DIM)
    store.add(np.arange(3), clustered(3))
    store.save()
    meta = json.loads((tmp_path / "index.json").read_text())
    assert meta["model"] == MODEL and meta["dim"] == DIM and meta["count"] == 3


def test_the_base_can_be_pinned_in_memory(tmp_path, small_base):
    store = FaissStore(tmp_path, MODEL, DIM)
    store.add(np.arange(2500), clustered(2500))
    store.save()
    store.compact()
    pinned = FaissStore(tmp_path, MODEL, DIM, lock=True)
    assert pinned.view().base.pinned is not None
    assert pinned.search_images(store.vectors(np.array([7]))[0], 1)[1].tolist() == [7]


def test_a_server_compacts_in_the_background(tmp_path, small_base):
    """What an import saved is taken up and folded into a new base by the server's own thread."""
    from snapsource.store.vectors import Compactor

    writer = FaissStore(tmp_path, MODEL, DIM)
    server = FaissStore(tmp_path, MODEL, DIM)
    compactor = Compactor(server, interval=0.05).start()
    try:
        writer.add(np.arange(2500), clustered(2500))
        writer.save()
        deadline = time.monotonic() + 30
        while server.stats()["base"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats()["base"] == 2500 and server.stats()["delta"] == 0
        writer.add(np.arange(2500, 2700), clustered(200, seed=5))  # a delta past COMPACT_DELTA
        writer.save()
        while server.stats()["base"] != 2700 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats() == {**server.stats(), "base": 2700, "delta": 0}
    finally:
        compactor.stop()
