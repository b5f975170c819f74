"""The upstream's two endpoints, called as TMAPI documents them, and what makes the calls safe.

`Connector.convert` shows the upstream a query photo (by its URL under `public_url`) and gets the
path its search takes; `Connector.search` asks `GET /1688/search/image` with TMAPI's parameters
only. The SDK (`snapsource.client.Client`) makes the calls: the same envelopes, and 503 retried
with backoff (at most `upstream_retries` times, never waiting more than 5 s a try). Every failure
comes out as one `UpstreamError` with TMAPI's code: the upstream's own (417, 439, 499, 503, 422),
499 for a timeout, 417 for an upstream that cannot be reached or answers something that is not
TMAPI's envelope. A `Breaker` stops calling an upstream that keeps failing.

The upstream's token travels in the query string (TMAPI's `apiToken`), so every message that
could carry a URL is scrubbed of it, and httpx's request log masks it (`MaskSecrets`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from snapsource.client import CONVERT, SEARCH, ApiError, Client, NotTmapi
from snapsource.config import Settings
from snapsource.errors import UpstreamError
from snapsource.offer import Item

UNREACHABLE = 417  # TMAPI's "the data could not be retrieved; try again"
TIMED_OUT = 499
BUSY = 503  # TMAPI's "too many concurrent requests": here, this server's own calls in flight
LONGEST_WAIT = 5.0  # seconds between two tries of a 503, whatever its Retry-After says
log = logging.getLogger("snapsource.upstream")
_TOKEN_PARAM = re.compile(r"(apiToken=)[^&\s\"']+")


def is_upstream_path(img_url: str) -> bool:
    """An img_url the upstream takes as it is: a path its convert_url gave (`/search/imgextra/...`),
    or a photo on Alibaba's image hosts (the only ones TMAPI reads without conversion)."""
    url = urlsplit(img_url.strip())
    if not url.netloc:
        return url.path.startswith("/search/")
    return url.scheme in ("http", "https") and (url.hostname or "").endswith(".alicdn.com")


