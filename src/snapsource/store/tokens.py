"""The token tables, read and written for accounts/tokens.py, which decides what to read and write.

Each method is one statement or one transaction, in the SQL both databases speak. Admission is a
transaction the caller decides inside (`TokenTable.admission`): the token's row stays locked
(`BEGIN IMMEDIATE` in SQLite, `FOR UPDATE` in PostgreSQL) while its limits are checked, and what
the call changes (the rate bucket, a concurrency slot, calls used) is committed together, or not
at all when the caller refuses it by raising. The tables come from the migrations (catalog.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from snapsource.store.catalog import Catalog

METERING_LOCK = 0x6D657465  # PostgreSQL advisory lock of metering flushes: "mete"


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its digest."""

    id: int
    name: str
    created_at: str
    revoked_at: str | None
    quota: int | None
    calls_used: int
    qps: float | None
    concurrency: int | None
    expires_at: str | None
    scopes: str = "search"  # space-separated: search, catalog, upstream

    def may(self, scope: str) -> bool:
        return self.revoked_at is None and scope in self.scopes.split()

    def state(self, today: dt.date) -> str:
        """revoked; expired: past its last day, so its calls are answered 439; else active."""
        if self.revoked_at:
            return "revoked"
        if self.expires_at and dt.date.fromisoformat(self.expires_at) < today:
            return "expired"
        return "active"

    def wire(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "scopes": self.scopes.split()}


@dataclasses.dataclass(frozen=True)
class TokenLimits:
    """An active token's limits and their counters: what admitting a call reads."""

    id: int
    hash: str
    quota: int | None
    calls_used: int
    qps: float | None
    concurrency: int | None
    expires_at: str | None
    bucket: float | None
    bucket_at: float | None
    scopes: str = "search"

    @property
    def unlimited(self) -> bool:
        """No quota, rate or concurrency: nothing to count at once (expiry needs no writing)."""
        return self.quota is None and self.qps is None and self.concurrency is None


@dataclasses.dataclass(frozen=True)
class Usage:
    """Metering of one token, endpoint and day; `latency` holds the histogram's bucket counts."""

    token: str
    token_id: int
    day: str
    endpoint: str
    calls: int
    errors: int
    latency: list[int]


# (token id, day, endpoint) -> calls, errors, latency bucket counts
Metering = Mapping[tuple[int, str, str], Sequence[Any]]

_INFO = ", ".join(f.name for f in dataclasses.fields(TokenInfo))
_LIMITS = ", ".join(f.name for f in dataclasses.fields(TokenLimits))


class Admission:
    """The transaction admitting one call: the token's locked row (None when the token is unknown
    or revoked) and what the call changes, committed when the `with` block ends without error."""

    def __init__(self, db: Any, token: TokenLimits | None) -> None:  # a sqlite3.Connection or a postgres.Session
        self._db = db
        self.token = token

    @property
    def _id(self) -> int:
        if self.token is None:
            raise LookupError("no token to admit")
        return self.token.id

    def set_bucket(self, level: float, at: float) -> None:
        """The rate bucket's level after this call, and when."""
        self._db.execute("UPDATE tokens SET bucket = ?, bucket_at = ? WHERE id = ?", (level, at, self._id))

    def running(self, since: float) -> int:
        """The token's calls in flight, after forgetting those started before `since` (their
        process died without releasing them)."""
        self._db.execute("DELETE FROM token_inflight WHERE token_id = ? AND started < ?", (self._id, since))
        return int(self._db.execute("SELECT count(*) FROM token_inflight WHERE token_id = ?", (self._id,)).fetchone()[0])

    def hold(self, now: float) -> int:
        """A concurrency slot for this call; `TokenTable.free` gives it back."""
        row = self._db.execute("INSERT INTO token_inflight (token_id, started) VALUES (?, ?) RETURNING id", (self._id, now))
        return int(row.fetchone()[0])

    def count(self) -> None:
        """One more call against the quota."""
        self._db.execute("UPDATE tokens SET calls_used = calls_used + 1 WHERE id = ?", (self._id,))


