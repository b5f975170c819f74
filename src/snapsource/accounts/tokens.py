"""API tokens: secrets shown once, their limits, and what they were used for.

A token is stored only as a peppered HMAC-SHA256 digest; the pepper is a per-install secret in the
data dir (``secret.key``, mode 0600), so a copy of the database alone does not allow guessing
tokens offline. Each token may carry a calls quota, an expiry date, a requests-per-second rate and
a concurrency limit. Their state lives in the catalog database (SQLite or PostgreSQL), not in
process memory, so the limits hold across every worker process and every server sharing that
database: for a token with limits, one transaction admits a call (checks and counts; the token's
row is locked for it, by `BEGIN IMMEDIATE` in SQLite and `FOR UPDATE` in PostgreSQL) and, with a
concurrency limit, a second frees its slot. This module decides; store/tokens.py reads and writes.

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
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from snapsource.errors import ConcurrencyLimit, Forbidden, QuotaExceeded, Unauthorized
from snapsource.store.catalog import Catalog
from snapsource.store.tokens import Metering, TokenInfo, TokenTable

# the TMAPI search API; the catalog API (offers and imports); choosing `source=` of a search (docs/upstream.md)
SCOPES = ("search", "catalog", "upstream")
COUNTED = "upstream:"  # `count`'s events, kept apart from calls in usage
UNKNOWN = "apiToken is not valid: check it or create one with `snapsource token create`"
FLUSH_SECONDS = 1.0  # metering is written at most this long after the call
STALE_SECONDS = 300.0  # an in-flight call older than this was lost with its process
LATENCY_EDGES_MS = (5, 10, 25, 50, 100, 150, 250, 500, 1000, 2500, 5000, 15000)
log = logging.getLogger("snapsource.tokens")
UsageRows = list[dict[str, object]]  # named here: inside Tokens, `list` is its method


def scopes_of(scopes: Iterable[str]) -> list[str]:
    """The scopes a token may be given, once each, in order; ValueError says what is wrong."""
    wanted = list(dict.fromkeys(scopes))
    unknown = [scope for scope in wanted if scope not in SCOPES]
    if unknown or not wanted:
        raise ValueError(f"scopes are {', '.join(SCOPES)}; not {', '.join(unknown) or 'none'}")
    if "upstream" in wanted and "search" not in wanted:
        raise ValueError("the upstream scope chooses the source of searches: give it with the search scope")
    return wanted


def _pepper(data_dir: Path) -> bytes:
    path = Path(data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


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
        self.table = TokenTable(catalog)
        self._pepper = _pepper(catalog.data_dir)
        self._metering = threading.Lock()
        # one flush at a time: a read that flushes first must not pass a flush still writing what
        # it took (it would read the counts without that write: a call just answered not counted)
        self._flushing = threading.Lock()
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
        scopes: Iterable[str] = ("search",),
    ) -> str:
        """A new token's secret; `scopes`: search (the TMAPI API), catalog (the catalog API),
        upstream (with search: choosing a search's source). `expires`: its last day (the CLI and
        the admin API refuse a past one; tests make expired tokens here)."""
        for label, value in (("quota", quota), ("qps", qps), ("concurrency", concurrency)):
            if value is not None and value <= 0:
                raise ValueError(f"{label} must be positive")
        wanted = scopes_of(scopes)
        token = "ss_" + secrets.token_urlsafe(24)
        self.table.add(
            name,
            self.digest(token),
            _now(),
            quota=quota,
            qps=qps,
            concurrency=concurrency,
            expires_at=expires.isoformat() if expires else None,
            scopes=" ".join(wanted),
        )
        return token

    def revoke(self, name: str) -> int:
        return self.table.revoke_name(name, _now())

    def revoke_id(self, token_id: int) -> int:
        return self.table.revoke_id(token_id, _now())

    def list(self) -> list[TokenInfo]:
        self.flush()  # what this process metered so far counts
        return self.table.all()

    def info(self, token: str) -> TokenInfo:
        self.flush()  # what this process metered so far counts
        info = self.table.info(self.digest(token))
        if info is None:
            raise KeyError("unknown token")
        return info

    def usage(self, days: int = 30, name: str | None = None, *, counts: bool = False) -> UsageRows:
        """Calls per token, endpoint and day; with `counts`, also the events `count` keeps
        (upstream calls made and saved: their endpoint names start with "upstream:")."""
        self.flush()  # what this process metered so far counts
        since = (dt.date.today() - dt.timedelta(days=days - 1)).isoformat()
        return [
            {
                "token": u.token,
                "token_id": u.token_id,
                "day": u.day,
                "endpoint": u.endpoint,
                "calls": u.calls,
                "errors": u.errors,
                "p50_ms": p50_ms(u.latency),
            }
            for u in self.table.usage(since, name)
            if counts or not u.endpoint.startswith(COUNTED)
        ]

    # calls ---------------------------------------------------------------------------------------
    def allows(self, token: str | None, scope: str) -> bool:
        """An active token with this scope (limits aside; calls are checked by `admit`)."""
        if not token:
            return False
        found = self.table.info(self.digest(token))
        return found is not None and found.may(scope)

    def valid(self, token: str | None) -> bool:
        """Known and not revoked (limits aside): the check that comes before any other."""
        return self._find(token) is not None

    def refusal(self, token: str | None, unknown: str = UNKNOWN) -> Unauthorized:
        """Why this token is not valid: missing, revoked (when the store knows it) or unknown (what
        `unknown` says: a route that also takes another credential names it)."""
        if not token:
            return Unauthorized("apiToken is missing")
        known = self.table.info(self.digest(token))
        if known is not None and known.revoked_at:
            return Unauthorized(f"this apiToken was revoked on {known.revoked_at[:10]}: create a new one")
        return Unauthorized(unknown)

    def admit(self, token: str | None, scope: str = "search") -> Lease:
        """Check the token, its scope and its limits and count the call, in one transaction shared
        by all processes; raise the TMAPI error (401, 403, 439, 503) that says why not. The search
        API answers a token without the search scope with 401, as TMAPI knows no 403."""
        if not token:
            raise Unauthorized("apiToken is missing")
        digest = self.digest(token)
        found = self.table.active(digest)
        if found is None or not hmac.compare_digest(found.hash, digest):
            raise self.refusal(token)
        if scope not in found.scopes.split():
            if scope == "search":
                raise Unauthorized(
                    f"this apiToken lacks the search scope (it has {', '.join(found.scopes.split())}): create one with "
                    "`snapsource token create --scope search`"
                )
            raise Forbidden(
                f"this token lacks the {scope} scope (it has {', '.join(found.scopes.split())}): "
                f"create one with `snapsource token create --scope {scope}`"
            )
        if found.unlimited:
            _check_expiry(found.expires_at)
            return Lease(found.id, None, counted=False)  # no limit to check: nothing to write now
        now = time.time()
        with self.table.admission(digest) as call:  # raising refuses the call and undoes its writes
            limits = call.token
            if limits is None or not hmac.compare_digest(limits.hash, digest):
                raise self.refusal(token)  # revoked since it was read
            _check_expiry(limits.expires_at)
            if limits.quota is not None and limits.calls_used >= limits.quota:
                raise QuotaExceeded(f"Subscription expired or insufficient balance: all {limits.quota} calls are used")
            if (qps := limits.qps) is not None:
                burst = max(qps, 1.0)  # a token bucket: qps per second, at most one second's worth saved
                bucket, bucket_at = limits.bucket, limits.bucket_at
                level = burst if bucket is None or bucket_at is None else min(burst, bucket + (now - bucket_at) * qps)
                if level < 1.0:
                    raise ConcurrencyLimit(retry_after=(1.0 - level) / qps)
                call.set_bucket(level - 1.0, now)
            slot = None
            if limits.concurrency is not None:
                if call.running(since=now - STALE_SECONDS) >= limits.concurrency:
                    raise ConcurrencyLimit(retry_after=1.0)
                slot = call.hold(now)
            call.count()
        return Lease(limits.id, slot)

    def release(self, lease: Lease, endpoint: str, status: int, seconds: float) -> None:
        """Free the call's concurrency slot now; meter it for its token, endpoint and day within
        FLUSH_SECONDS."""
        if lease.slot is not None:
            self.table.free(lease.slot)
        day = dt.date.today().isoformat()
        bucket = next((i for i, edge in enumerate(LATENCY_EDGES_MS) if seconds * 1000 <= edge), len(LATENCY_EDGES_MS))
        histogram = [0] * (len(LATENCY_EDGES_MS) + 1)
        histogram[bucket] = 1
        self._meter(
            {(lease.token_id, day, endpoint): [1, int(status >= 400), histogram]}, {} if lease.counted else {lease.token_id: 1}
        )

    def count(self, token_id: int, what: str) -> None:
        """One event of a call that is not a call of ours (an upstream call made, one saved), in
        the token's usage for the day under `what`, written with the metering."""
        day = dt.date.today().isoformat()
        self._meter({(token_id, day, what): [1, 0, [0] * (len(LATENCY_EDGES_MS) + 1)]}, {})

    def _meter(self, pending: Metering, uncounted: dict[int, int]) -> None:
        with self._metering:
            self._gather(pending, uncounted)
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_SECONDS, self._flush_later)
                self._timer.daemon = True
                self._timer.start()

    def _gather(self, pending: Metering, uncounted: dict[int, int]) -> None:
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
        """Write the metering gathered so far, in one transaction (kept for later if it fails); it
        returns once every flush begun before it has written too."""
        with self._flushing:
            with self._metering:
                pending, uncounted = self._pending, self._uncounted
                self._pending, self._uncounted = {}, {}
                if self._timer is not None and self._timer is not threading.current_thread():
                    self._timer.cancel()
                self._timer = None
            if not pending and not uncounted:
                return
            try:
                self.table.add_usage(pending, uncounted)
            except Exception:
                with self._metering:  # try again with the next flush
                    self._gather(pending, uncounted)
                raise

    def _find(self, token: str | None) -> int | None:
        if not token:
            return None
        digest = self.digest(token)
        found = self.table.active(digest)
        return found.id if found is not None and hmac.compare_digest(found.hash, digest) else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _check_expiry(expires_at: str | None) -> None:
    """439 after the token's last day."""
    if expires_at and dt.date.fromisoformat(expires_at) < dt.date.today():
        raise QuotaExceeded(f"Subscription expired or insufficient balance: the token expired on {expires_at}")
