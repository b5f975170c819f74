"""The compressed part of the vector index: faiss IVF with 8-bit scalar quantisation (SQ8).

Why this layout (measured in docs/performance.md): 1280-d float32 vectors take 5 GB per million;
SQ8 codes take a quarter of that, and an inverted file scans only the lists near the query. SQ8
scores are approximate, so the store (index.py) scores its shortlist again on the float32 rows.

Filters: the search is limited to the allowed ids (a bitmap, faiss IDSelectorBitmap). When a
filter keeps a fraction s of the vectors, the lists near the query hold only s of what they
would, so the planner probes more of them (`probes`). Recall stays at every selectivity, where a
graph index over the vectors (HNSW) loses it as the filter tightens.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
from pathlib import Path
from typing import cast

import faiss
import numpy as np

NPROBE = 16
SAMPLE_PER_LIST = 40  # k-means training points per list (faiss warns under 39)


def lists_for(count: int) -> int:
    """About 4·√N lists, a power of two, with at least SAMPLE_PER_LIST vectors each."""
    target = 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
    return int(max(16, min(8192, target, 2 ** int(math.log2(max(count // SAMPLE_PER_LIST, 16))))))


def train(dim: int, sample: np.ndarray, nlist: int) -> faiss.IndexIVF:
    """k-means centroids, searched through a small HNSW graph: comparing a query with 4096
    centroids one by one took 2.4 ms, half of a search's budget."""
    # faiss hands back the index downcast to its class (IndexIVFScalarQuantizer); its stubs say Index
    index = cast(faiss.IndexIVF, faiss.index_factory(dim, f"IVF{nlist}_HNSW32,SQ8", faiss.METRIC_INNER_PRODUCT))
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def centroids(index: faiss.IndexIVF) -> faiss.IndexFlatIP:
    """The lists' centroids, compared exactly: for filing vectors."""
    flat = faiss.IndexFlatIP(index.d)
    flat.add(index.quantizer.reconstruct_n(0, index.nlist))
    return flat


def add(index: faiss.IndexIVF, nearest: faiss.IndexFlatIP, vectors: np.ndarray, ids: np.ndarray) -> None:
    """File each vector in its nearest list, found exactly. Through the HNSW graph (faiss's
    efSearch 16) 2% of the vectors went to another list, and searches that probe the nearest
    lists missed them: recall@100 0.977 instead of 1.0. With efSearch 128 the add took over
    10 minutes for 1.3 M vectors; the exact search over 4096 centroids takes about 2."""
    if len(ids) == 0:
        return
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    _, lists = nearest.search(vectors, 1)
    lists = np.ascontiguousarray(lists[:, 0], dtype=np.int64)
    index.add_core(len(vectors), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists))


def open_shared(path: Path) -> faiss.IndexIVF:
    """The lists memory-mapped as views (faiss IO_FLAG_MMAP_IFC): worker processes share one copy
    in the page cache, and opening reads nothing. Warm, a search costs what it costs on lists read
    into memory (0.99 vs 0.91 ms at 260k vectors); faiss's older IO_FLAG_MMAP took 2.6 ms. Cold,
    each search would read its lists from disk (32 ms at a million vectors), so the kernel is
    asked to read the whole file ahead, in the background (every search needs some of it)."""
    # a base file holds an IVF index, which faiss reads back downcast; its stubs say Index
    index = cast(faiss.IndexIVF, faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)
    return index


def lock_in_memory(path: Path) -> mmap.mmap:
    """Pin a file's pages in memory (mlock on a mapping of it). The page cache is shared, so the
    lists that every search reads stay resident for every process mapping them, however much
    else the server reads (the offers database). Keep the mapping: closing it unpins."""
    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = np.frombuffer(mapped, dtype=np.uint8)  # ctypes takes no read-only buffer; numpy gives its address
    address = view.__array_interface__["data"][0]
    del view
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(len(mapped))) != 0:
        errno = ctypes.get_errno()
        mapped.close()
        raise OSError(errno, f"mlock of {path} failed: {os.strerror(errno)} (raise `ulimit -l`, or turn index_lock off)")
    return mapped


def probes(index: faiss.IndexIVF, selectivity: float, nprobe: int = NPROBE) -> int:
    """Lists to visit when a filter keeps this share of the vectors. The matches that pass the
    similarity threshold sit in the lists nearest the query whatever the filter, which only
    thins them out; widening by 1/sqrt(share) kept recall@100 at 1.0 in `snapsource bench`
    where 1/share cost 2.5x the time at 1% (docs/performance.md)."""
    if selectivity <= 0:
        return 0
    return min(index.nlist, math.ceil(nprobe / math.sqrt(selectivity)))


def search(
    index: faiss.IndexIVF,
    query: np.ndarray,
    k: int,
    selectivity: float = 1.0,
    selector: faiss.IDSelector | None = None,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """SQ8 top-k (approximate scores, ids) of one query, within `selector` when given; `nprobe`
    overrides the planner's lists."""
    params = faiss.SearchParametersIVF()
    if selector is not None:
        params.sel = selector
    params.nprobe = nprobe or probes(index, selectivity)
    # faiss has SearchParametersHNSW, but its stubs (faiss/__init__.pyi) leave the class out
    params.quantizer_params = faiss.SearchParametersHNSW(efSearch=max(64, 2 * params.nprobe))  # type: ignore[attr-defined]
    scores, ids = index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k, params=params)
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]
