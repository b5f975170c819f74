"""A compressed vector index for large catalogs: faiss IVF with 8-bit scalar quantisation (SQ8),
re-scored on full-precision vectors kept on disk (float32, memory-mapped).

Why this layout (measured in docs/performance.md): 1280-d float32 vectors take 5 GB per million;
SQ8 codes take a quarter of that, and an inverted file scans only the lists near the query. SQ8
scores are approximate, so the best `refine` x k are scored again with the float32 vectors,
which stay on disk and are read only for those rows (float16 would halve the disk, but numpy
converts float16 at about 5 ns a value: 2.6 ms for 400 rows, more than the search itself).

Filters: the search is limited to the allowed ids (a bitmap, faiss IDSelectorBitmap). When a
filter keeps a fraction s of the vectors, the lists near the query hold only s of what they
would, so the planner probes more of them (`probes`), and below EXACT_BELOW it scores every
allowed vector exactly. Recall stays at every selectivity, where a graph index over the vectors
(HNSW) loses it as the filter tightens.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path

import faiss
import numpy as np

from .index import id_selector

META = "ivf.json"
CODES = "ivf.faiss"
FULL = "vectors.f32"
EXACT_BELOW = 0.005  # a filter keeping under 0.5% of the vectors: score them all, exactly


class IvfIndex:
    def __init__(self, index: faiss.IndexIVF, full: np.ndarray, nprobe: int = 16, refine: int = 2) -> None:
        self._index = index
        self._full = full  # float32 [rows, dim] on disk; row = vector id
        self.nprobe = nprobe
        self.refine = refine
        self.dim = index.d

    # building ----------------------------------------------------------------------------------
    @staticmethod
    def train(dim: int, sample: np.ndarray, nlist: int) -> faiss.IndexIVF:
        """k-means centroids, found through a small HNSW graph: comparing a query with 4096
        centroids one by one took 2.4 ms, half of a search's budget."""
        index = faiss.index_factory(dim, f"IVF{nlist}_HNSW32,SQ8", faiss.METRIC_INNER_PRODUCT)
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        return index

    @staticmethod
    def centroids(index: faiss.IndexIVF) -> faiss.IndexFlatIP:
        """The lists' centroids, compared exactly: for filing vectors at build time."""
        flat = faiss.IndexFlatIP(index.d)
        flat.add(index.quantizer.reconstruct_n(0, index.nlist))
        return flat

    @staticmethod
    def add(index: faiss.IndexIVF, centroids: faiss.IndexFlatIP, vectors: np.ndarray, ids: np.ndarray) -> None:
        """File each vector in its nearest list, found exactly. Through the HNSW graph (faiss's
        efSearch 16) 2% of the vectors went to another list, and searches that probe the nearest
        lists missed them: recall@100 0.977 instead of 1.0. With efSearch 128 the add took over
        10 minutes for 1.3 M vectors; the exact search over 4096 centroids takes about 2."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        _, lists = centroids.search(vectors, 1)
        lists = np.ascontiguousarray(lists[:, 0], dtype=np.int64)
        index.add_core(len(vectors), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists))

    @staticmethod
    def write(directory: Path, index: faiss.IndexIVF, count: int, nprobe: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (CODES + ".tmp")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, directory / CODES)
        meta = {"kind": "ivf-sq8", "dim": index.d, "nlist": index.nlist, "count": count, "nprobe": nprobe}
        (directory / META).write_text(json.dumps(meta, indent=2) + "\n")

    @staticmethod
    def full_vectors(directory: Path, rows: int, dim: int, mode: str = "r") -> np.ndarray:
        full = np.lib.format.open_memmap(directory / FULL, mode=mode, dtype=np.float32, shape=(rows, dim) if mode == "w+" else None)
        if mode == "r" and full.size and isinstance(getattr(full, "_mmap", None), mmap.mmap):
            full._mmap.madvise(mmap.MADV_RANDOM)  # rows are read a few at a time: no read-ahead
        return full

    @classmethod
    def open(cls, directory: Path, mmap: bool = False) -> IvfIndex:
        """The SQ8 lists in memory, or memory-mapped (`mmap`: worker processes share the pages and
        a restart reads nothing, but a search is 1.6x slower: 4.2 vs 2.7 ms at 260k vectors)."""
        meta = json.loads((directory / META).read_text())
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(directory / CODES), flags)
        return cls(index, cls.full_vectors(directory, 0, meta["dim"]), nprobe=meta["nprobe"])

    # searching ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def probes(self, selectivity: float) -> int:
        """Lists to visit when a filter keeps this share of the vectors. The matches that pass the
        similarity threshold sit in the lists nearest the query whatever the filter, which only
        thins them out; widening by 1/sqrt(share) kept recall@100 at 1.0 in `snapsource bench`
        where 1/share cost 2.5x the time at 1% (docs/performance.md)."""
        if selectivity <= 0:
            return 0
        return min(self._index.nlist, math.ceil(self.nprobe / math.sqrt(selectivity)))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), best first, scored on the full vectors; `allowed[id]` limits it.

        The plan: without a filter, or one that keeps enough, the IVF lists near the query
        (more of them as the filter tightens); when the filter keeps under EXACT_BELOW of the
        vectors, every allowed vector scored exactly, which is then both cheaper and right."""
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        selectivity = 1.0
        params = faiss.SearchParametersIVF()
        if allowed is not None:
            count = int(np.count_nonzero(allowed))
            if count == 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            selectivity = count / max(1, len(allowed))
            if count <= EXACT_BELOW * len(self):
                return self._score(np.flatnonzero(allowed), query[0], k)
            selector, _bitmap = id_selector(allowed)  # both referenced here until the search returns
            params.sel = selector
        params.nprobe = self.probes(selectivity)
        params.quantizer_params = faiss.SearchParametersHNSW(efSearch=max(64, 2 * params.nprobe))
        _, ids = self._index.search(query, self.shortlist(k), params=params)
        return self._score(ids[0][ids[0] >= 0], query[0], k)

    def shortlist(self, k: int) -> int:
        """How many SQ8 results are re-scored: 2k for a page's worth, k + 200 for a long list
        (a sort's 1,000 candidates), since re-scoring costs about 1 ms per 1,000 rows."""
        return max(64, k + min(k * (self.refine - 1), 200))

    def _score(self, ids: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best k of these ids by their full vectors (rows read in disk order)."""
        if len(ids) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        ids = np.sort(ids)
        exact = np.empty(len(ids), np.float32)
        for start in range(0, len(ids), 8192):  # bounded memory for a large exact subset
            part = ids[start : start + 8192]
            exact[start : start + len(part)] = self._full[part] @ query
        best = np.argpartition(-exact, k - 1)[:k] if len(exact) > k else np.arange(len(exact))
        best = best[np.argsort(-exact[best], kind="stable")]
        return exact[best], ids[best]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self._full[np.asarray(ids, dtype=np.int64)])
