"""Kept rankings: a query's offers in similarity order, for later pages, sorts and filters.

Finding and re-ranking the candidates is most of a search's cost; a buyer then pages, sorts
and filters the same photo. The ranking is kept per query key (photo and box), filters and the
state of the index and catalog, so any change to either makes a new one. Kept as two arrays
(16 bytes an offer), not as objects (about 200): more rankings fit.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from snapsource.store.lru import LRU

KEPT = 2048  # rankings kept in memory (up to 1,000 offers, 16 KB, each)


class Rankings:
    def __init__(self, capacity: int = KEPT) -> None:
        self._lru: LRU[Hashable, tuple[np.ndarray, np.ndarray]] = LRU(capacity)

    @property
    def hits(self) -> int:
        return self._lru.hits

    def get(self, key: Hashable) -> tuple[np.ndarray, np.ndarray] | None:
        """(item_ids, scores), best first, or None when this ranking is not kept."""
        return self._lru.get(key)

    def put(self, key: Hashable, item_ids: np.ndarray, scores: np.ndarray) -> None:
        self._lru.put(key, (np.asarray(item_ids, np.int64), np.asarray(scores, np.float64)))
