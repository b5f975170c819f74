"""What filters read, for every offer at once: numpy columns instead of per-row SQL.

A filter has to act inside the vector search, not after it: with a million offers, the top
thousand by similarity may hold none of the 1% that a price range keeps. So a search first turns
its filters into the set of images shown by at least one matching offer (a boolean array indexed
by image id, the vector ids) and the index searches only those. Building that set is a few
vectorised comparisons; the sets of recent filter combinations are kept.

The columns are read from the catalog database once and again whenever the offers change: triggers count every
change to `offers` and `offer_images` in `catalog_version` (catalog.py), which costs one SELECT
per search to check.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from snapsource.store.catalog import Catalog

log = logging.getLogger("snapsource.columns")

FLAG_COLUMNS = ("support_dropshipping", "is_factory", "verified_supplier", "free_shipping")
BACKGROUND_FROM = 100_000  # offers: a catalog this large reloads its columns in the background
MASKS_KEPT = 64
UNKNOWN_DAY = np.iinfo(np.int32).min
# what filters and sorts read of an offer, in this order (columns here, Milvus entities in milvus.py)
FACTS = (
    "item_id, CAST(price AS DOUBLE PRECISION), sales, "
    + ", ".join(FLAG_COLUMNS)
    + ", coalesce(new_arrival, -1), main_image_id, created_at, category_path"
)


def days(created: list[str | None]) -> np.ndarray:
    """`created_at` dates as int32 days since 1970, UNKNOWN_DAY where there is none."""
    found = np.array([c[:10] if c else "NaT" for c in created], "datetime64[D]").astype(np.int64)
    return np.where(found == np.iinfo(np.int64).min, UNKNOWN_DAY, found).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Where:
    """A condition on the offers' facts, in the store's terms: what the request's filters
    (search/filters.py) become, and what a vector store that filters by itself (Milvus) reads."""

    price_min: float | None = None
    price_max: float | None = None
    flags: tuple[str, ...] = ()  # of FLAG_COLUMNS: each must be true
    new_since: int | None = None  # new arrivals only: marked new, or (unmarked) created on or after this day
    keyword: str | None = None  # every word in the title (Catalog.titled)
    category: str | None = None  # in this category or below it (any level of category_path)

    def __post_init__(self) -> None:
        unknown = set(self.flags) - set(FLAG_COLUMNS)
        if unknown:
            raise ValueError(f"no such flag column: {sorted(unknown)}")

    def __bool__(self) -> bool:
        return self != Where()


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a condition keeps: images (booleans by image id), offers (their sorted item_ids) and
    the same offers as booleans by row of the columns they were selected from."""

    images: np.ndarray
    offers: np.ndarray
    rows: np.ndarray
    columns: Columns
    where: Where

    @property
    def pairs(self) -> int:
        """How many (offer, image) pairs are kept: the entities of a store that filters itself."""
        return int(self.rows[self.columns.pair_offer].sum())

    @property
    def share(self) -> float:
        """The share of (offer, image) pairs kept."""
        pairs = len(self.columns.pair_offer)
        return self.pairs / pairs if pairs else 0.0


@dataclasses.dataclass(frozen=True)
class Columns:
    """Offers in item_id order; `pairs_*` say which offer (row) shows which image (id)."""

    item_id: np.ndarray  # int64, sorted
    price: np.ndarray  # float64
    sales: np.ndarray  # int64
    flags: dict[str, np.ndarray]  # bool: the flag is true (unknown counts as not true)
    new_arrival: np.ndarray  # int8: 1 yes, 0 no, -1 unknown (then created_at decides)
    created_day: np.ndarray  # int32 days since 1970, UNKNOWN_DAY when absent
    pair_offer: np.ndarray  # int64 offer row
    pair_image: np.ndarray  # int64 image id
    images: int  # image ids are < this
    main_image: np.ndarray  # int64 image id of each offer's main photo
    categories: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)  # id -> rows in it or below
    # derived: where each image's run of pairs starts, and those pairs' offers (offers_showing)
    _by_image: tuple[np.ndarray, np.ndarray] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # pairs by image, and where each image's run starts: which offers show an image, by lookup
        order = np.argsort(self.pair_image, kind="stable")
        starts = np.searchsorted(self.pair_image[order], np.arange(self.images + 1))
        object.__setattr__(self, "_by_image", (starts, self.pair_offer[order]))

    @classmethod
    def empty(cls) -> Columns:
        z = np.zeros(0, np.int64)
        return cls(
            z,
            np.zeros(0),
            z,
            {f: np.zeros(0, bool) for f in FLAG_COLUMNS},
            np.zeros(0, np.int8),
            np.zeros(0, np.int32),
            z,
            z,
            0,
            z,
        )

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """The row of each item_id, -1 for offers not (or no longer) in the catalog."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if not len(self.item_id):
            return np.full(len(item_ids), -1, np.int64)
        at = np.minimum(np.searchsorted(self.item_id, item_ids), len(self.item_id) - 1)
        return np.where(self.item_id[at] == item_ids, at, -1)

    def offers_showing(self, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (index into image_ids, offer row) pair where that offer shows that image."""
        starts, offers = self._by_image
        image_ids = np.asarray(image_ids, dtype=np.int64)
        image_ids = np.clip(image_ids, 0, self.images)  # an id past the last shown image: no offer
        lo = starts[image_ids]
        counts = starts[np.minimum(image_ids + 1, self.images)] - lo
        which = np.repeat(np.arange(len(image_ids)), counts)
        starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
        return which, offers[starts + np.arange(len(which))]

    def offers_matching(self, where: Where, titled: np.ndarray | None = None) -> np.ndarray:
        """Booleans by row: the offers that meet the condition (`titled`: the item_ids whose title
        holds the keyword, which the catalog's text index answers)."""
        keep = np.ones(len(self.item_id), bool)
        if where.category is not None:
            in_category = np.zeros(len(self.item_id), bool)
            in_category[self.categories.get(where.category, np.zeros(0, np.int64))] = True
            keep &= in_category
        if where.keyword is not None:
            keep &= np.isin(self.item_id, np.asarray(titled if titled is not None else [], np.int64))
        if where.price_min is not None:
            keep &= self.price >= where.price_min
        if where.price_max is not None:
            keep &= self.price <= where.price_max
        for name in where.flags:
            keep &= self.flags[name]
        if where.new_since is not None:
            recent = (self.created_day != UNKNOWN_DAY) & (self.created_day >= where.new_since)
            keep &= np.where(self.new_arrival >= 0, self.new_arrival == 1, recent)
        return keep

    def select(self, where: Where, titled: np.ndarray | None = None) -> Selection:
        """The offers that meet the condition, and the images at least one of them shows."""
        offers = self.offers_matching(where, titled)
        images = np.zeros(self.images, bool)
        images[self.pair_image[offers[self.pair_offer]]] = True
        return Selection(images, self.item_id[offers], offers, self, where)


