"""Which answer a search gets: the local catalog's, or the upstream's (called, or stored).

The mode (`upstream_mode`, or a request's `source=` for a token with the upstream scope):
- off / `source=local`: the local answer;
- fallback / `source=auto`: the local answer when it is good enough, else the upstream's. Good
  enough: its first page holds a `same` match, or is full (page_size offers) with every offer at
  least `upstream_min_similarity` alike. Later pages follow the first: a search whose first page
  came from the upstream stays there, so its pages never mix two rankings;
- always / `source=upstream`: the upstream's answer for every search.

An upstream answer is stored under the photo's content hash and TMAPI's parameters, and the same
question within `upstream_cache_days` is answered from it without a call. Its items are queued as
an import job (landing.py), so the next search of a photo like it can be answered locally.

When the upstream fails (its errors, a timeout, an unreachable or open-circuit upstream, a
malformed page), the local answer stands in if it has offers (`data.source` "local" and
`data.upstream_error`); else the client gets the upstream's code and message. Searches that use
snapsource's own parameters (keyword, cat_id, region, ...) are answered locally: the upstream
cannot apply them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from snapsource import metrics
from snapsource.errors import ParameterError, UpstreamError
from snapsource.resources import Resources
from snapsource.search.queries import Query
from snapsource.search.ranking import Page
from snapsource.store.upstream import UpstreamTable
from snapsource.upstream import landing
from snapsource.upstream.connector import Connector

log = logging.getLogger("snapsource.upstream")
DAY = 86400.0
SOURCES = ("local", "upstream", "auto")  # a request's `source=`: off, always, fallback
MODE_OF_SOURCE = {"local": "off", "upstream": "always", "auto": "fallback"}
PRUNE_SECONDS = 3600.0  # how often stored pages older than upstream_cache_days are deleted
STALE_PATH = 422  # the upstream refused a path it gave earlier (expired on its side)


@dataclasses.dataclass(frozen=True)
class Ask:
    """A search as the upstream would be asked it."""

    params: dict[str, str]  # TMAPI's parameters, page included, as sent upstream
    photo: Query | None = None  # the query photo, when this server holds it
    upstream_path: str | None = None  # an img_url the upstream takes as it is (no local photo)
    own: tuple[str, ...] = ()  # snapsource's own parameters the search uses (keyword, region, ...)

    @property
    def page(self) -> int:
        return int(self.params.get("page", "1"))

    @property
    def page_size(self) -> int:
        return int(self.params.get("page_size", "20"))

    @property
    def photo_key(self) -> str:
        return self.photo.sha256 if self.photo is not None else f"path:{self.upstream_path}"

    def key(self, page: int | None = None) -> str:
        """The stored page's key: the photo and the parameters (this page, or `page`)."""
        params = {**self.params, "page": str(page or self.page)}
        text = self.photo_key + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Choice:
    """What answers: `local` (the route builds the local page), or the upstream's `data`
    (`upstream`: called now; `upstream_cache`: stored)."""

    source: str
    data: dict[str, Any] | None = None
    error: UpstreamError | None = None  # the upstream failed and the local answer stands in
    reason: str = ""  # why the local answer, when the upstream was an option

    def wire(self) -> dict[str, Any]:
        """What `data` adds: where the answer came from, and why not the upstream's."""
        extra: dict[str, Any] = {"source": self.source}
        if self.reason:
            extra["upstream_skipped"] = self.reason
        if self.error is not None:
            extra["upstream_error"] = {"code": self.error.status, "msg": self.error.msg}
        return extra


