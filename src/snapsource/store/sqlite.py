"""One SQLite database file in WAL mode, a connection per thread, explicit write transactions,
and the runner of numbered migrations (migrations/sqlite) that `PRAGMA user_version` records.

WAL lets the server's worker threads read while an ingest (or an upload) writes; each thread
keeps its own connection because sqlite3 connections must not be shared between threads.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class Database:
    dialect = "sqlite"

    def __init__(self, path: Path, schema: str | None = None, version: int = 0) -> None:
        """With a schema, make it (a cache's: uploads.py); without, the caller runs `migrate`."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # a new database is the owner's alone (SQLite gives its -wal and -shm files the same mode)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        self._local = threading.local()
        self._writer = threading.RLock()
        if schema is not None:
            self.db.executescript(f"BEGIN; {schema} PRAGMA user_version = {version}; COMMIT;")

    def migrate(self, directory: Path, unversioned: int | None = None) -> list[str]:
        """Apply the numbered SQL files (NNNN_name.sql) above the database's `user_version`, in one
        transaction that sets it to the last; return their names. Processes opening the database
        together take turns (`BEGIN IMMEDIATE`), so each file runs once.

        `unversioned` is the user_version that releases before numbered migrations stamped on
        whatever schema they had made: such a database gets every file, which must run again
        harmlessly for it."""
        files = {int(path.name.split("_", 1)[0]): path for path in Path(directory).glob("*.sql")}
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version != unversioned and version >= max(files, default=0):
            return []  # up to date: no write lock, so opening does not wait for an import's transaction
        applied: list[str] = []
        with self.write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # again: another process may have migrated
            done = 0 if version == unversioned else version
            for number, path in sorted(files.items()):
                if number <= done:
                    continue
                for statement in statements(path.read_text()):
                    _run(db, statement)
                applied.append(path.stem)
                version = max(version, number)
            if applied:
                db.execute(f"PRAGMA user_version = {int(version)}")
        return applied

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; committed on success, rolled back on any error. The threads of a
        process take turns on a lock first: SQLite has one writer at a time anyway, and its busy
        handler would make the others sleep in steps of up to 100 ms (p99 over a second at 16
        concurrent searches, each of which writes twice for its token)."""
        db = self.db
        with self._writer:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that see one state of the database: a read transaction (WAL keeps its snapshot
        from the first read), so a commit between two SELECTs cannot show in the second only."""
        db = self.db
        if db.in_transaction:  # inside this thread's write: that transaction already is one state
            yield db
            return
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def lock(self, db: sqlite3.Connection, key: int) -> None:
        """Nothing to do: `BEGIN IMMEDIATE` already makes write transactions take turns."""

    @contextmanager
    def writer_lock(self, key: int, wait: Callable[[Callable[[], bool]], None]) -> Iterator[None]:
        """Nothing more to hold: the catalog's lock file covers every process on this data dir."""
        yield

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def statements(script: str) -> list[str]:
    """A script's statements, one by one (a trigger's body stays whole): `execute` takes one, and
    `executescript` would commit the migration's transaction first."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if any(line.strip() and not line.strip().startswith("--") for line in pending.splitlines()):
        raise ValueError(f"a statement without its closing ';': {pending.strip()[:80]}")
    return out


def _run(db: sqlite3.Connection, statement: str) -> None:
    """One migration statement. SQLite has no ADD COLUMN IF NOT EXISTS: adding a column that is
    there already is skipped, so a migration may add what older releases added their own way."""
    try:
        db.execute(statement)
    except sqlite3.OperationalError as exc:
        if not (str(exc).startswith("duplicate column name") and " ADD COLUMN " in statement.upper()):
            raise


def write_file(path: Path, data: bytes) -> None:
    """Write a content-addressed file atomically: readers see all of it or none of it."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
