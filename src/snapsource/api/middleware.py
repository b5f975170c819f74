"""What wraps every request: body limits (BodyLimit), security headers (SecurityHeaders), metrics
and token metering (Measure), and access logs without secrets (MaskToken)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping
from urllib.parse import unquote_plus

from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapsource import metrics
from snapsource.errors import envelope
from snapsource.resources import Resources

_SECRET_PARAM = re.compile(r"(apiToken=)[^&\s\"]+", re.IGNORECASE)
_TOKEN_SHAPE = re.compile(r"ss_[A-Za-z0-9_-]{20,}")  # accounts.tokens: "ss_" + token_urlsafe(24)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def mask_secrets(text: str) -> str:
    """`text` (a request line's path and query) with every apiToken value and every token-shaped
    string masked, however it was percent-encoded (`api%54oken=`, `apiToken%3D` inside another
    parameter's value, encoded twice). A line that needed decoding to mask is logged decoded, with
    control characters escaped so that it stays one line."""
    decoded = text
    for _ in range(4):  # %2554 -> %54 -> T: each round undoes one encoding
        once = unquote_plus(decoded)
        if once == decoded:
            break
        decoded = once
    cleaned = _TOKEN_SHAPE.sub("ss_***", _SECRET_PARAM.sub(r"\1***", decoded))
    if cleaned == decoded:
        return text
    if decoded == text:
        return cleaned
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", cleaned)


class MaskToken(logging.Filter):
    """Logs never show an apiToken (installed in every worker process by create_app)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(mask_secrets(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = mask_secrets(record.msg)
        return True


def mask_access_log() -> None:
    """Once per process, however many apps it creates: uvicorn's access and error logs, and ours."""
    for name in ("uvicorn.access", "uvicorn.error", "snapsource"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskToken) for f in logger.filters):
            logger.addFilter(MaskToken())


async def _answer(send: Send, status: int, msg: str) -> None:
    """TMAPI's envelope, sent before the app ran (so no route, no handler); the connection closes,
    since the body it did not read stays unread."""
    body = json.dumps(envelope(status, msg)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Every request body is counted while it streams in and refused past its path's limit, with
    TMAPI's envelope: a declared Content-Length over it is answered 413 before the app runs, a body
    that grows past it is cut off at the limit, and one still arriving `timeout` seconds after it
    was first asked for is answered 408. `limits` names the routes that read their own bodies as
    a stream (uploads, catalog batches and files): they check their credentials and their own cap
    first, with their own message, and this is the backstop behind them (the limit plus headroom,
    no early answer). Every other path gets `default`, which a JSON body of fields fits.

    Starlette's RequestBodyLimitMiddleware counts too, but it answers plain text and replaces the
    route's own answer (a 401 included) whenever Content-Length is over its limit."""

    HEADROOM = 64 * 1024

    def __init__(self, app: ASGIApp, limits: Mapping[str, int], default: int, timeout: float) -> None:
        self.app = app
        self.limits = limits
        self.default = default
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        own = self.limits.get(scope["path"])
        limit = self.default if own is None else own + self.HEADROOM
        declared = Headers(scope=scope).get("content-length", "")
        if own is None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(f"is {int(declared):,} bytes", limit, named=True))
            return
        total, complete, deadline = 0, False, 0.0

        async def counted() -> Message:
            nonlocal total, complete, deadline
            if complete:  # the body is in: what follows is the disconnect, whenever it comes
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.timeout:g} s (the body_timeout setting)"
                ) from None
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    raise HTTPException(413, _too_large("is over that", limit, named=own is None))
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, counted, send)


def _too_large(size: str, limit: int, named: bool) -> str:
    setting = " (the max_body_bytes setting)" if named else ""
    return f"the request body {size}: this route takes at most {limit:,} bytes{setting}"


class SecurityHeaders:
    """The same protective headers on every answer, whichever route, mount or error made it: a
    page (HTML) gets `page_policy` unless its route set its own, anything else a policy that runs
    nothing and cannot be framed. Browsers then never sniff a type, frame a page or send a Referer."""

    def __init__(self, app: ASGIApp, page_policy: str) -> None:
        self.app = app
        self.page_policy = page_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                html = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("content-security-policy", self.page_policy if html else NOTHING_RUNS)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("x-frame-options", "DENY")
                headers.setdefault("referrer-policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, sending)


NOTHING_RUNS = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class Measure:
    """Metrics for every answer; an admitted token call is released and metered here, so a
    failure anywhere still frees its concurrency slot. A plain ASGI middleware: Starlette's
    BaseHTTPMiddleware costs a task and a stream per request."""

    def __init__(self, app: ASGIApp, resources: Resources) -> None:
        self.app = app
        self.resources = resources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        done = False

        async def finish() -> None:
            """Once per request, before its last byte leaves: a client that reads its usage
            right after an answer finds that answer counted."""
            nonlocal done
            if done:
                return
            done = True
            label = getattr(scope.get("route"), "path", "other")
            seconds = time.perf_counter() - started
            metrics.REQUESTS.labels(label, str(status)).inc()
            metrics.LATENCY.labels(label).observe(seconds)
            lease = scope.get("state", {}).get("lease")
            if lease is not None:
                await run_in_threadpool(self.resources.tokens.release, lease, label, status, seconds)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await finish()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            await finish()