def _categories(paths: list[str | None]) -> dict[str, np.ndarray]:
    """Category id -> the rows of the offers in it or below it (any level of their path)."""
    rows: dict[str, list[int]] = {}
    for row, path in enumerate(paths):
        for category in set(path.split("/")) if path else ():
            rows.setdefault(category, []).append(row)
    return {category: np.array(found, np.int64) for category, found in rows.items()}


def _flag(column: np.ndarray) -> np.ndarray:
    return column == 1


class OfferColumns:
    """The catalog's columns, reloaded when its offers change; image masks for recent filters.

    Reading a million offers takes seconds, and an import changes the catalog with every chunk.
    So a large catalog's columns are reloaded in the background, at most one load at a time and
    leaving twice its duration between loads, while searches go on with the previous columns (an
    offer imported a moment ago is found a few seconds later; one deleted is dropped when its
    document is read). A small catalog's are reloaded at once, before the search."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        self._version: int | None = None
        self._columns = Columns.empty()
        self._masks: OrderedDict[tuple, Selection] = OrderedDict()
        self._next_load = 0.0  # monotonic time before which no background load starts

    def current(self) -> Columns:
        version = self.catalog.version()
        if version == self._version:
            return self._columns
        if self._version is not None and len(self._columns.item_id) >= BACKGROUND_FROM:
            if time.monotonic() >= self._next_load and self._loading.acquire(blocking=False):
                threading.Thread(target=self._load_in_background, name="snapsource-columns", daemon=True).start()
            return self._columns
        with self._loading:
            if self.catalog.version() != self._version:
                self._install()
        return self._columns

    def _install(self) -> None:
        started = time.monotonic()
        version, columns = self._load()
        with self._lock:
            self._columns, self._version = columns, version
            self._masks.clear()
        self._next_load = time.monotonic() + 2 * (time.monotonic() - started)

    def _load_in_background(self) -> None:
        try:
            self._install()
        except Exception:  # the previous columns keep serving; the next search tries again
            log.exception("reloading the filter columns failed")
        finally:
            self._loading.release()

    def select(self, where: Where | None, columns: Columns | None = None) -> Selection | None:
        """What a filtered search may return (from these columns, else the current ones); None
        without a condition."""
        if not where:
            return None
        columns = columns or self.current()
        key = (where, id(columns))
        with self._lock:
            found = self._masks.get(key)
            if found is not None and found.columns is columns:
                self._masks.move_to_end(key)
                return found
        titled = np.asarray(self.catalog.titled(where.keyword), np.int64) if where.keyword is not None else None
        found = columns.select(where, titled)
        with self._lock:
            self._masks[key] = found
            while len(self._masks) > MASKS_KEPT:
                self._masks.popitem(last=False)
        return found

    def _load(self) -> tuple[int, Columns]:
        """The columns and the catalog version they are, read in one snapshot: offers and their
        images read apart would, during an import, pair images with offers the first read did not
        see (rows past the end, or a neighbour's row)."""
        with self.catalog.snapshot() as db:
            version = int(db.execute("SELECT n FROM catalog_version").fetchone()[0])
            rows = db.execute(f"SELECT {FACTS} FROM offers ORDER BY item_id").fetchall()
            pairs = np.array(db.execute("SELECT item_id, image_id FROM offer_images").fetchall() or np.zeros((0, 2)), np.int64)
        if not rows:
            return version, Columns.empty()
        table = np.array([r[:9] for r in rows], dtype=np.float64)
        table[np.isnan(table)] = 0  # NULL flags read as not true
        item_id = np.array([r[0] for r in rows], np.int64)  # exact: float64 rounds ids over 2**53
        pair_offer = np.searchsorted(item_id, pairs[:, 0])
        images = int(pairs[:, 1].max()) + 1 if len(pairs) else 0
        return version, Columns(
            item_id=item_id,
            price=table[:, 1],
            sales=table[:, 2].astype(np.int64),
            flags={name: _flag(table[:, 3 + i]) for i, name in enumerate(FLAG_COLUMNS)},
            new_arrival=table[:, 7].astype(np.int8),
            created_day=days([r[9] for r in rows]),
            pair_offer=pair_offer,
            pair_image=pairs[:, 1],
            images=images,
            main_image=np.array([r[8] for r in rows], np.int64),
            categories=_categories([r[10] for r in rows]),
        )
