"""The import_jobs table, read and written for ingest/jobs.py, which decides what to run.

A job is claimed by one server at a time: `claim` takes a queued job, or a running one whose
server stopped beating (died), in one statement that re-checks the row it updates, so two
servers never both win it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from snapsource.store.catalog import Catalog

_COLUMNS = (
    "id, status, source, path, format, mapping, rows_done, rows_total, counts, problems, error, "
    "owner, heartbeat, created_at, updated_at, options, deletion"
)


@dataclasses.dataclass(frozen=True)
class JobRow:
    id: str
    status: str  # queued, running, done, failed
    source: str
    path: str
    format: str | None
    mapping: str | None
    rows_done: int
    rows_total: int | None
    counts: dict[str, int]
    problems: list[dict[str, Any]]
    error: str | None
    owner: str | None
    heartbeat: float | None
    created_at: str
    updated_at: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # delete_missing, confirm_delete
    deletion: dict[str, Any] | None = None  # what its --delete-missing found and did

    @classmethod
    def of(cls, row: tuple) -> JobRow:
        values = list(row)
        values[8], values[9], values[15] = json.loads(values[8]), json.loads(values[9]), json.loads(values[15] or "{}")
        values[16] = json.loads(values[16]) if values[16] else None
        return cls(*values)


QUEUE_LOCK = 0x71756575  # PostgreSQL advisory lock of the import queue's limits: "queu"
_WAITING = "status IN ('receiving', 'queued', 'running')"


@dataclasses.dataclass(frozen=True)
class QueueLimits:
    """What the import queue holds at most (settings catalog_imports_per_token and
    catalog_imports_waiting_max_bytes); `by` ADMIN has no job count."""

    per_token: int
    max_bytes: int
    admin: str = "admin"

    def refusal(self, waiting: list[dict[str, Any]], by: str | None, adding: int) -> str | None:
        if by is not None and by != self.admin:
            mine = sum(1 for options in waiting if options.get("by") == by)
            if mine >= self.per_token:
                return (
                    f"this token has {mine} import job{'' if mine == 1 else 's'} queued or running, the most it may have "
                    "(catalog_imports_per_token): send the next one when one is done"
                )
        held = sum(int(options.get("bytes", 0)) for options in waiting)
        if adding and held + adding > self.max_bytes:
            return (
                f"the import queue holds {held / 1e6:,.0f} MB of files waiting to be imported, and this one adds "
                f"{adding / 1e6:,.0f} MB: more than the {self.max_bytes / 1e6:,.0f} MB it may hold "
                "(catalog_imports_waiting_max_bytes); try again when a job is done"
            )
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class JobTable:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def get(self, job_id: str) -> JobRow | None:
        row = self.catalog.db.execute(
            f"SELECT {_COLUMNS} FROM import_jobs WHERE id = ? AND status != 'receiving'", (job_id,)
        ).fetchone()
        return JobRow.of(row) if row else None

    def recent(self, limit: int) -> list[JobRow]:
        rows = self.catalog.db.execute(
            f"SELECT {_COLUMNS} FROM import_jobs WHERE status != 'receiving' ORDER BY created_at DESC, id LIMIT ?", (limit,)
        )
        return [JobRow.of(r) for r in rows.fetchall()]

    # a job's upload is reserved before it is read ("receiving", which no runner claims), so that
    # the queue's limits hold across every server on the catalog: each check and its write are one
    # transaction, taken in turns (BEGIN IMMEDIATE in SQLite, an advisory lock in PostgreSQL)

    def reserve(self, job_id: str, by: str, owner: str, now: float, limits: QueueLimits) -> str | None:
        """A row for an upload about to be read; why not (the limit it would pass), else None."""
        stamp = _now()
        with self.catalog.write() as db:
            self.catalog.lock(db, QUEUE_LOCK)
            waiting = [json.loads(r[0] or "{}") for r in db.execute(f"SELECT options FROM import_jobs WHERE {_WAITING}")]
            refused = limits.refusal(waiting, by, 0)
            if refused is None:
                db.execute(
                    "INSERT INTO import_jobs (id, status, source, path, owner, heartbeat, created_at, updated_at, options) "
                    "VALUES (?, 'receiving', '', '', ?, ?, ?, ?, ?)",
                    (job_id, owner, now, stamp, stamp, json.dumps({"by": by, "bytes": 0})),
                )
        return refused

    def grow(self, job_id: str, held: int, now: float, limits: QueueLimits) -> str | None:
        """The bytes a receiving job now holds in the data dir; why they may not (None: recorded)."""
        with self.catalog.write() as db:
            self.catalog.lock(db, QUEUE_LOCK)
            rows = db.execute(f"SELECT id, options FROM import_jobs WHERE {_WAITING}").fetchall()
            others = [json.loads(options or "{}") for found, options in rows if found != job_id]
            mine = next((json.loads(options or "{}") for found, options in rows if found == job_id), None)
            if mine is None:
                return "the upload's reservation is gone: send it again"
            refused = limits.refusal(others, None, held)
            if refused is None:
                db.execute(
                    "UPDATE import_jobs SET options = ?, heartbeat = ? WHERE id = ?",
                    (json.dumps({**mine, "bytes": held}), now, job_id),
                )
        return refused

    def queue(
        self, job_id: str, source: str, path: str, format: str | None, mapping: str | None, options: dict[str, Any]
    ) -> None:
        """A received job, ready for a runner."""
        with self.catalog.write() as db:
            db.execute(
                "UPDATE import_jobs SET status = 'queued', source = ?, path = ?, format = ?, mapping = ?, options = ?, "
                "owner = NULL, heartbeat = NULL, updated_at = ? WHERE id = ? AND status = 'receiving'",
                (source, path, format, mapping, json.dumps(options), _now(), job_id),
            )

    def drop(self, job_id: str) -> None:
        """An upload that was refused, failed or abandoned: its reservation goes."""
        with self.catalog.write() as db:
            db.execute("DELETE FROM import_jobs WHERE id = ? AND status = 'receiving'", (job_id,))

    def ids(self) -> set[str]:
        """Every job's id, receiving ones too (whose folders are theirs)."""
        return {r[0] for r in self.catalog.db.execute("SELECT id FROM import_jobs").fetchall()}

    def receiving(self) -> list[tuple[str, str, float]]:
        """(id, owner, heartbeat) of the uploads being received."""
        rows = self.catalog.db.execute("SELECT id, owner, heartbeat FROM import_jobs WHERE status = 'receiving'")
        return [(r[0], r[1] or "", float(r[2] or 0)) for r in rows.fetchall()]

    def claim(self, owner: str, now: float, stale_before: float) -> JobRow | None:
        """The oldest job that is queued or whose server died, now ours; None when there is none."""
        free = "(status = 'queued' OR (status = 'running' AND (heartbeat IS NULL OR heartbeat < ?)))"
        with self.catalog.write() as db:
            row = db.execute(
                f"SELECT id FROM import_jobs WHERE {free} ORDER BY created_at, id LIMIT 1", (stale_before,)
            ).fetchone()
            if row is None:
                return None
            db.execute(
                f"UPDATE import_jobs SET status = 'running', owner = ?, heartbeat = ?, updated_at = ? WHERE id = ? AND {free}",
                (owner, now, _now(), row[0], stale_before),
            )
        job = self.get(row[0])
        return job if job is not None and job.owner == owner and job.status == "running" else None

    def owners(self, beat_before: float) -> list[tuple[str, str]]:
        """(job id, owner) of the running jobs not heard of since `beat_before`."""
        rows = self.catalog.db.execute(
            "SELECT id, owner FROM import_jobs WHERE status = 'running' AND owner IS NOT NULL AND heartbeat < ?", (beat_before,)
        )
        return [(r[0], r[1]) for r in rows.fetchall()]

    def beat(self, job_id: str, owner: str, now: float) -> bool:
        """Still ours: False when another server took the job over (this one was thought dead)."""
        with self.catalog.write() as db:
            db.execute(
                "UPDATE import_jobs SET heartbeat = ? WHERE id = ? AND owner = ? AND status = 'running'", (now, job_id, owner)
            )
        job = self.get(job_id)
        return job is not None and job.owner == owner

    def set_format(self, job_id: str, format: str) -> None:
        """The format found from the content, for a job that named none."""
        with self.catalog.write() as db:
            db.execute("UPDATE import_jobs SET format = ? WHERE id = ? AND format IS NULL", (format, job_id))

    def progress(self, job_id: str, owner: str, rows_done: int, rows_total: int | None, counts: dict, problems: list) -> None:
        with self.catalog.write() as db:
            db.execute(
                "UPDATE import_jobs SET rows_done = ?, rows_total = ?, counts = ?, problems = ?, updated_at = ? "
                "WHERE id = ? AND owner = ?",
                (rows_done, rows_total, json.dumps(counts), json.dumps(problems), _now(), job_id, owner),
            )

    def set_deletion(self, job_id: str, owner: str, deletion: dict[str, Any]) -> None:
        """What the job's --delete-missing found and did."""
        with self.catalog.write() as db:
            db.execute("UPDATE import_jobs SET deletion = ? WHERE id = ? AND owner = ?", (json.dumps(deletion), job_id, owner))

    def release(self, job_id: str, owner: str) -> None:
        """Give a running job back (this server stops): any server may claim it at once."""
        with self.catalog.write() as db:
            db.execute("UPDATE import_jobs SET heartbeat = NULL, owner = NULL WHERE id = ? AND owner = ?", (job_id, owner))

    def finish(self, job_id: str, owner: str, status: str, error: str | None = None) -> None:
        with self.catalog.write() as db:
            db.execute(
                "UPDATE import_jobs SET status = ?, error = ?, heartbeat = NULL, updated_at = ? WHERE id = ? AND owner = ?",
                (status, error, _now(), job_id, owner),
            )
