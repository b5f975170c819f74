"""What wraps every request: metrics and token metering (Measure), and masked access logs."""

from __future__ import annotations

import logging
import re
import time

from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapsource import metrics
from snapsource.resources import Resources


class MaskToken(logging.Filter):
    """Access logs never show an apiToken (installed in every worker process by create_app)."""

    PATTERN = re.compile(r"(apiToken=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def mask_access_log() -> None:
    """Once per process, however many apps it creates."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, MaskToken) for f in access.filters):
        access.addFilter(MaskToken())


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