class MaskSecrets(logging.Filter):
    """httpx logs each request's URL, with the upstream's apiToken in it: masked here."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = scrub(text, self.secret)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def scrub(text: str, secret: str) -> str:
    """`text` without the secret, and without any apiToken= value."""
    text = _TOKEN_PARAM.sub(r"\1***", text)
    return text.replace(secret, "***") if secret else text


class Breaker:
    """Closed while calls succeed; open for `seconds` after `failures` failures in a row, when no
    call is made; then one trial call at a time decides (half-open). Per server process."""

    def __init__(self, failures: int, seconds: float) -> None:
        self.failures, self.seconds = max(1, failures), seconds
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._open_until = 0.0
        self._trial = False
        self.last_error: str | None = None

    def wait(self) -> float:
        """0 when a call may be made now; else the seconds until the next trial."""
        with self._lock:
            now = time.monotonic()
            if self._in_a_row < self.failures:
                return 0.0
            if now < self._open_until or self._trial:
                return max(self._open_until - now, 1.0)
            self._trial = True  # this caller makes the trial call
            return 0.0

    def succeeded(self) -> None:
        with self._lock:
            self._in_a_row, self._trial, self.last_error = 0, False, None

    def failed(self, error: str) -> None:
        with self._lock:
            self._in_a_row += 1
            self._trial = False
            self.last_error = error
            if self._in_a_row >= self.failures:
                self._open_until = time.monotonic() + self.seconds

    def state(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            closed = self._in_a_row < self.failures
            return {
                "state": "closed" if closed else ("open" if now < self._open_until else "half-open"),
                "failures_in_a_row": self._in_a_row,
                "retry_in_s": 0.0 if closed else round(max(0.0, self._open_until - now), 1),
                "last_error": self.last_error,
            }


@dataclasses.dataclass
class Connector:
    settings: Settings
    client: Client
    breaker: Breaker
    in_flight: threading.BoundedSemaphore = dataclasses.field(default_factory=lambda: threading.BoundedSemaphore(8))

    @classmethod
    def open(cls, settings: Settings, transport: httpx.BaseTransport | None = None) -> Connector:
        client = Client(
            settings.upstream,
            settings.upstream_token,
            timeout=settings.upstream_timeout,
            retries=settings.upstream_retries,
            retried=(503,),  # 499 means the upstream took too long already: not again within one search
            longest_wait=LONGEST_WAIT,
            transport=transport,
        )
        logger = logging.getLogger("httpx")
        if not any(isinstance(f, MaskSecrets) and f.secret == settings.upstream_token for f in logger.filters):
            logger.addFilter(MaskSecrets(settings.upstream_token))
        breaker = Breaker(settings.upstream_breaker, settings.upstream_breaker_seconds)
        return cls(settings, client, breaker, threading.BoundedSemaphore(max(1, settings.upstream_concurrency)))

    def close(self) -> None:
        self.client.close()

    def convert(self, photo_url: str, sent: Callable[[], None] = lambda: None) -> str:
        """The upstream's path for the photo at `photo_url` (which it fetches). `sent` is called
        when the request really goes out (not when the breaker or the bound keeps it back)."""
        data = self._call("POST", CONVERT, sent, json={"url": photo_url, "search_api_endpoint": "/search/image"})
        path = data.get("image_url") if isinstance(data, dict) else None
        if not isinstance(path, str) or not path:
            raise self._failed(UNREACHABLE, "upstream convert_url answered no image_url")
        return path

    def search(self, img_url: str, params: dict[str, str], sent: Callable[[], None] = lambda: None) -> dict[str, Any]:
        """One page of the upstream's search, its `data` as sent; checked to be a page of items."""
        data = self._call("GET", SEARCH, sent, params={**params, "img_url": img_url})
        problem = _not_a_page(data)
        if problem:
            raise self._failed(UNREACHABLE, f"upstream answered a malformed page: {problem}")
        return data

    def _call(self, method: str, path: str, sent: Callable[[], None], **kwargs: Any) -> Any:
        wait = self.breaker.wait()
        if wait:
            raise UpstreamError(
                UNREACHABLE, f"upstream unavailable after repeated failures: not asked for {wait:.0f} s more", retry_after=wait
            )
        if not self.in_flight.acquire(blocking=False):  # not queued: a waiting search holds a server thread
            raise UpstreamError(BUSY, f"upstream busy: {self.settings.upstream_concurrency} calls in flight already")
        try:
            sent()
            data = self.client.call(method, path, **kwargs)
        except NotTmapi as exc:
            raise self._failed(UNREACHABLE, "upstream answered no TMAPI page", exc.msg) from None
        except ApiError as exc:
            if exc.code in (401, 403):  # our upstream_token: the operator's to fix, not the client's
                raise self._failed(
                    UNREACHABLE, "upstream unavailable: it refused this server's credentials", f"{exc.code}: {exc.msg}"
                ) from None
            raise self._failed(exc.code, f"upstream: {exc.msg}", count=exc.code != 422) from None
        except httpx.TimeoutException:
            raise self._failed(TIMED_OUT, f"upstream took longer than {self.settings.upstream_timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise self._failed(UNREACHABLE, "upstream could not be reached", f"{type(exc).__name__}: {exc}") from None
        finally:
            self.in_flight.release()
        self.breaker.succeeded()
        return data

    def _failed(self, code: int, msg: str, detail: str = "", *, count: bool = True) -> UpstreamError:
        """The error to raise: `msg` for the client; `detail` (the operator's: a refused token,
        the connection's error) goes to the log and the breaker's last_error, scrubbed of the
        token. Counted by the breaker unless it is the request's fault (422)."""
        secret = self.settings.upstream_token
        msg = scrub(msg, secret)[:500]
        full = scrub(f"{msg} ({detail})" if detail else msg, secret)[:500]
        log.warning("upstream failed (%s): %s", code, full)
        if count:
            self.breaker.failed(f"{code}: {full}")
        else:
            self.breaker.succeeded()
        return UpstreamError(code, msg)


def _not_a_page(data: Any) -> str:
    """Why `data` is not a page of TMAPI's search ('' when it is). An item out of the item schema's
    limits (a sales count past 10^15, a title of megabytes) is left out of the page, logged: the
    others answer and land; a page whose every item is broken is no page."""
    if not isinstance(data, dict):
        return f"data is {type(data).__name__}, not an object"
    if not isinstance(data.get("items"), list):
        return "no items list"
    if not isinstance(data.get("total_count"), int):
        return "no total_count"
    kept, first = [], ""
    for at, item in enumerate(data["items"]):
        try:
            Item.model_validate(item)
        except ValidationError as exc:
            error = exc.errors()[0]
            first = first or f"item {at}: {'.'.join(map(str, error['loc']))}: {error['msg']}"[:300]
            continue
        kept.append(item)
    if data["items"] and not kept:
        return first
    if len(kept) < len(data["items"]):
        log.warning("upstream page: %d of %d items left out (%s)", len(data["items"]) - len(kept), len(data["items"]), first)
        data["items"] = kept
    return ""