class TokenTable:
    """The tokens, their calls in flight and their usage, in the catalog's database."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._for_update = " FOR UPDATE" if catalog.dialect == "postgresql" else ""

    # managing ------------------------------------------------------------------------------------
    def add(
        self,
        name: str,
        digest: str,
        created_at: str,
        *,
        quota: int | None,
        qps: float | None,
        concurrency: int | None,
        expires_at: str | None,
        scopes: str = "search",
    ) -> None:
        with self.catalog.write() as db:
            db.execute(
                "INSERT INTO tokens (name, hash, created_at, quota, qps, concurrency, expires_at, scopes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, digest, created_at, quota, qps, concurrency, expires_at, scopes),
            )

    def revoke_name(self, name: str, at: str) -> int:
        """Revoke the active tokens of this name; how many there were."""
        with self.catalog.write() as db:
            return db.execute("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (at, name)).rowcount

    def revoke_id(self, token_id: int, at: str) -> int:
        """Revoke this token if it is active: 1, else 0."""
        with self.catalog.write() as db:
            return db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, token_id)).rowcount

    def all(self) -> list[TokenInfo]:
        return [TokenInfo(*row) for row in self.catalog.db.execute(f"SELECT {_INFO} FROM tokens ORDER BY id")]

    def info(self, digest: str) -> TokenInfo | None:
        """The token with this digest, revoked or not."""
        row = self.catalog.db.execute(f"SELECT {_INFO} FROM tokens WHERE hash = ?", (digest,)).fetchone()
        return TokenInfo(*row) if row else None

    # calls ---------------------------------------------------------------------------------------
    def active(self, digest: str) -> TokenLimits | None:
        """The unrevoked token with this digest, read outside any transaction."""
        row = self.catalog.db.execute(f"SELECT {_LIMITS} FROM tokens WHERE hash = ? AND revoked_at IS NULL", (digest,)).fetchone()
        return TokenLimits(*row) if row else None

    @contextmanager
    def admission(self, digest: str) -> Iterator[Admission]:
        """One write transaction with the unrevoked token of this digest read and locked; an
        exception in the `with` block rolls back all it changed."""
        with self.catalog.write() as db:
            row = db.execute(
                f"SELECT {_LIMITS} FROM tokens WHERE hash = ? AND revoked_at IS NULL" + self._for_update, (digest,)
            ).fetchone()
            yield Admission(db, TokenLimits(*row) if row else None)

    def free(self, slot: int) -> None:
        """Give a concurrency slot back (`Admission.hold`)."""
        with self.catalog.write() as db:
            db.execute("DELETE FROM token_inflight WHERE id = ?", (slot,))

    # metering ------------------------------------------------------------------------------------
    def usage(self, since: str, name: str | None = None) -> list[Usage]:
        """Metering from day `since` on, of every token or those with this name."""
        query = (
            "SELECT t.name, t.id, u.day, u.endpoint, u.calls, u.errors, u.latency FROM token_usage u "
            "JOIN tokens t ON t.id = u.token_id WHERE u.day >= ?"
        )
        params: list[object] = [since]
        if name is not None:
            query += " AND t.name = ?"
            params.append(name)
        rows = self.catalog.db.execute(query + " ORDER BY u.day, t.name, u.endpoint", params)
        return [Usage(n, i, day, ep, calls, errors, json.loads(latency)) for n, i, day, ep, calls, errors, latency in rows]

    def add_usage(self, metering: Metering, uncounted: Mapping[int, int]) -> None:
        """Add metering to the stored counts, and calls not counted at admission to calls used, in
        one transaction. Servers adding to the same day's rows take turns (the histogram is read,
        then written)."""
        with self.catalog.write() as db:
            self.catalog.lock(db, METERING_LOCK)
            for (token_id, day, endpoint), (calls, errors, histogram) in metering.items():
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
