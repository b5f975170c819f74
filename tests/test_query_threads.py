"""How a search uses the two cores: the pixel work in threads beside the model, the same answer as
in one thread, and BLAS and faiss kept to one thread so that their idle threads never spin on the
cores onnxruntime needs (docs/performance.md, "A search with a new photo")."""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future

import faiss
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from conftest import GROCERY, LUMA, PROFILE, luma_offers
from snapsource import search
from snapsource.search import queries
from snapsource.vision import workers


class Inline(Executor):
    """Each task at once in the caller's thread: the query path without its pixel threads."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _photos() -> list[bytes]:
    shop = sorted(GROCERY.glob("**/*.jpg"))[:3]
    views = [LUMA.parent / ref for o in luma_offers()[:4] for ref in o["images"] if ref != o["img"]][:3]
    return [p.read_bytes() for p in [*shop, *views]]


def test_searches_keep_blas_and_faiss_to_one_thread(resources):
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
    assert faiss.omp_get_max_threads() == 1


@pytest.mark.skipif(PROFILE != "default", reason="compaction of the faiss store")
def test_compaction_takes_every_core_and_gives_them_back(resources):
    from snapsource.store.vectors.faiss_store import every_core

    cores = os.cpu_count() or 1
    with every_core():
        assert faiss.omp_get_max_threads() == cores
        assert all(p["num_threads"] == cores for p in threadpool_info() if p["user_api"] == "blas")
    assert faiss.omp_get_max_threads() == 1
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")


def test_the_pixel_threads_give_the_answer_of_one_thread(resources, monkeypatch):
    """Boxes, vectors, local features and the re-ranked order: the same with the work in the
    pixel threads as with all of it in the request's thread."""
    photos = _photos()
    threaded = [queries.analyse_bytes(resources, data) for data in photos]
    ranked = [search.ranked(resources, a.vectors, a.local) for a in threaded]
    monkeypatch.setattr(workers, "_pool", Inline())
    for data, analysis, found in zip(photos, threaded, ranked):
        alone = queries.analyse_bytes(resources, data)
        assert alone.regions == analysis.regions and alone.region == analysis.region
        np.testing.assert_array_equal(alone.vectors, analysis.vectors)
        assert alone.local is not None and analysis.local is not None
        np.testing.assert_array_equal(alone.local.descriptors, analysis.local.descriptors)
        again = search.ranked(resources, alone.vectors, alone.local)
        assert [(c.item_id, c.inliers) for c in again] == [(c.item_id, c.inliers) for c in found]
    assert any(c.inliers for found_ in ranked for c in found_)  # re-ranking did check something
