"""The upstream's tables, read and written for upstream/, which decides what to ask and keep.

`upstream_paths`: the path convert_url gave for a query photo (by its sha256), so that later pages
and later searches of that photo skip the conversion. `upstream_pages`: each page the upstream
answered, under the photo and the TMAPI parameters that asked for it, so that the same question
within `upstream_cache_days` is answered without a call. Both are plain upserts, in the SQL both
databases speak; times are seconds since 1970.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from snapsource.store.catalog import Catalog


@dataclasses.dataclass(frozen=True)
class StoredPage:
    answer: dict[str, Any]  # the upstream's `data`, as it sent it
    fetched_at: float


class UpstreamTable:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def path(self, photo: str, since: float) -> str | None:
        """The upstream's path for this photo, converted at `since` or later."""
        row = self.catalog.db.execute(
            "SELECT path FROM upstream_paths WHERE photo = ? AND converted_at >= ?", (photo, since)
        ).fetchone()
        return row[0] if row else None

    def keep_path(self, photo: str, path: str, now: float) -> None:
        with self.catalog.write() as db:
            db.execute(
                "INSERT INTO upstream_paths (photo, path, converted_at) VALUES (?, ?, ?) "
                "ON CONFLICT (photo) DO UPDATE SET path = excluded.path, converted_at = excluded.converted_at",
                (photo, path, now),
            )

    def forget_path(self, photo: str) -> None:
        """The upstream refused the path (expired on its side): the next search converts again."""
        with self.catalog.write() as db:
            db.execute("DELETE FROM upstream_paths WHERE photo = ?", (photo,))

    def page(self, key: str, since: float) -> StoredPage | None:
        row = self.catalog.db.execute(
            "SELECT answer, fetched_at FROM upstream_pages WHERE key = ? AND fetched_at >= ?", (key, since)
        ).fetchone()
        return StoredPage(json.loads(row[0]), float(row[1])) if row else None

    def keep_page(self, key: str, photo: str, page: int, answer: dict[str, Any], now: float) -> None:
        with self.catalog.write() as db:
            db.execute(
                "INSERT INTO upstream_pages (key, photo, page, answer, fetched_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET answer = excluded.answer, fetched_at = excluded.fetched_at",
                (key, photo, page, json.dumps(answer, ensure_ascii=False), now),
            )

    def forget_before(self, before: float) -> int:
        """Pages and paths older than the cache keeps: deleted; how many pages went."""
        with self.catalog.write() as db:
            gone = db.execute("DELETE FROM upstream_pages WHERE fetched_at < ?", (before,)).rowcount
            db.execute("DELETE FROM upstream_paths WHERE converted_at < ?", (before,))
        return int(gone or 0)

    def counts(self) -> tuple[int, int]:
        """(pages kept, photos converted)."""
        pages = self.catalog.db.execute("SELECT COUNT(*) FROM upstream_pages").fetchone()[0]
        paths = self.catalog.db.execute("SELECT COUNT(*) FROM upstream_paths").fetchone()[0]
        return int(pages), int(paths)
