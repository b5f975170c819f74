"""Vector index: image vectors by image id, for catalogs of a few hundred to millions of photos.

On disk (data dir / index):
- `vectors.f32`: every vector in full precision, row = image id, written in place and
  memory-mapped: the truth that every search scores its shortlist on.
- `state.npz`: for each id, the save that wrote its row (0: no vector), and the save counter.
- `base.json` and `base-N.ivf`: an IVF-SQ8 index (ivf.py) of the vectors as they were at save N,
  memory-mapped, so worker processes share one copy and a restart reads nothing.
- `index.json`: the model and dimension, so vectors of another model are never compared.

A vector written after save N is in the *delta*, scored exactly from its row; one removed is
masked out of the base with the same bitmap as the filters. Adding and deleting therefore never
rebuilds anything. Compaction (`compact`, run in the background by the server and at the end of
an import when due) folds the delta into a new base and drops removed entries; it retrains the
lists only when the catalog has grown about fourfold. Below TRAIN_MIN vectors there is no base:
everything is scored exactly, which is then both cheapest and right.

Filters: `search_images(..., allowed)` takes booleans by image id. The planner scores every allowed
vector exactly when they are few (EXACT_BELOW of the base), otherwise probes more IVF lists as
the filter tightens (ivf.probes). Writes are crash-safe by order: rows are written and fsynced
before the state that points at them is replaced atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import faiss
import numpy as np

from snapsource.arrays import unpack
from snapsource.store.columns import Columns, Selection
from snapsource.store.vectors import ivf
from snapsource.store.vectors.base import IndexMismatch, Matches, rebuild_hint

log = logging.getLogger("snapsource.index")

TRAIN_MIN = 10_000  # fewer vectors: no IVF base, every search exact (about 50 MB to scan at most)
EXACT_BELOW = 0.005  # a filter keeping under 0.5% of the base: score those vectors exactly
COMPACT_DELTA = 2_000  # a delta larger than this (10 MB, 1.6 ms of exact scoring per search) is folded in
COMPACT_MASKED = 0.1  # so is a base whose removed or replaced entries reach this share
SQ8_MARGIN = 0.02  # SQ8 scores are within about 0.001 of the exact ones (docs/performance.md)
SCORE_ROWS = 8192  # exact scoring reads at most this many rows at a time


def id_selector(allowed: np.ndarray) -> tuple[faiss.IDSelectorBitmap, np.ndarray]:
    """A faiss selector of the ids whose `allowed[id]` is true, and the bitmap it points into:
    keep the bitmap referenced for as long as the selector is used."""
    bitmap = np.packbits(allowed, bitorder="little")  # faiss reads bit (id & 7) of byte id >> 3
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


@contextlib.contextmanager
def every_core() -> Iterator[None]:
    """Training and filing take every core (k-means, exact filing): a process that searches keeps
    faiss and BLAS to one thread (resources.one_thread_per_search), a compaction is rarer and long."""
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        with threadpool_limits(os.cpu_count() or 1, user_api="blas"):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    _fsync_replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class Base:
    index: faiss.IndexIVF
    generation: int  # holds the rows as saved by this save
    file: str
    pinned: object = None  # the mlocked mapping of the file, with index_lock

    @property
    def size(self) -> int:
        return int(self.index.ntotal)


@dataclasses.dataclass(frozen=True)
class View:
    """What a search needs, derived once per change: which ids the base may answer for, and the
    delta. Searches take a reference, so a refresh never changes one under them."""

    written: np.ndarray
    base: Base | None
    in_base: np.ndarray | None  # bool by id: the base's entry is this id's current vector
    base_bitmap: tuple | None  # selector for in_base, when the base holds entries to mask
    live_in_base: int
    delta: np.ndarray  # sorted ids scored exactly
    count: int

    @property
    def masked(self) -> int:
        """Base entries that no longer count (removed, or replaced by a newer vector)."""
        return 0 if self.base is None else self.base.size - self.live_in_base


class FaissStore:
    """Exact-ish cosine search over unit vectors by id: IVF-SQ8 base + exact delta, float32 rows."""

    ROWS = "vectors.f32"
    STATE = "state.npz"
    BASE = "base.json"
    META = "index.json"
    LOCK = "compact.lock"

    def __init__(self, directory: Path, model: str, dim: int, rescore: bool = True, lock: bool = False) -> None:
        self.directory = Path(directory)
        self.model = model
        self.dim = dim
        self.rescore = rescore  # False: the base ranks by its SQ8 scores and never reads float32 rows
        self.lock = lock  # pin the base's lists in memory (mlock)
        self._lock = threading.RLock()
        self._written = np.zeros(0, np.int32)
        self._saved = 0  # the save counter of the state on disk (or of ours, once saved)
        self._dirty = False  # changes not saved yet: a refresh must not replace them
        self._drop_base = False
        self._base: Base | None = None
        self._rows: np.ndarray = np.zeros((0, dim), np.float32)
        self._fd: int | None = None
        self._stamps: tuple = ()
        self._version = 0
        self._view: View | None = None
        self._masks: OrderedDict[int, tuple] = OrderedDict()  # id(allowed) -> (allowed, mask, selector...)
        self._load()

    # loading -----------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.directory / name

    def _stat(self) -> tuple:
        out: list[tuple[int, int] | None] = []
        for name in (self.META, self.STATE, self.BASE):
            try:
                st = self._path(name).stat()
                out.append((st.st_mtime_ns, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def _check_model(self) -> None:
        meta_path = self._path(self.META)
        if not meta_path.exists():
            return
        meta = json.loads(meta_path.read_text())
        if meta.get("model") != self.model or meta.get("dim") != self.dim:
            raise IndexMismatch(
                f"the index in {self.directory} was built with model {meta.get('model')!r} "
                f"(dim {meta.get('dim')}), but this server uses {self.model!r} (dim {self.dim}): "
                + rebuild_hint(str(meta.get("model")), self.model)
            )

    def _read_state(self) -> tuple[np.ndarray, int]:
        try:
            state = unpack(self._path(self.STATE).read_bytes())
            return state["written"].astype(np.int32), int(state["generation"])
        except FileNotFoundError:
            return np.zeros(0, np.int32), 0

    def _read_base(self) -> Base | None:
        meta = self._base_meta()
        if meta is None:
            return None
        if self._base is not None and self._base.file == meta["file"]:
            return self._base
        path = self._path(meta["file"])
        pinned = ivf.lock_in_memory(path) if self.lock else None
        return Base(ivf.open_shared(path), int(meta["generation"]), meta["file"], pinned)

    def _load(self) -> None:
        self._check_model()
        stamps = self._stat()
        with self._lock:
            if not self._dirty:
                self._written, self._saved = self._read_state()
            self._base = None if self._drop_base else self._read_base()
            present = np.flatnonzero(self._written)
            self._map_rows(int(present[-1]) + 1 if len(present) else 0)
            self._stamps = stamps
            self._changed()

    def refresh(self) -> bool:
        """Take up what another process saved (an import, a compaction); True when something changed."""
        if self._stat() == self._stamps:
            return False
        self._load()
        return True

    def _map_rows(self, rows: int) -> None:
        """Map the row file (again) so that rows below `rows` are readable."""
        if len(self._rows) >= rows:
            return
        path = self._path(self.ROWS)
        size = path.stat().st_size // (4 * self.dim) if path.exists() else 0
        self._rows = np.memmap(path, np.float32, "r", shape=(size, self.dim)) if size else np.zeros((0, self.dim), np.float32)

    def _changed(self) -> None:
        self._version += 1
        self._view = None
        self._masks.clear()

    # the derived view -------------------------------------------------------------------------
    def view(self) -> View:
        view = self._view
        if view is not None:
            return view
        with self._lock:
            written, base = self._written.copy(), self._base
            present = written > 0
            if base is None:
                in_base, bitmap, live = None, None, 0
                delta = np.flatnonzero(present)
            else:
                in_base = present & (written <= base.generation)
                live = int(np.count_nonzero(in_base))
                bitmap = None if live == base.size else id_selector(in_base)
                delta = np.flatnonzero(written > base.generation)
            view = View(written, base, in_base, bitmap, live, delta.astype(np.int64), int(np.count_nonzero(present)))
            self._view = view
            return view

    @property
    def generation(self) -> int:
        return self._version

    def __len__(self) -> int:
        return self.view().count

    def ids(self) -> np.ndarray:
        return np.flatnonzero(self.view().written > 0).astype(np.int64)

    def embedded(self, ids: list[int]) -> set[int]:
        written = self.view().written
        return {i for i in ids if 0 <= i < len(written) and written[i] > 0}

    def stats(self) -> dict[str, int]:
        view = self.view()
        base = view.base
        return {
            "vectors": view.count,
            "base": view.live_in_base,
            "base_lists": 0 if base is None else int(base.index.nlist),
            "delta": len(view.delta),
            "masked": view.masked,
        }

    def describe(self) -> str:
        stats = self.stats()
        if not stats["base_lists"]:
            return f"{stats['delta']} vectors scored exactly (an IVF base is built from {TRAIN_MIN:,})"
        return (
            f"IVF{stats['base_lists']}-SQ8 base of {stats['base']} vectors, {stats['delta']} newer ones scored "
            f"exactly, {stats['masked']} removed entries masked"
        )

    # writing ------------------------------------------------------------------------------------
    def offers_changed(self, item_ids: object) -> None:
        """Nothing to do: vectors here are by image, and the filter columns say which offers show them."""

    def _writer(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path(self.ROWS), os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Write these ids' vectors (replacing any they had); searchable at once, durable at save."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], vectors[order]
        fd = self._writer()
        with self._lock:
            breaks = np.flatnonzero(np.diff(ids) != 1) + 1  # runs of consecutive ids: one write each
            for run_ids, run in zip(np.split(ids, breaks), np.split(vectors, breaks)):
                os.pwrite(fd, run.tobytes(), int(run_ids[0]) * 4 * self.dim)
            top = int(ids[-1]) + 1
            if top > len(self._written):
                grown = np.zeros(max(top, len(self._written) * 3 // 2), np.int32)
                grown[: len(self._written)] = self._written
                self._written = grown
            self._written[ids] = self._saved + 1
            self._map_rows(top)
            self._dirty = True
            self._changed()

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[ids < len(self._written)]
        if len(ids) == 0:
            return
        with self._lock:
            self._written[ids] = 0
            self._dirty = True
            self._changed()

    def reset(self) -> None:
        """Forget every vector (a rebuild with another model); the files follow at save."""
        with self._lock:
            self._written = np.zeros(0, np.int32)
            self._base = None
            self._drop_base = True
            self._dirty = True
            self._changed()

    def save(self) -> None:
        """Make every change durable: rows fsynced first, then the state that points at them."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
            generation = self._saved + 1
            tmp = self._path(self.STATE + ".tmp.npz")
            np.savez(tmp, written=self._written, generation=np.int64(generation))
            _fsync_replace(tmp, self._path(self.STATE))
            if self._drop_base:
                with self._compaction_lock(wait=True):
                    self._drop_base_files()
                self._drop_base = False
            _write_json(
                self._path(self.META), {"model": self.model, "dim": self.dim, "kind": "ivf-sq8+delta", "count": len(self)}
            )
            self._saved, self._dirty = generation, False
            self._stamps = self._stat()

    # reading ------------------------------------------------------------------------------------
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Full-precision vectors of these ids; RuntimeError if one has none."""
        ids = np.asarray(ids, dtype=np.int64)
        written = self.view().written
        if len(ids) and (ids.min() < 0 or ids.max() >= len(written) or not np.all(written[ids] > 0)):
            raise RuntimeError(f"no vector for some of the ids {ids[:8].tolist()}")
        return np.array(self._rows[ids], dtype=np.float32) if len(ids) else np.zeros((0, self.dim), np.float32)

    def searchable(self, columns: Columns, selection: Selection | None) -> int:
        """Images are the entries here: all of them, or those the selection's offers show."""
        return len(self) if selection is None else int(selection.images.sum())

    def search_offers(
        self, query: np.ndarray, k: int, columns: Columns, selection: Selection | None, threshold: float
    ) -> Matches:
        """The top `k` images, then the offers that show them (an image shown by two offers
        matches both), less those the selection drops: an image may also be shown by an offer
        that the filters drop. Which offers show an image comes from the filter columns (numpy),
        not from SQL per search."""
        scores, ids = self.search_images(query, k, None if selection is None else selection.images, threshold)
        more = len(ids) == k and bool(scores[-1] >= threshold)
        over = scores >= threshold
        which, rows = columns.offers_showing(ids[over])
        if selection is not None:
            keep = selection.rows[rows]
            which, rows = which[keep], rows[keep]
        return Matches(columns.item_id[rows], ids[over][which], scores[over][which], more)

    def search_images(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one unit query vector, best first, scored on the full vectors.
        `allowed[id]`, when given, limits the search to those ids; `threshold`, when given, lets the
        search skip what is clearly below it (the result may then hold fewer than k)."""
        view = self.view()
        query = np.ascontiguousarray(query.reshape(-1), dtype=np.float32)
        if k <= 0 or view.count == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        parts = []
        delta = view.delta
        if allowed is not None:  # ids past the end of `allowed` are not allowed
            delta = delta[delta < len(allowed)]
            delta = delta[allowed[delta]]
        if view.base is not None and not self.rescore:
            return self._merge(self._search_base_sq8(view, query, k, allowed, threshold), self._score(delta, query, k), k)
        if view.base is not None:
            parts.append(self._search_base(view, query, k, allowed, threshold))
        parts.append(delta)
        return self._score(np.concatenate(parts) if len(parts) > 1 else parts[0], query, k)

    def _search_base_sq8(
        self, view: View, query: np.ndarray, k: int, allowed: np.ndarray | None, threshold: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The base's top k by its SQ8 scores (within 0.001 of the exact ones): no float32 row is
        read, so the lists are all the memory a search needs. However few vectors a filter keeps,
        the planner's lists are searched within its bitmap: scanning all 4,096 lists for a filter
        keeping 0.3% took 18.9 ms at a million vectors."""
        base = view.base
        assert base is not None
        _, count, selector = self._base_plan(view, allowed)
        if count == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, ids = ivf.search(base.index, query, k, count / base.size, None if selector is None else selector[0])
        if threshold is not None:
            keep = scores >= threshold - SQ8_MARGIN
            scores, ids = scores[keep], ids[keep]
        return scores, ids

    @staticmethod
    def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
        best = np.argsort(-scores, kind="stable")[:k]
        return scores[best].astype(np.float32), ids[best]

    def _search_base(
        self, view: View, query: np.ndarray, k: int, allowed: np.ndarray | None, threshold: float | None
    ) -> np.ndarray:
        """Ids of the base's shortlist for this query: the exact plan or the IVF plan."""
        base = view.base
        assert base is not None
        mask, count, selector = self._base_plan(view, allowed)
        if count == 0:
            return np.zeros(0, np.int64)
        if count <= EXACT_BELOW * base.size:
            return np.flatnonzero(mask)
        scores, ids = ivf.search(
            base.index, query, self.shortlist(k), count / base.size, None if selector is None else selector[0]
        )
        if threshold is not None:
            ids = ids[scores >= threshold - SQ8_MARGIN]
        return ids

    def _base_plan(self, view: View, allowed: np.ndarray | None) -> tuple[np.ndarray, int, tuple | None]:
        """The base ids a search may return (a mask by id), their count and their selector (None:
        no selector needed, or the exact plan, which reads the mask)."""
        assert view.in_base is not None
        if allowed is None:
            return view.in_base, view.live_in_base, view.base_bitmap
        return self._base_mask(view, allowed)

    def _base_mask(self, view: View, allowed: np.ndarray) -> tuple[np.ndarray, int, tuple | None]:
        """allowed ∩ in_base, its count and selector; kept for the last few filters (they repeat)."""
        key = id(allowed)
        with self._lock:
            found = self._masks.get(key)
            if found is not None and found[0] is allowed:
                self._masks.move_to_end(key)
                return found[1:]
        in_base, base = view.in_base, view.base
        assert in_base is not None and base is not None  # only a view with a base is searched in it
        n = min(len(allowed), len(in_base))
        mask = allowed[:n] & in_base[:n]
        count = int(np.count_nonzero(mask))
        wanted = count > EXACT_BELOW * base.size or not self.rescore  # the scan needs it
        found = (allowed, mask, count, id_selector(mask) if wanted else None)
        with self._lock:
            self._masks[key] = found
            while len(self._masks) > 16:
                self._masks.popitem(last=False)
        return found[1:]

    @staticmethod
    def shortlist(k: int) -> int:
        """How many SQ8 results are scored again: 2k for a page's worth, k + 200 for a long list
        (a sort's 1,000 candidates), since exact scoring costs about 1 ms per 1,000 rows."""
        return max(64, k + min(k, 200))

    def _score(self, ids: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best k of these ids by their full vectors (rows read in disk order)."""
        if len(ids) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        ids = np.sort(ids)
        rows = self._rows
        if len(rows) <= ids[-1]:
            self._map_rows(int(ids[-1]) + 1)
            rows = self._rows
        exact = np.empty(len(ids), np.float32)
        if ids[-1] - ids[0] + 1 == len(ids):  # one run of rows (the delta, usually): no gather
            for start in range(0, len(ids), SCORE_ROWS):
                lo = int(ids[start])
                stop = min(len(ids), start + SCORE_ROWS)
                exact[start:stop] = rows[lo : lo + stop - start] @ query
        else:
            for start in range(0, len(ids), SCORE_ROWS):
                part = ids[start : start + SCORE_ROWS]
                exact[start : start + len(part)] = rows[part] @ query
        best = np.argpartition(-exact, k - 1)[:k] if len(exact) > k else np.arange(len(exact))
        best = best[np.argsort(-exact[best], kind="stable")]
        return exact[best], ids[best]

    # compaction ---------------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether compaction would pay: a large delta, a base with many dead entries, or a
        catalog large enough for its first base."""
        view = self.view()
        if view.base is None:
            return view.count >= TRAIN_MIN
        if view.count < TRAIN_MIN:
            return True  # shrunk: drop the base
        return len(view.delta) > COMPACT_DELTA or view.masked > COMPACT_MASKED * view.base.size

    @contextlib.contextmanager
    def _compaction_lock(self, wait: bool) -> Iterator[bool]:
        """The lock file held (True), or, without `wait`, False when another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self._path(self.LOCK), "w") as fh:  # closing releases the lock
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True

    def _base_meta(self) -> dict | None:
        """What base.json names (file, generation, lists), or None when there is no base."""
        try:
            meta = json.loads(self._path(self.BASE).read_text())
        except FileNotFoundError:
            return None
        return meta if meta.get("file") else None

    def _drop_base_files(self) -> None:
        """No base any more (a rebuild, or a catalog shrunk below TRAIN_MIN); hold the lock."""
        _write_json(self._path(self.BASE), {"file": None})
        self._remove_old_bases(keep=None)

    def compact(self, retrain: bool = False) -> dict[str, object] | None:
        """Fold the saved delta into a new base and drop dead entries (one process at a time:
        another one compacting means this returns None). Searches go on meanwhile, on the old
        base; the new one is taken up by `refresh`."""
        with self._compaction_lock(wait=False) as held, every_core():
            if not held:
                return None
            written, generation = self._read_state()
            present = np.flatnonzero(written > 0)
            base = self._base_meta()
            if len(present) < TRAIN_MIN:
                if base is not None:
                    self._drop_base_files()
                self.refresh()
                return {"base": 0, "delta": len(present), "retrained": False}
            nlist = ivf.lists_for(len(present))
            retrain = retrain or base is None or nlist >= 2 * base["nlist"]
            rows = np.memmap(self._path(self.ROWS), np.float32, "r").reshape(-1, self.dim)
            if retrain:
                rng = np.random.default_rng(generation)
                sample = np.sort(rng.choice(present, min(len(present), nlist * ivf.SAMPLE_PER_LIST), replace=False))
                index = ivf.train(self.dim, rows[sample], nlist)
                fresh = present
            else:
                assert base is not None  # without one, retrain is set
                # into memory, to change; faiss reads it back downcast (an IVF), its stubs say Index
                index = cast(faiss.IndexIVF, faiss.read_index(str(self._path(base["file"]))))
                valid = (written > 0) & (written <= base["generation"])
                dead, _bitmap = id_selector(~valid)
                index.remove_ids(dead)
                fresh = np.flatnonzero(written > base["generation"])
            nearest = ivf.centroids(index)
            for start in range(0, len(fresh), 50_000):
                part = fresh[start : start + 50_000]
                ivf.add(index, nearest, rows[part], part)
            name = f"base-{generation:06d}.ivf"
            faiss.write_index(index, str(self._path(name + ".tmp")))
            _fsync_replace(self._path(name + ".tmp"), self._path(name))
            _write_json(
                self._path(self.BASE),
                {"file": name, "generation": generation, "nlist": int(index.nlist), "count": int(index.ntotal)},
            )
            self._remove_old_bases(keep=name)
            report = {"base": int(index.ntotal), "added": len(fresh), "retrained": retrain, "lists": int(index.nlist)}
        self.refresh()
        return report

    def _remove_old_bases(self, keep: str | None) -> None:
        """Older base files go: a process still searching one keeps it mapped until it refreshes."""
        for path in self.directory.glob("base-*.ivf*"):
            if path.name != keep:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
