"""Vectors in Milvus (`vectors = milvus://host:19530/collection`), for catalogs past one machine.

Milvus filters inside its own search, so its collection holds one entity per offer and image
(an image shown by two offers at two prices is two entities) with every filter as a scalar
field (and `sales`): the price range and the five flags become a Milvus expression, and the
search returns offers, not images. The image vectors themselves live in the catalog database
(`image_vectors`, PostgreSQL): each image is embedded once however many offers show it, and the
collection can be filled again from there without embedding anything (`snapsource compact
--retrain`).

Index: IVF_SQ8 on sealed segments, as the faiss store's base (1 byte a dimension), or HNSW with
`?index=HNSW` in the URL; docs/scale-out.md compares the two. Milvus's filtered searches lose recall when a filter keeps few entities, so
the planner probes more lists as the filter tightens (nprobe / sqrt(share), as ivf.probes) and
every list below PROBE_ALL. Growing segments must be searched exactly: the server runs with
`queryNode.segcore.interimIndex.enableIndex=false` (scripts/scaleout-env).

Consistency: searches read at Milvus's "Bounded" level, so an offer written through one server
is found through any other within Milvus's graceful time (`common.gracefulTime`, 5 s by default;
1 s in scripts/scaleout-env and docs/scale-out.md); "Strong" costs about 300 ms a search.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import urllib.parse
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from snapsource.store.catalog import chunks
from snapsource.store.columns import FACTS, FLAG_COLUMNS, Columns, Selection, days
from snapsource.store.vectors.base import IndexMismatch, Matches, rebuild_hint

if TYPE_CHECKING:
    from snapsource.store.catalog import Catalog

log = logging.getLogger("snapsource.milvus")

POSITIONS = 64  # an entity's key is item_id * POSITIONS + the image's position in the offer
NLIST = 1024  # IVF lists per sealed segment (about 100,000 entities at 1280 dimensions)
NPROBE = 32  # lists probed without a filter
PROBE_ALL = 0.02  # a filter keeping under 2% of the entities: probe every list
MAX_LIMIT = 16_384  # Milvus's largest top-k
MAX_IN = 10_000  # offers named in one `item_id in [...]` term (keyword, category); more: filtered after the search
BATCH = 2_000  # entities per insert (about 10 MB at 1280 dimensions)
COUNT_SECONDS = 5.0  # how long `len()` may be stale
CONNECT_SECONDS = 10.0


INDEXES = ("IVF_SQ8", "HNSW")  # `?index=HNSW` in the URL: what the bench compared (docs/scale-out.md)
HNSW_M, HNSW_BUILD_EF = 16, 200
HNSW_EF = 128  # graph candidates without a filter; more as the filter tightens


@dataclasses.dataclass(frozen=True)
class Address:
    uri: str
    collection: str
    index: str = "IVF_SQ8"

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urllib.parse.urlsplit(url)
        collection = parts.path.strip("/") or "snapsource"
        index = dict(urllib.parse.parse_qsl(parts.query)).get("index", "IVF_SQ8").upper()
        if parts.scheme != "milvus" or not parts.hostname or not collection.replace("_", "").isalnum():
            raise ValueError(f"vectors {url!r}: expected milvus://host:19530/collection (letters, digits, _)")
        if index not in INDEXES:
            raise ValueError(f"vectors {url!r}: index must be one of {', '.join(INDEXES)}")
        return cls(f"http://{parts.hostname}:{parts.port or 19530}", collection, index)

    def index_params(self) -> dict[str, int]:
        return {"nlist": NLIST} if self.index == "IVF_SQ8" else {"M": HNSW_M, "efConstruction": HNSW_BUILD_EF}

    def search_params(self, k: int, share: float) -> dict[str, int]:
        if self.index == "IVF_SQ8":
            return {"nprobe": nprobe(share)}
        return {"ef": min(MAX_LIMIT, max(k, math.ceil(HNSW_EF / max(share, 1e-9))))}


def _client(uri: str):  # noqa: ANN202 - pymilvus.MilvusClient, imported only when Milvus is used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymilvus 2.3 imports pkg_resources
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

    try:
        return MilvusClient(uri=uri, timeout=CONNECT_SECONDS)
    except MilvusException as exc:
        raise ConnectionError(f"cannot reach Milvus at {uri}: {exc.message}; check it runs and the vectors URL") from None


def expression(selection: Selection | None) -> str:
    """The Milvus filter that keeps what the columns' selection keeps (Columns.offers_matching)."""
    if selection is None:
        return ""
    where = selection.where
    terms = []
    if where.price_min is not None:
        terms.append(f"price >= {where.price_min!r}")
    if where.price_max is not None:
        terms.append(f"price <= {where.price_max!r}")
    terms += [f"{name} == true" for name in where.flags]
    if where.new_since is not None:
        terms.append(f"(new_arrival == 1 or (new_arrival == -1 and created_day >= {where.new_since}))")
    if (where.keyword is not None or where.category is not None) and len(selection.offers) <= MAX_IN:
        terms.append(f"item_id in {_in(selection.offers)}")  # more: filtered after the search (search_offers)
    return " and ".join(terms)


