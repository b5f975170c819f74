"""Vector index: image vectors by image id, behind a small interface.

The embedded default is an exact faiss inner-product index on disk under the data dir, written
atomically (write a new file, fsync, rename) so a crash never leaves a half-written index. A
server notices a newer file (an ingest finished) and reloads it between requests.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np


class IndexMismatch(RuntimeError):
    """The index was built by another model or preprocessing: its vectors are not comparable."""


class VectorIndex(Protocol):
    def __len__(self) -> int: ...
    def ids(self) -> np.ndarray: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def vectors(self, ids: np.ndarray) -> np.ndarray: ...
    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def save(self) -> None: ...
    def refresh(self) -> bool: ...

    @property
    def generation(self) -> int:
        """Changes whenever the vectors do: results cached under it stay valid while it holds."""
        ...


def id_selector(allowed: np.ndarray) -> tuple[faiss.IDSelectorBitmap, np.ndarray]:
    """A faiss selector of the ids whose `allowed[id]` is true, and the bitmap it points into:
    keep the bitmap referenced for as long as the selector is used."""
    bitmap = np.packbits(allowed, bitorder="little")  # faiss reads bit (id & 7) of byte id >> 3
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


def _fsync_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FaissIndex:
    """Exact cosine search (IndexIDMap2 over IndexFlatIP); ids are catalog image ids."""

    FILE = "vectors.faiss"
    META = "index.json"

    def __init__(self, directory: Path, model: str, dim: int) -> None:
        self.directory = Path(directory)
        self.model = model
        self.dim = dim
        self._lock = threading.Lock()
        self._mtime_ns = 0
        self._index = self._empty()
        self._generation = 0
        self._load()

    def _empty(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    def _load(self) -> None:
        meta_path = self.directory / self.META
        if not self.path.exists() or not meta_path.exists():
            return
        meta = json.loads(meta_path.read_text())
        if meta.get("model") != self.model or meta.get("dim") != self.dim:
            raise IndexMismatch(
                f"the index in {self.directory} was built with model {meta.get('model')!r} "
                f"(dim {meta.get('dim')}), but this server uses {self.model!r} (dim {self.dim}): "
                "re-ingest the catalog with `snapsource ingest CATALOG --rebuild`"
            )
        mtime = self.path.stat().st_mtime_ns
        index = faiss.read_index(str(self.path))
        with self._lock:
            self._index, self._mtime_ns = index, mtime
            self._generation += 1

    def refresh(self) -> bool:
        """Reload if another process (an ingest) wrote a newer index; True when reloaded."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._mtime_ns:
            return False
        self._load()
        return True

    @property
    def generation(self) -> int:
        return self._generation

    def reset(self) -> None:
        with self._lock:
            self._index = self._empty()
            self._generation += 1

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        with self._lock:
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self._generation += 1

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        with self._lock:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._generation += 1

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        index = self._index
        return np.stack([index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim), np.float32)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector, best first; empty when the index is.
        `allowed[id]` (booleans by id), when given, limits the search to those ids."""
        index = self._index
        k = min(k, int(index.ntotal))
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if allowed is None:
            scores, ids = index.search(query, k)
        else:
            selector, _bitmap = id_selector(allowed)
            scores, ids = index.search(query, k, params=faiss.SearchParameters(sel=selector))
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            _fsync_write(self.path, lambda p: faiss.write_index(self._index, str(p)))
            meta = {"model": self.model, "dim": self.dim, "kind": "faiss-flat-ip", "count": int(self._index.ntotal)}
            _fsync_write(self.directory / self.META, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
            self._mtime_ns = self.path.stat().st_mtime_ns
