"""The catalog in PostgreSQL (the service on 127.0.0.1:5432, database `test`), each test in a schema
of its own: migrations, the same catalog as SQLite's, and token limits shared by servers."""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from conftest import fresh_postgres, luma_offers, write_catalog
from snapsource import search
from snapsource.accounts.tokens import Tokens
from snapsource.config import Settings
from snapsource.errors import ConcurrencyLimit, QuotaExceeded
from snapsource.ingest.pipeline import ingest
from snapsource.resources import Resources
from snapsource.store.catalog import Catalog
from snapsource.store.postgres import MIGRATIONS as PG_MIGRATIONS
from snapsource.store.postgres import PostgresDatabase, redact

SERVICE = "postgresql://127.0.0.1:5432/test"


@pytest.fixture()
def url() -> Iterator[str]:
    """A schema of this test's own in the service's database, dropped afterwards."""
    import psycopg

    made = fresh_postgres(SERVICE)
    yield made
    schema = made.rsplit("%3D", 1)[1]
    with psycopg.connect(SERVICE, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_migrations_are_applied_once_and_recorded(url):
    first = PostgresDatabase(url)
    assert first.migrate() == []  # applied when it opened
    second = PostgresDatabase(url)  # another server starting on the same database
    rows = second.db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(int(f.name[:4]), f.stem) for f in sorted(PG_MIGRATIONS.glob("*.sql"))]
    assert rows[:2] == [(1, "0001_catalog"), (2, "0002_token_limits")]
    assert second.db.execute("SELECT count(*) FROM catalog_version").fetchone() == (1,)  # one counter row
    first.close()
    second.close()


def test_a_database_made_by_the_first_0001_migrates_cleanly(url):
    """0001_catalog.sql made the tokens' limit columns until 0002_token_limits.sql took them over:
    a database it made then gets 0002 without error and keeps its tokens."""
    import psycopg

    from snapsource.store.postgres import MIGRATIONS

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((MIGRATIONS / "0001_catalog.sql").read_text())
        conn.execute(
            "ALTER TABLE tokens ADD COLUMN quota BIGINT, ADD COLUMN calls_used BIGINT NOT NULL DEFAULT 0, "
            "ADD COLUMN qps DOUBLE PRECISION, ADD COLUMN concurrency INTEGER, ADD COLUMN expires_at TEXT, "
            "ADD COLUMN bucket DOUBLE PRECISION, ADD COLUMN bucket_at DOUBLE PRECISION"
        )
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, '0001_catalog')")
        conn.execute("INSERT INTO tokens (name, hash, created_at, quota, calls_used) VALUES ('old', 'h', '2026-01-01', 10, 4)")
    database = PostgresDatabase(url)
    assert database.migrate() == []  # 0002 was applied as it opened
    assert database.db.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
        len(list(PG_MIGRATIONS.glob("*.sql"))),
    )
    assert database.db.execute("SELECT name, quota, calls_used FROM tokens").fetchall() == [("old", 10, 4)]
    database.close()


def test_bulk_copies_a_sqlite_catalog_into_postgresql(tmp_path, url):
    """What `snapsource bench --profile scaleout` does with the bench's catalog (store/bulk.py)."""
    from snapsource.store import bulk

    lite = Catalog(tmp_path / "lite")
    bulk.insert(lite, "images", [(i, f"{i:064x}", "jpg", 800, 800) for i in (1, 2, 3)])
    bulk.insert(lite, "offers", [(10 + i, "{}", "1.50", i, 1, 0, None, 0, 1, "2026-01-02", i, "2026-11-27") for i in (1, 2)])
    bulk.insert(lite, "offer_images", [(11, 0, 1, "s"), (12, 0, 2, "s"), (12, 1, 3, "s")])
    pg = Catalog(tmp_path / "pg", url)
    for table in ("images", "offers", "offer_images"):
        bulk.insert(pg, table, bulk.rows(lite, table))
        assert sorted(bulk.rows(pg, table)) == sorted(bulk.rows(lite, table)), table
    bulk.insert(pg, "image_vectors", [(1, b"\x00" * 8)])
    bulk.analyze(pg)
    assert pg.count() == 2 and pg.version() > 0 and bulk.size_bytes(pg) > 0 and bulk.size_bytes(lite) > 0
    lite.close()
    pg.close()


