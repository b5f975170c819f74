"""The SQLite catalog's numbered migrations: a new data dir, data dirs of earlier releases (stamped
user_version 1 whatever they held), processes opening one together, and a migration that fails."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from pathlib import Path

import pytest

from snapsource.accounts.tokens import Tokens
from snapsource.store.catalog import MIGRATIONS, Catalog
from snapsource.store.sqlite import Database

LATEST = max(int(p.name.split("_", 1)[0]) for p in MIGRATIONS.glob("*.sql"))
LIMITS = {"quota", "calls_used", "qps", "concurrency", "expires_at", "bucket", "bucket_at"}

# what earlier releases made, each stamping user_version 1 ---------------------------------------
FIRST_RELEASE = """
CREATE TABLE offers (item_id INTEGER PRIMARY KEY, doc TEXT NOT NULL, price TEXT NOT NULL, sales INTEGER NOT NULL,
    is_factory INTEGER, support_dropshipping INTEGER, free_shipping INTEGER, verified_supplier INTEGER,
    new_arrival INTEGER, created_at TEXT, main_image_id INTEGER NOT NULL REFERENCES images(id), updated_at TEXT NOT NULL);
CREATE TABLE images (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, ext TEXT NOT NULL, width INTEGER NOT NULL,
    height INTEGER NOT NULL);
CREATE TABLE offer_images (item_id INTEGER NOT NULL REFERENCES offers(item_id) ON DELETE CASCADE, position INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id), source TEXT NOT NULL, PRIMARY KEY (item_id, position));
CREATE INDEX offer_images_by_image ON offer_images(image_id);
CREATE TABLE tokens (id INTEGER PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
    revoked_at TEXT);
"""
# the last release before migrations: local features and catalog_version (tokens as before)
CATALOG_VERSION = """
CREATE TABLE local_features (image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, data BLOB NOT NULL);
CREATE TABLE catalog_version (n INTEGER NOT NULL);
INSERT INTO catalog_version (n) VALUES (0);
CREATE TRIGGER offers_added AFTER INSERT ON offers BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER offers_changed AFTER UPDATE ON offers BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER offers_deleted AFTER DELETE ON offers BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER offer_images_added AFTER INSERT ON offer_images BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER offer_images_deleted AFTER DELETE ON offer_images BEGIN UPDATE catalog_version SET n = n + 1; END;
"""
# what that release's accounts/tokens.py added when a server opened the data dir: the columns 0002 adds now
TOKEN_LIMITS = (
    (MIGRATIONS / "0002_token_limits.sql").read_text()
    + """
CREATE TABLE token_inflight (id INTEGER PRIMARY KEY, token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    started REAL NOT NULL);
CREATE INDEX token_inflight_by_token ON token_inflight(token_id);
CREATE TABLE token_usage (token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE, day TEXT NOT NULL,
    endpoint TEXT NOT NULL, calls INTEGER NOT NULL, errors INTEGER NOT NULL, latency TEXT NOT NULL,
    PRIMARY KEY (token_id, day, endpoint));
