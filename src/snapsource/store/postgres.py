"""The catalog database in PostgreSQL: a connection pool, versioned migrations, SQLite's SQL.

Any number of API servers and ingest workers share one PostgreSQL, so offers, tokens, their
limits and their metering hold across all of them. The modules above write their SQL once, in
the subset both databases speak (`?` placeholders, `ON CONFLICT`, `RETURNING`); this module
turns `?` into psycopg's `%s` and booleans into the SMALLINTs that SQLite stores.

The schema is made by the numbered SQL files in migrations/postgresql, applied at start in one
transaction under an advisory lock (servers starting together apply each file once) and recorded
in `schema_migrations`.
"""

from __future__ import annotations

import functools
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

MIGRATIONS = Path(__file__).parent / "migrations" / "postgresql"
MIGRATION_LOCK = 0x736E6170  # pg_advisory_xact_lock key: "snap"
POOL_SIZE = 8  # connections per process at most; `?pool_size=N` in the URL changes it
CONNECT_SECONDS = 10.0  # a database that does not answer by then is reported, not waited for


@functools.lru_cache(maxsize=512)
def _sql(query: str) -> str:
    return query.replace("%", "%%").replace("?", "%s")


def _params(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, bool) else v for v in params)


class Rows:
    """A statement's rows, read before its connection goes back to the pool."""

    def __init__(self, cursor: psycopg.Cursor) -> None:
        self._rows = cursor.fetchall() if cursor.description else []
        self.rowcount = cursor.rowcount

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple]:
        return self._rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._rows)


class Session:
    """Statements on one connection (inside `write()`: one transaction)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> Rows:
        with self.conn.cursor() as cur:
            cur.execute(_sql(query), _params(params))
            return Rows(cur)

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_sql(query), [_params(r) for r in rows])

    def copy(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        """COPY ... FROM STDIN: bulk loads (the bench) at a fraction of INSERT's cost."""
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(_params(row))


class Reader:
    """`db.execute(...)` outside a transaction: each statement on a pooled connection."""

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self.pool = pool

    def execute(self, query: str, params: Sequence[Any] = ()) -> Rows:
        with self.pool.connection() as conn:
            return Session(conn).execute(query, params)


def conninfo(url: str) -> tuple[str, int]:
    """The libpq URL without our own `pool_size` parameter, and the pool size."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    size = POOL_SIZE
    kept = []
    for key, value in query:
        if key == "pool_size":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"catalog {redact(url)}: pool_size must be a whole number of connections, got {value!r}")
            size = int(value)
        else:
            kept.append((key, value))
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, urllib.parse.urlencode(kept), "")), size


def _reachable(info: str, url: str) -> None:
    """Connect once before the pool does, so that a wrong host, port, database or role is one
    clear line at once (the pool retries quietly until its timeout, then says only that it timed out)."""
    try:
        psycopg.connect(info, connect_timeout=int(CONNECT_SECONDS)).close()
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split("\n")[0].split())
        raise ConnectionError(f"cannot connect to the catalog database {redact(url)}: {reason}") from None


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        info, size = conninfo(url)
        _reachable(info, url)
        self.pool = psycopg_pool.ConnectionPool(
            info, min_size=1, max_size=max(1, size), kwargs={"autocommit": True}, open=False, name="snapsource"
        )
        try:
            self.pool.open(wait=True, timeout=CONNECT_SECONDS)
        except psycopg_pool.PoolTimeout as exc:
            self.pool.close()
            raise ConnectionError(f"cannot connect to the catalog database {redact(url)}: check it runs and the URL") from exc
        self.db = Reader(self.pool)
        self._closed = threading.Event()
        self.migrate()

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; return their names."""
        applied = []
        with self.write() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for path in sorted(MIGRATIONS.glob("*.sql")):
                version = int(path.name.split("_", 1)[0])
                if version in done:
                    continue
                db.conn.execute(path.read_text())  # several statements, no parameters
                db.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, path.stem))
                applied.append(path.stem)
        return applied

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction on one pooled connection; committed on success, rolled back on error."""
        with self.pool.connection() as conn, conn.transaction():
            yield Session(conn)

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """Reads that see one state of the database: a REPEATABLE READ transaction (read only)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Session(conn)

    @contextmanager
    def writer_lock(self, key: int, wait: Callable[[Callable[[], bool]], None]) -> Iterator[None]:
        """A session advisory lock, held by one pooled connection for the import: servers that
        share this database but not a data dir take turns too."""
        with self.pool.connection() as conn:

            def attempt() -> bool:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                return bool(row and row[0])

            wait(attempt)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def lock(self, db: Session, key: int) -> None:
        """Serialise transactions that read and then write the same rows (token metering)."""
        db.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.pool.close()


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
