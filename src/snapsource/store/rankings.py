"""Kept rankings: a query's offers in similarity order, for later pages, sorts and filters.

Finding and re-ranking the candidates is most of a search's cost; a buyer then pages, sorts
and filters the same photo. The ranking is kept per query key (photo and box), filters, score
threshold and the state of the index and catalog, so any change to either makes a new one. Kept
as arrays (about 30 bytes an offer), not as objects (about 200): more rankings fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import numpy as np

from snapsource.store.lru import LRU

KEPT = 2048  # rankings kept in memory (up to 1,000 offers, about 30 KB, each)


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Offers best first: ranking score (similarity raised by geometric re-ranking), cosine
    similarity of the best image, whether it is the same product, and that image's id."""

    item_ids: np.ndarray  # int64
    scores: np.ndarray  # float64
    similarity: np.ndarray  # float32, 0-1
    same: np.ndarray  # bool
    image_ids: np.ndarray  # int64

    def take(self, keep: np.ndarray) -> Ranking:
        """The offers at these positions (a boolean mask or indices), in that order."""
        return Ranking(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))


class Rankings:
    def __init__(self, capacity: int = KEPT) -> None:
        self._lru: LRU[Hashable, Ranking] = LRU(capacity)

    @property
    def hits(self) -> int:
        return self._lru.hits

    def get(self, key: Hashable) -> Ranking | None:
        return self._lru.get(key)

    def put(self, key: Hashable, ranking: Ranking) -> None:
        self._lru.put(key, ranking)