def test_an_unreachable_database_is_a_clear_error():
    with pytest.raises(ConnectionError, match="catalog database postgresql://u:\\*\\*\\*@127.0.0.1:9/x"):
        PostgresDatabase("postgresql://u:secret@127.0.0.1:9/x?connect_timeout=1")
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_same_catalog_and_answers_as_sqlite(tmp_path, url):
    """The luma offers in SQLite and in PostgreSQL: the same filter columns and the same pages."""
    path = write_catalog(tmp_path / "c.jsonl", luma_offers()[:12])
    opened = []
    for name, catalog in (("sqlite", ""), ("postgres", url)):
        resources = Resources.open(Settings.load(environ={}, data_dir=tmp_path / name, catalog=catalog))
        report = ingest(resources, path)
        assert report.added == 12 and not report.problems
        opened.append(resources)
    lite, pg = (r.columns.current() for r in opened)
    for field in ("item_id", "price", "sales", "new_arrival", "created_day", "main_image"):
        assert np.array_equal(getattr(lite, field), getattr(pg, field)), field
    for flag in lite.flags:
        assert np.array_equal(lite.flags[flag], pg.flags[flag]), flag
    query = opened[0].index.vectors(lite.main_image[:1])
    for sort in search.Sort:
        pages = [
            search.run(r, query, sort=sort, filters=search.Filters(is_factory=True), today=dt.date(2026, 12, 1)) for r in opened
        ]
        assert [h.doc for h in pages[0].hits] == [h.doc for h in pages[1].hits]
        assert pages[0].total_count == pages[1].total_count > 0
    for r in opened:
        r.close()


def test_token_limits_hold_across_servers(tmp_path, url):
    """Two servers (two pools) admitting one token's calls at once: the quota is never overrun and
    the concurrency limit counts both servers' calls."""
    servers = [Tokens(Catalog(tmp_path, url)) for _ in range(2)]  # same pepper: one data dir
    quota = servers[0].create("quota", quota=25)
    admitted, refused = [], []

    def hammer(tokens: Tokens) -> None:
        for _ in range(20):
            try:
                admitted.append(tokens.admit(quota))
            except QuotaExceeded:
                refused.append(1)

    threads = [threading.Thread(target=hammer, args=(servers[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(admitted), len(refused)) == (25, 55)
    assert servers[1].info(quota).calls_used == 25

    single = servers[0].create("single", concurrency=2)
    held = [servers[0].admit(single), servers[1].admit(single)]
    with pytest.raises(ConcurrencyLimit):
        servers[0].admit(single)
    servers[1].release(held[0], "/1688/search/image", 200, 0.01)
    held.append(servers[0].admit(single))  # a slot freed by the other server


def test_metering_from_two_servers_adds_up(tmp_path, url):
    servers = [Tokens(Catalog(tmp_path, url)) for _ in range(2)]
    token = servers[0].create("metered")
    for tokens in servers:
        for status in (200, 200, 500):
            tokens.release(tokens.admit(token), "/1688/search/image", status, 0.02)
    barrier = threading.Barrier(2)

    def flush(tokens: Tokens) -> None:
        barrier.wait()
        tokens.flush()

    threads = [threading.Thread(target=flush, args=(t,)) for t in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [usage] = servers[0].usage(name="metered")
    assert (usage["calls"], usage["errors"]) == (6, 2)
    assert servers[1].info(token).calls_used == 6


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"catalog": "mysql://127.0.0.1/x"}, "expected sqlite:///path/catalog.db or postgresql://"),
        ({"vectors": "milvus://127.0.0.1:9/x"}, "need the catalog in PostgreSQL"),
        ({"vectors": "qdrant://127.0.0.1:6333/x"}, "expected empty (faiss in the data dir) or milvus://"),
    ],
)
def test_bad_store_urls_are_clear_errors(tmp_path, settings, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        Resources.open(Settings.load(environ={}, data_dir=tmp_path, **settings))


def test_the_cli_says_what_is_wrong_with_a_store(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "snapsource", "info", "--data", str(tmp_path)],
        env={**os.environ, "SNAPSOURCE_CATALOG": "postgresql://127.0.0.1:9/none?connect_timeout=1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr  # one line: no pool warnings, no wrapping
    assert done.stderr.startswith(
        "error: cannot connect to the catalog database postgresql://127.0.0.1:9/none?connect_timeout=1: "
    )
    assert "Connection refused" in done.stderr  # the real cause, not a timeout


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("postgresql://127.0.0.1:5432/no_such_database_here", 'database "no_such_database_here" does not exist'),
        ("postgresql://127.0.0.1:5432/test?pool_size=abc", "pool_size must be a whole number"),
    ],
)
def test_a_wrong_database_or_setting_is_named(tmp_path, url, cause):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "snapsource", "token", "list", "--data", str(tmp_path)],
        env={**os.environ, "SNAPSOURCE_CATALOG": url},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and cause in done.stderr, done.stderr
