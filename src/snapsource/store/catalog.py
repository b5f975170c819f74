"""The catalog: offers and their images in SQLite (WAL) or PostgreSQL, image files on disk; the
tables (tokens' too) come from the numbered files in migrations/sqlite and migrations/postgresql.

Images are content-addressed (sha256): an image shared by several offers (a product relisted by
another shop) is stored and embedded once, and its vector id is the image's row id. With SQLite
each thread gets its own connection, so the server's worker threads read concurrently while one
ingest writes; with PostgreSQL (`catalog = postgresql://...`, postgres.py) any number of servers
and ingest workers share the catalog. The SQL here is written once for both.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from snapsource.offer import OfferRecord
from snapsource.store import titles
from snapsource.store.sqlite import Database, write_file
from snapsource.store.writer import Writer

if TYPE_CHECKING:
    from snapsource.store.postgres import PostgresDatabase

MIGRATIONS = Path(__file__).parent / "migrations" / "sqlite"  # PostgreSQL's: postgres.py
UNVERSIONED = 1  # the user_version every release before numbered migrations stamped
IMAGE_PATH = re.compile(r"^/img/(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{2,4})$")  # how a stored image is served

_CHUNK = 900  # stay under SQLite's bound-parameter limit


@dataclass(frozen=True)
class StoredImage:
    id: int
    sha256: str
    ext: str

    @property
    def name(self) -> str:
        return f"{self.sha256}.{self.ext}"


@dataclass(frozen=True)
class OfferFacts:
    """What filters and sorts read, without parsing the offer document."""

    item_id: int
    price: Decimal
    sales: int
    is_factory: bool | None
    support_dropshipping: bool | None
    free_shipping: bool | None
    verified_supplier: bool | None
    new_arrival: bool | None
    created_at: dt.date | None
    main_image_id: int = 0


T = TypeVar("T")


@dataclass(frozen=True)
class NewImage:
    """An image to store: its content address, format, upright size and bytes."""

    sha256: str
    ext: str
    width: int
    height: int
    data: bytes


@dataclass(frozen=True)
class StoredOffer:
    item_id: int
    doc: str  # the OfferRecord as imported (JSON)
    updated_at: str
    images: list[tuple[str, StoredImage]]  # (the reference it was imported with, the stored photo)


def chunks(values: list[T]) -> Iterator[list[T]]:
    """Ids (or hashes) in runs short enough for one `IN (...)` list."""
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def open_database(url: str, data_dir: Path) -> Database | PostgresDatabase:
    """The catalog database a URL names: empty for `catalog.db` in the data dir, `sqlite:///path`,
    or `postgresql://user@host:port/database`."""
    if url.startswith(("postgresql://", "postgres://")):
        from snapsource.store.postgres import PostgresDatabase  # psycopg is needed only for PostgreSQL

        return PostgresDatabase(url)
    if url.startswith("sqlite:///"):
        return open_sqlite(Path(url.removeprefix("sqlite:///")))
    if url:
        raise ValueError(f"catalog {url!r}: expected sqlite:///path/catalog.db or postgresql://host:port/database")
    return open_sqlite(Path(data_dir) / "catalog.db")


def open_sqlite(path: Path) -> Database:
    """A SQLite catalog, migrated to this release's schema (PostgreSQL migrates as it opens)."""
    database = Database(path)
    database.migrate(MIGRATIONS, unversioned=UNVERSIONED)
    return database


