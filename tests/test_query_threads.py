"""How a search uses the two cores: BLAS and faiss kept to one thread, so that their idle threads
never spin on the cores onnxruntime needs (docs/performance.md, "A search with a new photo");
compaction takes every core while it runs, and gives them back."""

from __future__ import annotations

import os

import faiss
import pytest
from threadpoolctl import threadpool_info

from conftest import PROFILE


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
