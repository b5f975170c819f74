"""Query images: photos users uploaded or named by URL, kept by content hash with their analysis.

This is what makes page 2..N of a search cheap, like 1688's image id: the first request stores
the photo and its analysis (vector, regions, local features: an opaque blob here); later pages,
and anyone searching the same photo, read it back from memory, or from disk after a restart,
without fetching or analysing again. A URL that was
fetched once maps to its photo's hash. Entries unused for `upload_keep_days` are deleted.
Query images live apart from the catalog, so imports never see or delete them.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

from snapsource.store.lru import LRU
from snapsource.store.sqlite import Database, write_file

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    sha256 TEXT PRIMARY KEY,
    ext TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    pipeline TEXT NOT NULL,
    analysis BLOB NOT NULL,
    created_at REAL NOT NULL,
    used_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_use ON uploads(used_at);
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS urls_by_fetch ON urls(fetched_at);
"""

TOUCH_EVERY = 3600.0  # seconds between `used_at` updates of one upload
PRUNE_EVERY = 600.0  # seconds between two prunes


@dataclasses.dataclass(frozen=True)
class Upload:
    sha256: str
    ext: str
    width: int
    height: int

    @property
    def name(self) -> str:
        return f"{self.sha256}.{self.ext}"


@dataclasses.dataclass(frozen=True)
class _Cached:
    upload: Upload
    analysis: bytes
    touched: float


class Uploads(Database):
    def __init__(self, directory: Path, pipeline: str, memory: int = 4096, keep_days: int = 30) -> None:
        self.directory = Path(directory)
        self.pipeline = pipeline
        self.keep_seconds = keep_days * 86400.0
        self._vectors: LRU[str, _Cached] = LRU(memory)
        self._urls: LRU[str, str] = LRU(memory)
        self.memo: LRU[tuple[str, str], object] = LRU(memory)  # analyses of user-drawn regions
        self._pruned = 0.0
        _drop_older_schema(self.directory / "uploads.db")
        super().__init__(self.directory / "uploads.db", SCHEMA, SCHEMA_VERSION)

    def file(self, sha256: str, ext: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}.{ext}"

    def get(self, sha256: str) -> Upload | None:
        cached = self._vectors.get(sha256)
        if cached is not None:
            return cached.upload
        row = self.db.execute("SELECT sha256, ext, width, height FROM uploads WHERE sha256 = ?", (sha256,)).fetchone()
        return Upload(*row) if row else None

    def analysis(self, sha256: str) -> bytes | None:
        """The stored analysis, if this pipeline made it; None means analyse the photo again."""
        now = time.time()
        cached = self._vectors.get(sha256)
        if cached is not None:
            if now - cached.touched > TOUCH_EVERY:
                self._touch(sha256, now)
                self._vectors.put(sha256, dataclasses.replace(cached, touched=now))
            return cached.analysis
        row = self.db.execute(
            "SELECT sha256, ext, width, height, pipeline, analysis FROM uploads WHERE sha256 = ?", (sha256,)
        ).fetchone()
        if row is None or row[4] != self.pipeline:
            return None
        self._touch(sha256, now)
        self._vectors.put(sha256, _Cached(Upload(*row[:4]), row[5], now))
        return row[5]

    def put(self, upload: Upload, data: bytes | None, analysis: bytes) -> None:
        """Keep the photo (file first, then its row) and its analysis. `data` None: the file is
        kept elsewhere (a catalog photo used as a query)."""
        now = time.time()
        if data is not None:
            write_file(self.file(upload.sha256, upload.ext), data)
        with self.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (sha256, ext, width, height, pipeline, analysis, created_at, used_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (upload.sha256, upload.ext, upload.width, upload.height, self.pipeline, analysis, now, now),
            )
        self._vectors.put(upload.sha256, _Cached(upload, analysis, now))
        if now - self._pruned > PRUNE_EVERY:
            self.prune(now)

    def sha_for_url(self, url: str) -> str | None:
        sha = self._urls.get(url)
        if sha is None:
            row = self.db.execute("SELECT sha256 FROM urls WHERE url = ?", (url,)).fetchone()
            if row:
                sha = row[0]
                self._urls.put(url, sha)
        return sha

    def remember_url(self, url: str, sha256: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO urls (url, sha256, fetched_at) VALUES (?, ?, ?)", (url, sha256, time.time()))
        self._urls.put(url, sha256)

    def prune(self, now: float | None = None) -> int:
        """Delete query images unused for `keep_days`, and URLs fetched before then."""
        now = time.time() if now is None else now
        self._pruned = now
        cutoff = now - self.keep_seconds
        with self.write() as db:
            old = db.execute("SELECT sha256, ext FROM uploads WHERE used_at < ?", (cutoff,)).fetchall()
            db.execute("DELETE FROM uploads WHERE used_at < ?", (cutoff,))
            db.execute("DELETE FROM urls WHERE fetched_at < ?", (cutoff,))
        for sha256, ext in old:
            self._vectors.discard(sha256)
            self.file(sha256, ext).unlink(missing_ok=True)
        return len(old)

    def _touch(self, sha256: str, now: float) -> None:
        with self.write() as db:
            db.execute("UPDATE uploads SET used_at = ? WHERE sha256 = ?", (now, sha256))


def _drop_older_schema(path: Path) -> None:
    """Kept analyses are a cache: a store from an older layout is emptied, not migrated."""
    if not path.exists():
        return
    conn = sqlite3.connect(path)
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.executescript("DROP TABLE IF EXISTS uploads; DROP TABLE IF EXISTS urls;")
    finally:
        conn.close()