class Catalog:
    def __init__(self, data_dir: Path, url: str = "") -> None:
        self.data_dir = Path(data_dir)
        self.images_dir = self.data_dir / "images"
        self.database = open_database(url, self.data_dir)
        self.dialect = self.database.dialect

    @property
    def db(self):  # noqa: ANN201 - a sqlite3.Connection or a postgres.Reader: execute(sql, params)
        return self.database.db

    def write(self):  # noqa: ANN201 - a context manager giving one transaction
        return self.database.write()

    def snapshot(self):  # noqa: ANN201 - a context manager: reads that all see one state
        return self.database.snapshot()

    def lock(self, db, key: int) -> None:  # noqa: ANN001
        self.database.lock(db, key)

    def writer(self, timeout: float | None = None) -> Writer:
        """The writer lock (store/writer.py): one import at a time, taken in turns."""
        return Writer(self.data_dir, self.database, timeout)

    def close(self) -> None:
        self.database.close()

    # images -----------------------------------------------------------------------------------
    def image_file(self, sha256: str, ext: str) -> Path:
        return self.images_dir / sha256[:2] / f"{sha256}.{ext}"

    def image_by_sha(self, sha256: str) -> StoredImage | None:
        row = self.db.execute("SELECT id, sha256, ext FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        return StoredImage(*row) if row else None

    def add_image(self, sha256: str, ext: str, width: int, height: int, data: bytes) -> StoredImage:
        """Store the file (atomically) and its row; an image already known is returned as is."""
        return self.add_images([NewImage(sha256, ext, width, height, data)])[sha256]

    def add_images(self, new: list[NewImage]) -> dict[str, StoredImage]:
        """Store many images: the files first (those not written yet), then their rows in one
        transaction. Known images are returned as they are."""
        for image in new:
            write_file(self.image_file(image.sha256, image.ext), image.data)
        with self.write() as db:
            db.executemany(
                "INSERT INTO images (sha256, ext, width, height) VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                [(i.sha256, i.ext, i.width, i.height) for i in new],
            )
        return self.images_by_sha([i.sha256 for i in new])

    def images_by_sha(self, shas: list[str]) -> dict[str, StoredImage]:
        out: dict[str, StoredImage] = {}
        for part in chunks(shas):
            query = f"SELECT id, sha256, ext FROM images WHERE sha256 IN ({','.join('?' * len(part))})"
            out.update((row[1], StoredImage(*row)) for row in self.db.execute(query, part))
        return out

    def all_images(self) -> list[StoredImage]:
        return [StoredImage(*row) for row in self.db.execute("SELECT id, sha256, ext FROM images")]

    def shown_image_ids(self) -> set[int]:
        """Images at least one offer shows."""
        return {row[0] for row in self.db.execute("SELECT DISTINCT image_id FROM offer_images")}

    def image_ids(self) -> set[int]:
        return {row[0] for row in self.db.execute("SELECT id FROM images")}

    def unused_images(self) -> list[StoredImage]:
        rows = self.db.execute("SELECT id, sha256, ext FROM images WHERE id NOT IN (SELECT image_id FROM offer_images)")
        return [StoredImage(*row) for row in rows]

    def delete_images(self, images: list[StoredImage]) -> None:
        with self.write() as db:
            for chunk in chunks([i.id for i in images]):
                db.execute(f"DELETE FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        for image in images:
            self.image_file(image.sha256, image.ext).unlink(missing_ok=True)

    # offers -----------------------------------------------------------------------------------
    def upsert_offer(self, record: OfferRecord, images: list[tuple[str, StoredImage]]) -> None:
        """Insert or replace one offer and its (source, image) list; the first image is the main one."""
        self.upsert_offers([(record, images)])

    def upsert_offers(self, offers: list[tuple[OfferRecord, list[tuple[str, StoredImage]]]]) -> None:
        """upsert_offer for many, in one transaction (an import's chunk)."""
        if not offers:
            return
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")  # updated_since: finer than a batch
        with self.write() as db:
            for record, images in offers:
                self._upsert(db, record, images, now)

    @staticmethod
    def _upsert(db, record: OfferRecord, images: list[tuple[str, StoredImage]], now: str) -> None:  # noqa: ANN001
        shop = record.shop_info
        db.execute("DELETE FROM offer_images WHERE item_id = ?", (record.item_id,))
        db.execute(
            """INSERT INTO offers (item_id, doc, price, sales, is_factory, support_dropshipping,
                   free_shipping, verified_supplier, new_arrival, created_at, main_image_id, updated_at, category_path)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(item_id) DO UPDATE SET doc=excluded.doc, price=excluded.price,
                   sales=excluded.sales, is_factory=excluded.is_factory,
                   support_dropshipping=excluded.support_dropshipping,
                   free_shipping=excluded.free_shipping, verified_supplier=excluded.verified_supplier,
                   new_arrival=excluded.new_arrival, created_at=excluded.created_at,
                   main_image_id=excluded.main_image_id, updated_at=excluded.updated_at,
                   category_path=excluded.category_path""",
            (
                record.item_id,
                record.model_dump_json(),
                record.price,
                record.sale_info.sale_quantity_int,
                shop.is_factory,
                record.support_dropshipping,
                record.free_shipping,
                record.verified_supplier,
                record.new_arrival,
                record.created_at.isoformat() if record.created_at else None,
                images[0][1].id,
                now,
                "/".join(record.category_path) or None,
            ),
        )
        db.executemany(
            "INSERT INTO offer_images (item_id, position, image_id, source) VALUES (?, ?, ?, ?)",
            [(record.item_id, pos, image.id, source) for pos, (source, image) in enumerate(images)],
        )

    def offer_state(self, item_id: int) -> tuple[str, list[int]] | None:
        """The stored document and image ids of an offer, to skip rewriting unchanged ones."""
        row = self.db.execute("SELECT doc FROM offers WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            return None
        ids = self.db.execute("SELECT image_id FROM offer_images WHERE item_id = ? ORDER BY position", (item_id,)).fetchall()
        return row[0], [i[0] for i in ids]

    def example_image(self) -> StoredImage | None:
        """The main image of the first offer, for example requests."""
        row = self.db.execute(
            "SELECT i.id, i.sha256, i.ext FROM offers o JOIN images i ON i.id = o.main_image_id ORDER BY o.item_id LIMIT 1"
        ).fetchone()
        return StoredImage(*row) if row else None

    def stored_offer(self, item_id: int) -> StoredOffer | None:
        """An offer as the catalog API shows it: its document, when it last changed, its photos."""
        row = self.db.execute("SELECT doc, updated_at FROM offers WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            return None
        images = self.db.execute(
            """SELECT oi.source, i.id, i.sha256, i.ext FROM offer_images oi JOIN images i ON i.id = oi.image_id
               WHERE oi.item_id = ? ORDER BY oi.position""",
            (item_id,),
        ).fetchall()
        return StoredOffer(item_id, row[0], row[1], [(source, StoredImage(*rest)) for source, *rest in images])

    def changed_offers(self, since: str | None, offset: int, limit: int) -> tuple[int, list[tuple[int, str, str]]]:
        """(total, [(item_id, doc, updated_at)]): offers changed at or after `since` (all when None),
        oldest change first, so a client that keeps the last updated_at it saw misses nothing."""
        where, params = ("WHERE updated_at >= ?", [since]) if since else ("", [])
        total = int(self.db.execute(f"SELECT count(*) FROM offers {where}", params).fetchone()[0])
        rows = self.db.execute(
            f"SELECT item_id, doc, updated_at FROM offers {where} ORDER BY updated_at, item_id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return total, [(r[0], r[1], r[2]) for r in rows]

    def existing(self, item_ids: list[int]) -> set[int]:
        found: set[int] = set()
        for chunk in chunks(item_ids):
            found.update(
                r[0]
                for r in self.db.execute(f"SELECT item_id FROM offers WHERE item_id IN ({','.join('?' * len(chunk))})", chunk)
            )
        return found

    def offer_ids(self) -> set[int]:
        return {row[0] for row in self.db.execute("SELECT item_id FROM offers")}

    def version(self) -> int:
        """Changes whenever an offer or what it shows does (triggers of the migrations): columns.py reloads."""
        return int(self.db.execute("SELECT n FROM catalog_version").fetchone()[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM offers").fetchone()[0])

    def delete_offers(self, item_ids: Iterable[int]) -> int:
        ids = list(item_ids)
        with self.write() as db:
            for chunk in chunks(ids):
                db.execute(f"DELETE FROM offers WHERE item_id IN ({','.join('?' * len(chunk))})", chunk)
        return len(ids)

    def offers_for_images(self, image_ids: list[int]) -> list[tuple[int, int]]:
        """(image_id, item_id) for every offer showing one of these images."""
        pairs: list[tuple[int, int]] = []
        for chunk in chunks(image_ids):
            pairs += self.db.execute(
                f"SELECT image_id, item_id FROM offer_images WHERE image_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        return pairs

    def titled(self, keyword: str) -> list[int]:
        """The item_ids of offers whose title holds every word of `keyword` as a word (any case, any
        script: titles.py), sorted. LIKE narrows first (SQLite's trigram index offer_titles, or
        PostgreSQL's pg_trgm); the word check is the same Python for both databases."""
        if not keyword.split():
            return []
        patterns = [
            "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in titles.narrowing(keyword)
        ]
        if self.dialect == "postgresql":
            where = " AND ".join("(doc::json ->> 'title') ILIKE ? ESCAPE '\\'" for _ in patterns) or "TRUE"
            query = f"SELECT item_id, doc::json ->> 'title' FROM offers WHERE {where} ORDER BY item_id"
        else:
            where = " AND ".join("title LIKE ? ESCAPE '\\'" for _ in patterns) or "1"
            query = f"SELECT rowid, title FROM offer_titles WHERE {where} ORDER BY rowid"
        return [row[0] for row in self.db.execute(query, patterns) if titles.holds(row[1], keyword)]

    def facts(self, item_ids: list[int]) -> dict[int, OfferFacts]:
        out: dict[int, OfferFacts] = {}
        for chunk in chunks(item_ids):
            rows = self.db.execute(
                f"""SELECT item_id, price, sales, is_factory, support_dropshipping, free_shipping,
                           verified_supplier, new_arrival, created_at, main_image_id
                    FROM offers WHERE item_id IN ({",".join("?" * len(chunk))})""",
                chunk,
            )
            for r in rows:
                out[r[0]] = OfferFacts(
                    r[0],
                    Decimal(r[1]),
                    r[2],
                    _flag(r[3]),
                    _flag(r[4]),
                    _flag(r[5]),
                    _flag(r[6]),
                    _flag(r[7]),
                    dt.date.fromisoformat(r[8]) if r[8] else None,
                    r[9],
                )
        return out

    def documents(self, item_ids: list[int]) -> dict[int, tuple[str, StoredImage]]:
        """The stored offer JSON and its main image, by item_id."""
        out: dict[int, tuple[str, StoredImage]] = {}
        for chunk in chunks(item_ids):
            rows = self.db.execute(
                f"""SELECT o.item_id, o.doc, i.id, i.sha256, i.ext FROM offers o
                    JOIN images i ON i.id = o.main_image_id
                    WHERE o.item_id IN ({",".join("?" * len(chunk))})""",
                chunk,
            )
            for item_id, doc, image_id, sha, ext in rows:
                out[item_id] = (doc, StoredImage(image_id, sha, ext))
        return out

    # local features (geometric re-ranking) ------------------------------------------------------
    def local_features(self, image_ids: list[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for chunk in chunks(image_ids):
            rows = self.db.execute(
                f"SELECT image_id, data FROM local_features WHERE image_id IN ({','.join('?' * len(chunk))})", chunk
            )
            out.update(rows)
        return out

    def put_local_features(self, features: dict[int, bytes]) -> None:
        with self.write() as db:
            db.executemany(
                "INSERT INTO local_features (image_id, data) VALUES (?, ?) "
                "ON CONFLICT (image_id) DO UPDATE SET data = excluded.data",
                list(features.items()),
            )

    def image_size(self, image_id: int) -> tuple[int, int]:
        row = self.db.execute("SELECT width, height FROM images WHERE id = ?", (image_id,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def images_by_id(self, image_ids: list[int]) -> dict[int, StoredImage]:
        """The stored images of these ids (those that exist), by id."""
        out: dict[int, StoredImage] = {}
        for part in chunks(sorted(set(image_ids))):
            query = f"SELECT id, sha256, ext FROM images WHERE id IN ({','.join('?' * len(part))})"
            out.update((row[0], StoredImage(*row)) for row in self.db.execute(query, part))
        return out

    def image_by_id(self, image_id: int) -> StoredImage | None:
        row = self.db.execute("SELECT id, sha256, ext FROM images WHERE id = ?", (image_id,)).fetchone()
        return StoredImage(*row) if row else None