def nprobe(share: float) -> int:
    if share < PROBE_ALL:
        return NLIST
    return min(NLIST, math.ceil(NPROBE / math.sqrt(max(share, 1e-9))))


def _in(values: Iterable[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


class MilvusStore:
    """The vector store (base.VectorStore) for a Milvus collection."""

    def __init__(self, url: str, catalog: Catalog, model: str, dim: int) -> None:
        if catalog.dialect != "postgresql":
            raise ValueError("vectors in Milvus need the catalog in PostgreSQL (catalog = postgresql://...)")
        self.address = Address.parse(url)
        self.catalog = catalog
        self.model = model
        self.dim = dim
        self.client = _client(self.address.uri)
        self._count: tuple[float, int] = (0.0, -1)
        self._open()

    # the collection -------------------------------------------------------------------------
    def _open(self) -> None:
        name = self.address.collection
        if self.client.has_collection(name):
            described = self.client.describe_collection(name)
            found = described.get("description", "")
            if found != self.model:
                raise IndexMismatch(
                    f"Milvus collection {name} holds vectors of {found!r}, not {self.model!r}: "
                    + rebuild_hint(found, self.model)
                    + " (or name another collection)"
                )
        else:
            self._create()
        self.client.load_collection(name)

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, description=self.model)
        schema.add_field("pair", DataType.INT64, is_primary=True)
        schema.add_field("item_id", DataType.INT64)
        schema.add_field("image_id", DataType.INT64)
        schema.add_field("price", DataType.DOUBLE)
        schema.add_field("sales", DataType.INT64)
        for name in FLAG_COLUMNS:
            schema.add_field(name, DataType.BOOL)
        schema.add_field("new_arrival", DataType.INT8)
        schema.add_field("created_day", DataType.INT32)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        name = self.address.collection
        self.client.create_collection(name, schema=schema, consistency_level="Bounded")
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type=self.address.index, metric_type="IP", params=self.address.index_params())
        self.client.create_index(name, params)

    def refresh(self) -> bool:
        return False  # Milvus serves every writer's changes itself

    @property
    def generation(self) -> int:
        return 0  # every change to an offer's entities follows a change to the offer (catalog version)

    def __len__(self) -> int:
        at, count = self._count
        if count < 0 or time.monotonic() - at > COUNT_SECONDS:
            count = int(self.catalog.db.execute("SELECT count(*) FROM image_vectors").fetchone()[0])
            self._count = (time.monotonic(), count)
        return count

    def ids(self) -> np.ndarray:
        rows = self.catalog.db.execute("SELECT image_id FROM image_vectors").fetchall()
        return np.array([r[0] for r in rows], np.int64)

    def embedded(self, ids: list[int]) -> set[int]:
        found: set[int] = set()
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0] for r in self.catalog.db.execute(f"SELECT image_id FROM image_vectors WHERE image_id IN ({marks})", chunk)
            )
        return found

    def entities(self) -> int:
        return int(self.client.query(self.address.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def stats(self) -> dict[str, int]:
        return {"vectors": len(self), "entities": self.entities()}

    def describe(self) -> str:
        stats = self.stats()
        return (
            f"Milvus collection {self.address.collection} at {self.address.uri}: {stats['entities']} offer images "
            f"({self.address.index}), {stats['vectors']} image vectors in the catalog database"
        )

    # writing ----------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store image vectors, and refresh the entities of offers that already show them."""
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.catalog.write() as db:
            db.executemany(
                "INSERT INTO image_vectors (image_id, vector) VALUES (?, ?) "
                "ON CONFLICT (image_id) DO UPDATE SET vector = excluded.vector",
                [(int(i), v.tobytes()) for i, v in zip(ids, vectors)],
            )
        self._count = (0.0, -1)
        showing = []
        for chunk in chunks(ids.tolist()):
            showing += self.catalog.db.execute(
                f"SELECT DISTINCT item_id FROM offer_images WHERE image_id IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
        self.offers_changed([r[0] for r in showing])

    def remove(self, ids: np.ndarray) -> None:
        image_ids = [int(i) for i in np.asarray(ids, np.int64)]
        if not image_ids:
            return
        for chunk in chunks(image_ids):
            self.client.delete(self.address.collection, filter=f"image_id in {_in(chunk)}")
            with self.catalog.write() as db:
                db.execute(f"DELETE FROM image_vectors WHERE image_id IN ({','.join('?' * len(chunk))})", chunk)
        self._count = (0.0, -1)

    def offers_changed(self, item_ids: Iterable[int]) -> None:
        """Write the entities of these offers as the catalog now has them (none for a deleted one):
        upserted by key, then the keys they no longer have deleted."""
        item_ids = sorted({int(i) for i in item_ids})
        for chunk in chunks(item_ids):
            entities = self._entities(chunk)
            for start in range(0, len(entities), BATCH):
                self.client.upsert(self.address.collection, entities[start : start + BATCH])
            kept = [e["pair"] for e in entities]
            stale = f"item_id in {_in(chunk)}" + (f" and pair not in {_in(kept)}" if kept else "")
            self.client.delete(self.address.collection, filter=stale)

    def _entities(self, item_ids: list[int]) -> list[dict]:
        marks = ",".join("?" * len(item_ids))
        db = self.catalog.db
        facts = {r[0]: r for r in db.execute(f"SELECT {FACTS} FROM offers WHERE item_id IN ({marks})", item_ids)}
        created = dict(zip(facts, days([f[9] for f in facts.values()]).tolist()))
        pairs = db.execute(
            f"SELECT p.item_id, p.position, p.image_id, v.vector FROM offer_images p "
            f"JOIN image_vectors v ON v.image_id = p.image_id WHERE p.item_id IN ({marks}) AND p.position < ?",
            [*item_ids, POSITIONS],
        ).fetchall()
        out = []
        for item_id, position, image_id, blob in pairs:
            f = facts.get(item_id)
            if f is None:
                continue
            out.append(
                {
                    "pair": item_id * POSITIONS + position,
                    "item_id": item_id,
                    "image_id": image_id,
                    "price": float(f[1]),
                    "sales": int(f[2]),
                    **{name: f[3 + i] == 1 for i, name in enumerate(FLAG_COLUMNS)},
                    "new_arrival": int(f[7]),
                    "created_day": created[item_id],
                    "vector": np.frombuffer(blob, np.float32).tolist(),
                }
            )
        return out

    def save(self) -> None:
        """Nothing to do: PostgreSQL and Milvus keep what they were given."""

    def _recreate(self) -> None:
        """An empty collection in place of this one, indexed and loaded."""
        self.client.drop_collection(self.address.collection)
        self._create()
        self.client.load_collection(self.address.collection)

    def reset(self) -> None:
        """Forget every vector: the collection is made anew and image_vectors emptied."""
        with self.catalog.write() as db:
            db.execute("DELETE FROM image_vectors")
        self._count = (0.0, -1)
        self._recreate()

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        image_ids = [int(i) for i in np.asarray(ids, np.int64)]
        found: dict[int, bytes] = {}
        for chunk in chunks(image_ids):
            found.update(
                self.catalog.db.execute(
                    f"SELECT image_id, vector FROM image_vectors WHERE image_id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
            )
        missing = [i for i in image_ids if i not in found]
        if missing:
            raise RuntimeError(f"no vector for images {missing[:5]}")
        out = np.zeros((len(image_ids), self.dim), np.float32)
        for row, i in enumerate(image_ids):
            out[row] = np.frombuffer(found[i], np.float32)
        return out

    # searching --------------------------------------------------------------------------------
    def searchable(self, columns: Columns, selection: Selection | None) -> int:
        """(offer, image) pairs are the entities here: all of them, or those the selection keeps."""
        return len(columns.pair_offer) if selection is None else selection.pairs

    def search_offers(
        self, query: np.ndarray, k: int, columns: Columns, selection: Selection | None, threshold: float
    ) -> Matches:
        """The best `k` entities that pass the selection's condition, those over the threshold.
        Not a range search (`radius` at the threshold): Milvus 2.3's, filtered, found 29% of the
        top 100 under all filters (docs/scale-out.md)."""
        share = 1.0 if selection is None else selection.share
        limit = min(k, MAX_LIMIT)
        hits = self.client.search(
            self.address.collection,
            [np.asarray(query, np.float32).tolist()],
            filter=expression(selection),
            limit=limit,
            output_fields=["item_id", "image_id"],
            search_params={"metric_type": "IP", "params": self.address.search_params(limit, share)},
            consistency_level="Bounded",
        )[0]
        item_ids = np.fromiter((h["entity"]["item_id"] for h in hits), np.int64, len(hits))
        image_ids = np.fromiter((h["entity"]["image_id"] for h in hits), np.int64, len(hits))
        scores = np.fromiter((h["distance"] for h in hits), np.float32, len(hits))
        more = len(scores) == k and bool(scores[-1] >= threshold)
        keep = scores >= threshold
        if selection is not None:  # what the expression could not say (a keyword matching many offers)
            rows = columns.rows_of(item_ids)
            keep &= rows >= 0
            keep[keep] = selection.rows[rows[keep]]
        return Matches(item_ids[keep], image_ids[keep], scores[keep], more)

    # upkeep -----------------------------------------------------------------------------------
    def due(self) -> bool:
        return False  # Milvus compacts its segments itself

    def compact(self, retrain: bool = False) -> dict[str, object] | None:
        """With `retrain`, fill the collection again from the catalog database (after a change of
        index parameters, or to repair it); otherwise nothing is due."""
        if not retrain:
            return None
        started = time.perf_counter()
        self._recreate()
        offers = [r[0] for r in self.catalog.db.execute("SELECT item_id FROM offers").fetchall()]
        self.offers_changed(offers)
        return {"entities": self.entities(), "seconds": round(time.perf_counter() - started, 1)}

    def close(self) -> None:
        self.client.close()
