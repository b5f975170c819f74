"""API tokens: secrets shown once, their limits, and what they were used for.

A token is stored only as a peppered HMAC-SHA256 digest; the pepper is a per-install secret in the
data dir (``secret.key``, mode 0600), so a copy of the database alone does not allow guessing
tokens offline. Each token may carry a calls quota, an expiry date, a requests-per-second rate and
a concurrency limit. Their state lives in the catalog database (SQLite or PostgreSQL), not in
process memory, so the limits hold across every worker process and every server sharing that
database: for a token with limits, one transaction admits a call (checks and counts; the token's
row is locked for it, by `BEGIN IMMEDIATE` in SQLite and `FOR UPDATE` in PostgreSQL) and, with a
concurrency limit, a second frees its slot.

Metering (calls, errors and a latency histogram per token, endpoint and day, and the calls of
tokens without limits) is gathered in memory and written once a second (FLUSH_SECONDS) in one
transaction: two write transactions per search, taken in turn by every worker process, halved the
throughput of `serve --workers 2` (125 against 218 requests/s, docs/performance.md). A process
killed outright loses at most that second of metering; limits are never deferred.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from snapsource.store.catalog import Catalog
from snapsource.errors import ConcurrencyLimit, QuotaExceeded, Unauthorized

FLUSH_SECONDS = 1.0  # metering is written at most this long after the call
STALE_SECONDS = 300.0  # an in-flight call older than this was lost with its process
METERING_LOCK = 0x6D657465  # PostgreSQL advisory lock of metering flushes: "mete"
LATENCY_EDGES_MS = (5, 10, 25, 50, 100, 150, 250, 500, 1000, 2500, 5000, 15000)
log = logging.getLogger("snapsource.tokens")

SCHEMA = """
CREATE TABLE IF NOT EXISTS token_inflight (
    id INTEGER PRIMARY KEY,
    token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    started REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS token_inflight_by_token ON token_inflight(token_id);
CREATE TABLE IF NOT EXISTS token_usage (
    token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    latency TEXT NOT NULL,
    PRIMARY KEY (token_id, day, endpoint)
);
"""
LIMIT_COLUMNS = {
    "quota": "INTEGER",
    "calls_used": "INTEGER NOT NULL DEFAULT 0",
    "qps": "REAL",
    "concurrency": "INTEGER",
    "expires_at": "TEXT",
    "bucket": "REAL",
    "bucket_at": "REAL",
}


def _pepper(data_dir: Path) -> bytes:
    path = Path(data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    created_at: str
    revoked_at: str | None
    quota: int | None
    calls_used: int
    qps: float | None
    concurrency: int | None
    expires_at: str | None

    def wire(self) -> dict[str, object]:
        return dataclasses.asdict(self)


_INFO = ", ".join(f.name for f in dataclasses.fields(TokenInfo))  # the columns TokenInfo holds


@dataclasses.dataclass(frozen=True)
class Lease:
    """An admitted call: released, and metered, when its answer is sent."""

    token_id: int
    slot: int | None
    counted: bool = True  # False: a token without limits, counted when metering is written


def p50_ms(histogram: list[int]) -> float | None:
    """The median from latency bucket counts: the upper edge of the bucket holding it."""
    total = sum(histogram)
    if not total:
        return None
    seen = 0
    for edge, count in zip((*LATENCY_EDGES_MS, float("inf")), histogram):
        seen += count
        if seen * 2 >= total:
            return float(edge)
    return None


class Tokens:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._pepper = _pepper(catalog.data_dir)
        if catalog.dialect == "sqlite":  # PostgreSQL has these tables from its migrations
            db = catalog.db
            present = {row[1] for row in db.execute("PRAGMA table_info(tokens)")}
            with catalog.write() as w:
                for column, kind in LIMIT_COLUMNS.items():
                    if column not in present:  # a data dir from before limits existed
                        w.execute(f"ALTER TABLE tokens ADD COLUMN {column} {kind}")
            db.executescript(f"BEGIN; {SCHEMA} COMMIT;")
        self._for_update = " FOR UPDATE" if catalog.dialect == "postgresql" else ""
        self._metering = threading.Lock()
        self._pending: dict[tuple[int, str, str], list] = {}  # (token, day, endpoint) -> calls, errors, histogram
        self._uncounted: dict[int, int] = {}  # calls of tokens without limits, by token
        self._timer: threading.Timer | None = None

    def digest(self, token: str) -> str:
        return hmac.new(self._pepper, token.encode(), hashlib.sha256).hexdigest()

    # managing ------------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        quota: int | None = None,
        qps: float | None = None,
        concurrency: int | None = None,
        expires: dt.date | None = None,
    ) -> str:
        for label, value in (("quota", quota), ("qps", qps), ("concurrency", concurrency)):
            if value is not None and value <= 0:
                raise ValueError(f"{label} must be positive")
        token = "ss_" + secrets.token_urlsafe(24)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self.catalog.write() as db:
            db.execute(
                "INSERT INTO tokens (name, hash, created_at, quota, qps, concurrency, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, self.digest(token), now, quota, qps, concurrency, expires.isoformat() if expires else None),
            )
        return token

    def revoke(self, name: str) -> int:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self.catalog.write() as db:
            cur = db.execute("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name))
            return cur.rowcount

    def revoke_id(self, token_id: int) -> int:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self.catalog.write() as db:
            cur = db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id))
            return cur.rowcount

    def list(self) -> list[TokenInfo]:
        self.flush()  # what this process metered so far counts
        rows = self.catalog.db.execute(
            f"SELECT {_INFO} FROM tokens ORDER BY id"
        )
        return [TokenInfo(*row) for row in rows]

    def info(self, token: str) -> TokenInfo:
        self.flush()  # what this process metered so far counts
        row = self.catalog.db.execute(
            f"SELECT {_INFO} FROM tokens WHERE hash = ?",
            (self.digest(token),),
        ).fetchone()
        if row is None:
            raise KeyError("unknown token")
        return TokenInfo(*row)

    def usage(self, days: int = 30, name: str | None = None) -> list[dict[str, object]]:
        self.flush()  # what this process metered so far counts
        since = (dt.date.today() - dt.timedelta(days=days - 1)).isoformat()
        query = (
            "SELECT t.name, t.id, u.day, u.endpoint, u.calls, u.errors, u.latency FROM token_usage u "
            "JOIN tokens t ON t.id = u.token_id WHERE u.day >= ?"
        )
        params: list[object] = [since]
        if name is not None:
            query += " AND t.name = ?"
            params.append(name)
        rows = self.catalog.db.execute(query + " ORDER BY u.day, t.name, u.endpoint", params)
        return [
            {"token": n, "token_id": i, "day": day, "endpoint": ep, "calls": calls, "errors": errors,
             "p50_ms": p50_ms(json.loads(latency))}
            for n, i, day, ep, calls, errors, latency in rows
        ]

    # calls ---------------------------------------------------------------------------------------
    def valid(self, token: str | None) -> bool:
        """Known and not revoked (limits aside): the check that comes before any other."""
        return self._find(token) is not None

    def admit(self, token: str | None) -> Lease:
        """Check the token and its limits and count the call, in one transaction shared by all
        processes; raise the TMAPI error (401, 439, 503) that says why not."""
        if not token:
            raise Unauthorized("apiToken is missing")
        digest = self.digest(token)
        row = self.catalog.db.execute(
            "SELECT id, hash, quota, qps, concurrency, expires_at FROM tokens WHERE hash = ? AND revoked_at IS NULL",
            (digest,),
        ).fetchone()
        if row is not None and hmac.compare_digest(row[1], digest) and row[2] is row[3] is row[4] is None:
            expires_at = row[5]
            if expires_at and dt.date.fromisoformat(expires_at) < dt.date.today():
                raise QuotaExceeded(f"Subscription expired or insufficient balance: the token expired on {expires_at}")
            return Lease(row[0], None, counted=False)  # no limit to check: nothing to write now
        now = time.time()
        with self.catalog.write() as db:
            row = db.execute(
                "SELECT id, hash, quota, calls_used, qps, concurrency, expires_at, bucket, bucket_at "
                "FROM tokens WHERE hash = ? AND revoked_at IS NULL" + self._for_update,
                (digest,),
            ).fetchone()
            if row is None or not hmac.compare_digest(row[1], digest):
                raise Unauthorized(
                    "apiToken is not valid: check it or create one with `snapsource token create`"
                )
            token_id, _, quota, used, qps, concurrency, expires_at, bucket, bucket_at = row
            if expires_at and dt.date.fromisoformat(expires_at) < dt.date.today():
                raise QuotaExceeded(f"Subscription expired or insufficient balance: the token expired on {expires_at}")
            if quota is not None and used >= quota:
                raise QuotaExceeded(f"Subscription expired or insufficient balance: all {quota} calls are used")
            if qps is not None:
                burst = max(qps, 1.0)  # a token bucket: qps per second, at most one second's worth saved
                level = burst if bucket is None else min(burst, bucket + (now - bucket_at) * qps)
                if level < 1.0:
                    raise ConcurrencyLimit(retry_after=(1.0 - level) / qps)
                db.execute("UPDATE tokens SET bucket = ?, bucket_at = ? WHERE id = ?", (level - 1.0, now, token_id))
            slot = None
            if concurrency is not None:
                db.execute("DELETE FROM token_inflight WHERE token_id = ? AND started < ?", (token_id, now - STALE_SECONDS))
                running = db.execute("SELECT count(*) FROM token_inflight WHERE token_id = ?", (token_id,)).fetchone()[0]
                if running >= concurrency:
                    raise ConcurrencyLimit(retry_after=1.0)
                slot = db.execute(
                    "INSERT INTO token_inflight (token_id, started) VALUES (?, ?) RETURNING id", (token_id, now)
                ).fetchone()[0]
            db.execute("UPDATE tokens SET calls_used = calls_used + 1 WHERE id = ?", (token_id,))
        return Lease(token_id, slot)

    def release(self, lease: Lease, endpoint: str, status: int, seconds: float) -> None:
        """Free the call's concurrency slot now; meter it for its token, endpoint and day within
        FLUSH_SECONDS."""
        if lease.slot is not None:
            with self.catalog.write() as db:
                db.execute("DELETE FROM token_inflight WHERE id = ?", (lease.slot,))
        day = dt.date.today().isoformat()
        bucket = next((i for i, edge in enumerate(LATENCY_EDGES_MS) if seconds * 1000 <= edge), len(LATENCY_EDGES_MS))
        histogram = [0] * (len(LATENCY_EDGES_MS) + 1)
        histogram[bucket] = 1
        with self._metering:
            self._gather({(lease.token_id, day, endpoint): [1, int(status >= 400), histogram]}, {} if lease.counted else {lease.token_id: 1})
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_SECONDS, self._flush_later)
                self._timer.daemon = True
                self._timer.start()

    def _gather(self, pending: dict[tuple[int, str, str], list], uncounted: dict[int, int]) -> None:
        """Add metering to what waits to be written (hold `_metering`)."""
        for key, (calls, errors, histogram) in pending.items():
            entry = self._pending.setdefault(key, [0, 0, [0] * len(histogram)])
            entry[0] += calls
            entry[1] += errors
            entry[2] = [a + b for a, b in zip(entry[2], histogram)]
        for token_id, calls in uncounted.items():
            self._uncounted[token_id] = self._uncounted.get(token_id, 0) + calls

    def _flush_later(self) -> None:
        try:
            self.flush()
        except Exception:  # kept for the next flush; a later call or close() writes it
            log.exception("writing token metering failed")

    def flush(self) -> None:
        """Write the metering gathered so far, in one transaction (kept for later if it fails)."""
        with self._metering:
            pending, uncounted = self._pending, self._uncounted
            self._pending, self._uncounted = {}, {}
            if self._timer is not None and self._timer is not threading.current_thread():
                self._timer.cancel()
            self._timer = None
        if not pending and not uncounted:
            return
        try:
            with self.catalog.write() as db:
                self.catalog.lock(db, METERING_LOCK)  # servers flushing the same day's rows take turns
                for (token_id, day, endpoint), (calls, errors, histogram) in pending.items():
                    row = db.execute(
                        "SELECT latency FROM token_usage WHERE token_id = ? AND day = ? AND endpoint = ?",
                        (token_id, day, endpoint),
                    ).fetchone()
                    if row:
                        histogram = [a + b for a, b in zip(json.loads(row[0]), histogram)]
                    db.execute(
                        "INSERT INTO token_usage (token_id, day, endpoint, calls, errors, latency) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (token_id, day, endpoint) DO UPDATE SET calls = token_usage.calls + excluded.calls, "
                        "errors = token_usage.errors + excluded.errors, latency = excluded.latency",
                        (token_id, day, endpoint, calls, errors, json.dumps(histogram)),
                    )
                for token_id, calls in uncounted.items():
                    db.execute("UPDATE tokens SET calls_used = calls_used + ? WHERE id = ?", (calls, token_id))
        except Exception:
            with self._metering:  # try again with the next flush
                self._gather(pending, uncounted)
            raise

    def _find(self, token: str | None) -> int | None:
        if not token:
            return None
        digest = self.digest(token)
        row = self.catalog.db.execute(
            "SELECT id, hash FROM tokens WHERE hash = ? AND revoked_at IS NULL", (digest,)
        ).fetchone()
        return row[0] if row and hmac.compare_digest(row[1], digest) else None