class Upstream:
    """The upstream of one server process: its connection, breaker, stored pages and landing."""

    def __init__(self, resources: Resources, connector: Connector, on_landing: Callable[[], None] | None = None) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.connector = connector
        self.table = UpstreamTable(resources.catalog)
        self.on_landing = on_landing
        self._pruned = 0.0

    @classmethod
    def open(cls, resources: Resources, on_landing: Callable[[], None] | None = None) -> Upstream | None:
        """None when no upstream is configured."""
        if not resources.settings.upstream:
            return None
        return cls(resources, Connector.open(resources.settings), on_landing)

    def close(self) -> None:
        self.connector.close()

    def mode(self, source: str | None) -> str:
        return MODE_OF_SOURCE[source] if source else self.settings.upstream_mode

    def choose(self, ask: Ask, source: str | None, first_page: Callable[[], Page], token_id: int | None) -> Choice:
        """The answer's source for `ask`; `first_page` is the local answer's first page (the
        route's search with the request's filters), asked for only when needed."""
        mode = self.mode(source)
        if mode == "off":
            return Choice("local")
        if ask.own:
            own = ", ".join(ask.own)
            if ask.photo is None:
                raise ParameterError(
                    f"{own}: snapsource's own parameters, which the upstream cannot apply, need a photo this server "
                    "holds; img_url is the upstream's path: upload the photo or give its URL"
                )
            if source == "upstream":
                raise ParameterError(
                    f"{own}: snapsource's own parameters, which the upstream cannot apply: leave them out with "
                    "source=upstream, or use source=local or auto (answered locally)"
                )
            return self._local(token_id, f"{own}: snapsource's own parameters, which the upstream cannot apply")
        fallback = mode == "fallback" and ask.photo is not None and not self._went_upstream(ask)
        if fallback and self.good_enough(first_page(), ask.page_size):
            return self._local(token_id, "")
        stored = self.table.page(ask.key(), self._since())
        if stored is not None:
            self._count(token_id, "upstream:cached", "cached")
            return Choice("upstream_cache", stored.answer)
        try:
            data = self._ask(ask, token_id)
        except UpstreamError as exc:
            metrics.UPSTREAM.labels("failed").inc()
            if ask.photo is not None and first_page().hits:
                self._count(token_id, "upstream:fallback", "fallback")  # answered, but no call saved
                return Choice("local", error=exc)
            raise
        return Choice("upstream", data)

    def good_enough(self, page: Page, page_size: int) -> bool:
        """fallback's rule: a `same` match on the first page, or a full first page of offers at
        least `upstream_min_similarity` alike."""
        hits = page.hits
        if any(hit.same for hit in hits):
            return True
        return len(hits) >= page_size and min(hit.similarity for hit in hits) >= self.settings.upstream_min_similarity

    def state(self) -> dict[str, Any]:
        """For the admin API and the console: the breaker and what is stored (never the token)."""
        pages, photos = self.table.counts()
        return {
            "url": self.settings.upstream,
            "mode": self.settings.upstream_mode,
            "breaker": self.connector.breaker.state(),
            "pages_stored": pages,
            "photos_converted": photos,
            "cache_days": self.settings.upstream_cache_days,
            "price_per_call": self.settings.upstream_price_per_call,
        }

    # ---------------------------------------------------------------------------------------------
    def _local(self, token_id: int | None, reason: str) -> Choice:
        self._count(token_id, "upstream:local", "local")
        return Choice("local", reason=reason)

    def _went_upstream(self, ask: Ask) -> bool:
        """A later page of a search whose first page the upstream answered."""
        return ask.page > 1 and self.table.page(ask.key(page=1), self._since()) is not None

    def _since(self) -> float:
        return time.time() - self.settings.upstream_cache_days * DAY

    def _ask(self, ask: Ask, token_id: int | None) -> dict[str, Any]:
        """Call the upstream (converting the photo first, once), store the page, land its items."""
        fresh = ask.upstream_path is not None or self.table.path(ask.photo_key, self._since()) is None
        path = self._path(ask, token_id)
        try:
            data = self._search(path, ask, token_id)
        except UpstreamError as exc:
            if exc.status != STALE_PATH or fresh or ask.photo is None:
                raise
            self.table.forget_path(ask.photo_key)  # converted on an earlier day; the upstream forgot it
            data = self._search(self._path(ask, token_id), ask, token_id)
        now = time.time()
        self.table.keep_page(ask.key(), ask.photo_key, ask.page, data, now)
        if now - self._pruned > PRUNE_SECONDS:  # pages past the cache's days are never read again
            self._pruned = now
            self.table.forget_before(self._since())
        try:
            landing.land(self.resources, data["items"], now)
        except Exception:  # noqa: BLE001 - the answer stands; the offers come with a later page
            log.exception("queueing the upstream's items failed")
        else:
            if self.on_landing is not None:
                self.on_landing()
        return data

    def _path(self, ask: Ask, token_id: int | None) -> str:
        if ask.upstream_path is not None:
            return ask.upstream_path
        assert ask.photo is not None
        path = self.table.path(ask.photo.sha256, self._since())
        if path is None:
            url = self.settings.public_url.rstrip("/") + ask.photo.image_url
            path = self.connector.convert(url, sent=lambda: self._count(token_id, "upstream:convert", "converted"))
            self.table.keep_path(ask.photo.sha256, path, time.time())
        return path

    def _search(self, path: str, ask: Ask, token_id: int | None) -> dict[str, Any]:
        return self.connector.search(path, ask.params, sent=lambda: self._count(token_id, "upstream:call", "called"))

    def _count(self, token_id: int | None, what: str, label: str) -> None:
        metrics.UPSTREAM.labels(label).inc()
        if token_id is not None:
            self.resources.tokens.count(token_id, what)
