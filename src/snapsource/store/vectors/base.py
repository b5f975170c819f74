"""The seam between search and any vector store: one protocol, one result shape.

A store holds one vector per catalog image (its id is the image's row id) and answers a search
with (offer, image, score) matches, so the ranking above it never asks which store it talks
to. faiss in the data dir searches images and maps them to offers with the filter columns;
Milvus keeps one entity per offer and image and filters inside its own search. Either way a
search with a selection returns the offers that pass it, each at the images they show.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from snapsource.store.columns import Columns, Selection

log = logging.getLogger("snapsource.vectors")


class IndexMismatch(RuntimeError):
    """The vectors were made by another model or preprocessing: they are not comparable."""


def rebuild_hint(found: str, wanted: str) -> str:
    """What to do about an index of another model: the precision setting, when only the
    precision differs (int8 and float32 of one model); else re-ingest."""
    found_model, wanted_model = found.split(";")[0], wanted.split(";")[0]
    if found_model != wanted_model and found_model.replace("-int8@", "@") == wanted_model.replace("-int8@", "@"):
        precision = "int8" if "-int8@" in found_model else "float32"
        return (
            f"set precision={precision} (SNAPSOURCE_PRECISION) to search it as it was built, or re-ingest the "
            "catalog with `snapsource ingest CATALOG --rebuild` for this precision"
        )
    return "re-ingest the catalog with `snapsource ingest CATALOG --rebuild`"


@dataclasses.dataclass(frozen=True)
class Matches:
    """The best (offer, image) pairs for one query vector, best first."""

    item_ids: np.ndarray  # int64
    image_ids: np.ndarray  # int64
    scores: np.ndarray  # float32 cosine similarity
    more: bool  # a larger k could find more pairs over the threshold

    @classmethod
    def none(cls) -> Matches:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), False)


class VectorStore(Protocol):
    """What search, ingest and upkeep need of a vector store (faiss_store.FaissStore, milvus.MilvusStore)."""

    @property
    def generation(self) -> int:
        """Changes whenever what a search would find changes other than through the catalog."""
        ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray:
        """The image ids that have a vector."""
        ...

    def embedded(self, ids: list[int]) -> set[int]:
        """Those of these image ids that have a vector (the catalog API shows it per photo)."""
        ...

    def stats(self) -> dict[str, int]: ...

    def describe(self) -> str:
        """One line for people: what the store holds and where."""
        ...

    def searchable(self, columns: Columns, selection: Selection | None) -> int:
        """How many entries a search over this selection can reach: the largest useful k."""
        ...

    def search_offers(
        self, query: np.ndarray, k: int, columns: Columns, selection: Selection | None, threshold: float
    ) -> Matches:
        """The best matches among the top `k` entries for one unit query vector, keeping only
        offers in the selection (all offers without one) and scores over `threshold`."""
        ...

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Full-precision vectors of these image ids; RuntimeError if one has none."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def offers_changed(self, item_ids: Iterable[int]) -> None:
        """These offers' facts or images changed (a store that filters by itself rewrites them)."""
        ...

    def reset(self) -> None: ...

    def save(self) -> None: ...

    def refresh(self) -> bool:
        """Take up what other processes saved; True if anything changed."""
        ...

    def due(self) -> bool: ...

    def compact(self, retrain: bool = False) -> dict[str, object] | None: ...

    def close(self) -> None: ...


class Compactor:
    """Compaction in the background of a server: every `interval` seconds, take up what imports
    saved and compact when due. Each worker process runs one; the store's lock lets one work at a time."""

    def __init__(self, store: VectorStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapsource-compactor", daemon=True)

    def start(self) -> Compactor:
        if self.interval > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.refresh()
                if self.store.due():
                    report = self.store.compact()
                    if report is not None:
                        log.info("index compacted: %s", report)
            except Exception:  # a failed compaction leaves the old base serving; try again later
                log.exception("index compaction failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