"""
)
OLD = {
    "first release": FIRST_RELEASE,
    "before token limits": FIRST_RELEASE + CATALOG_VERSION,  # or a data dir `snapsource bench` built
    "with token limits": FIRST_RELEASE + CATALOG_VERSION + TOKEN_LIMITS,
}


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def old_data_dir(data: Path, schema: str) -> str:
    """A data dir an earlier release left: one offer with two images, and one token; its secret."""
    data.mkdir()
    (data / "secret.key").write_text("ab" * 32)
    secret = "ss_from-an-earlier-release"
    digest = hmac.new(b"ab" * 32, secret.encode(), hashlib.sha256).hexdigest()
    conn = sqlite3.connect(data / "catalog.db")
    conn.execute("PRAGMA journal_mode=WAL")  # as every release opened it
    conn.executescript(schema)
    conn.executemany("INSERT INTO images VALUES (?, ?, 'jpg', 800, 600)", [(1, "a" * 64), (2, "b" * 64)])
    conn.execute("INSERT INTO offers VALUES (7, '{}', '9.90', 3, 1, 0, 0, 0, 0, '2026-01-02', 1, '2026-01-02T00:00:00+00:00')")
    conn.executemany("INSERT INTO offer_images VALUES (7, ?, ?, 'http://shop/x.jpg')", [(0, 1), (1, 2)])
    conn.execute("INSERT INTO tokens (name, hash, created_at) VALUES ('old', ?, '2026-01-01T00:00:00+00:00')", (digest,))
    if "token_usage" in schema:
        conn.execute("UPDATE tokens SET calls_used = 5")
        conn.execute(
            "INSERT INTO token_usage VALUES (1, '2026-01-01', '/1688/search/image', 5, 1, '[5,0,0,0,0,0,0,0,0,0,0,0,0]')"
        )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    return secret


def test_a_new_catalog_is_made_by_the_migrations(tmp_path):
    catalog = Catalog(tmp_path)
    conn = sqlite3.connect(tmp_path / "catalog.db")
    assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)
    assert columns(conn, "tokens") >= LIMITS and columns(conn, "token_inflight") and columns(conn, "token_usage")
    assert catalog.database.migrate(MIGRATIONS, unversioned=1) == []  # nothing twice
    catalog.close()
    Catalog(tmp_path).close()
    assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)
    conn.close()


@pytest.mark.parametrize("release", OLD)
def test_a_data_dir_of_an_earlier_release_upgrades_and_keeps_its_rows(tmp_path, release):
    secret = old_data_dir(tmp_path / "data", OLD[release])
    catalog = Catalog(tmp_path / "data")
    tokens = Tokens(catalog)
    assert catalog.count() == 1 and catalog.offer_state(7) == ("{}", [1, 2])
    assert {i.sha256 for i in catalog.all_images()} == {"a" * 64, "b" * 64}
    metered = release == "with token limits"
    [old] = tokens.list()
    assert (old.name, old.quota, old.expires_at) == ("old", None, None)
    assert old.calls_used == (5 if metered else 0)
    assert [u["calls"] for u in tokens.usage(days=10_000)] == ([5] if metered else [])
    tokens.release(tokens.admit(secret), "/1688/search/image", 200, 0.01)
    assert tokens.info(secret).calls_used == old.calls_used + 1
    limited = tokens.create("new", quota=1, concurrency=1)  # the limits work on the upgraded tables
    tokens.release(tokens.admit(limited), "/1688/search/image", 200, 0.01)
    assert tokens.info(limited).calls_used == 1
    before = catalog.version()
    catalog.delete_offers([7])
    assert catalog.version() > before  # catalog_version and its triggers, whatever the release had
    catalog.close()
    conn = sqlite3.connect(tmp_path / "data" / "catalog.db")
    assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)
    assert columns(conn, "tokens") >= LIMITS and "data" in columns(conn, "local_features")
    conn.close()


def test_processes_opening_one_data_dir_together_migrate_it_once(tmp_path):
    old_data_dir(tmp_path / "data", OLD["before token limits"])
    applied: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        database = Database(tmp_path / "data" / "catalog.db")  # a connection each, as processes have
        try:
            barrier.wait()
            applied.append(database.migrate(MIGRATIONS, unversioned=1))
        except BaseException as exc:  # reported below
            errors.append(exc)
        database.close()

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(applied) == [[], [], [], [f.stem for f in sorted(MIGRATIONS.glob("*.sql"))]]
    catalog = Catalog(tmp_path / "data")
    assert catalog.count() == 1 and catalog.database.migrate(MIGRATIONS, unversioned=1) == []
    catalog.close()


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_first.sql").write_text("CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);\n")
    database = Database(tmp_path / "x.db")
    assert database.migrate(migrations) == ["0001_first"]
    (migrations / "0002_second.sql").write_text("-- adds b\nCREATE TABLE b (y INTEGER);\nINSERT INTO nowhere VALUES (1);\n")
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        database.migrate(migrations)
    assert database.db.execute("PRAGMA user_version").fetchone() == (1,)
    assert database.db.execute("SELECT name FROM sqlite_master WHERE name = 'b'").fetchone() is None
    (migrations / "0002_second.sql").write_text("CREATE TABLE b (y INTEGER)  -- no closing semicolon\n")
    with pytest.raises(ValueError, match="closing ';'"):
        database.migrate(migrations)
    database.close()
