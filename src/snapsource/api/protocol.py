"""uvicorn's HTTP protocol (httptools) with a deadline and a size limit for a request's headers.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but nothing bounds how
long a client takes to send a request line and its headers, or how many bytes of them it sends
(llhttp sets no limit; uvicorn keeps every header): a slow client holds its connection, and a slot
of `limit_concurrency`, as long as it likes. `serve` runs this class in every worker
(`http="snapsource.api.protocol:HeaderLimits"`); the limits are the settings `header_timeout` and
`max_header_bytes`, read once per process.
"""

from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from snapsource.config import Settings


@functools.cache
def _limits() -> tuple[float, int]:
    settings = Settings.load()
    return settings.header_timeout, settings.max_header_bytes


class HeaderLimits(HttpToolsProtocol):
    """A request's headers arrive within `header_timeout` seconds of its first byte (of the
    connection, for its first request) and within `max_header_bytes`; else the connection is
    answered 408 or 431 and closed, as nginx does."""

    _header_timer: asyncio.TimerHandle | None = None
    _read = 0  # bytes read while this request's headers were incomplete
    _parsed = 0  # bytes of its request line and headers, as parsed
    _in_headers = True
    _oversized = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Two counts: the bytes read while the headers are still incomplete (a header that
        never ends), and the headers as parsed (a read that completes them may also carry the
        start of the body, which is the body limit's to count)."""
        if self._in_headers:
            self._read += len(data)
        super().data_received(data)
        limit = _limits()[1]
        if self._oversized or (self._in_headers and self._read > limit):
            self._refuse(431, "Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:  # the next request on a kept-alive connection
            self._start_headers()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_timer()
        self._in_headers = False
        if self._parsed > _limits()[1]:
            self._oversized = True  # no request starts; data_received answers 431
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._oversized:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._oversized:
            super().on_message_complete()

    def _start_headers(self) -> None:
        self._in_headers, self._read, self._parsed = True, 0, 0
        self._stop_timer()
        self._header_timer = self.loop.call_later(_limits()[0], self._refuse, 408, "Request Timeout")

    def _stop_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: int, reason: str) -> None:
        """A plain-text answer and the connection closed: no request was read, so no app ran."""
        self._stop_timer()
        if self.transport.is_closing():
            return
        why = "took too long to arrive" if status == 408 else "are too large"
        body = f"{reason}: the request's line and headers {why}\n".encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        self.transport.close()
