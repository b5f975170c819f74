"""Whole tables in and out at once, for the bench's synthetic catalogs (tools/bench.py) and their
copy into PostgreSQL (tools/bench_scaleout.py): rows go in by one `executemany` in SQLite and by
COPY in PostgreSQL, a million offers in seconds where `Catalog.upsert_offers` would take hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from snapsource.store.catalog import Catalog

# the tables a bulk load fills, and their columns in the order rows give them
TABLES: dict[str, tuple[str, ...]] = {
    "images": ("id", "sha256", "ext", "width", "height"),
    "offers": (
        "item_id",
        "doc",
        "price",
        "sales",
        "is_factory",
        "support_dropshipping",
        "free_shipping",
        "verified_supplier",
        "new_arrival",
        "created_at",
        "main_image_id",
        "updated_at",
    ),
    "offer_images": ("item_id", "position", "image_id", "source"),
    "image_vectors": ("image_id", "vector"),  # PostgreSQL only: what Milvus is filled from
}


def insert(catalog: Catalog, table: str, rows: Iterable[Sequence[object]]) -> None:
    """Rows of one of TABLES, every column in TABLES' order, in one transaction. `rows` may be a
    generator: it is read as it is written, never held whole."""
    columns = ", ".join(TABLES[table])
    with catalog.write() as db:
        if catalog.dialect == "postgresql":
            db.copy(f"COPY {table} ({columns}) FROM STDIN", rows)
        else:
            db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(TABLES[table]))})", rows)


def rows(catalog: Catalog, table: str) -> Iterator[tuple]:
    """Every row of one of TABLES in TABLES' column order; from SQLite as they are read."""
    return iter(catalog.db.execute(f"SELECT {', '.join(TABLES[table])} FROM {table}"))


def analyze(catalog: Catalog) -> None:
    """Planner statistics now, after a bulk load, rather than whenever autovacuum gets to it."""
    with catalog.write() as db:
        db.execute("ANALYZE")


def size_bytes(catalog: Catalog) -> int:
    """What the catalog database takes on disk."""
    if catalog.dialect == "postgresql":
        return int(catalog.db.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    pages = catalog.db.execute("PRAGMA page_count").fetchone()[0]
    return int(pages * catalog.db.execute("PRAGMA page_size").fetchone()[0])
