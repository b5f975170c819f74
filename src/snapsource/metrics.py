"""Prometheus metrics: requests by route and status, latency, catalog size, query-photo cache.

With several worker processes (`serve --workers N`) each process writes its samples to
`PROMETHEUS_MULTIPROC_DIR` and `/metrics` merges them (prometheus-client's multiprocess mode), so
any worker answers for all of them. Routes are labelled by their template (`/img/{name}`), never
by the raw path, so the number of series stays bounded.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

REQUESTS = Counter("snapsource_requests", "HTTP requests answered, by route and status.", ["route", "code"])
LATENCY = Histogram(
    "snapsource_request_seconds",
    "Time to answer, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0),
)
QUERY_PHOTOS = Counter(
    "snapsource_query_photos",
    "Query photos by how they were obtained: cached (analysis kept) or analysed (decoded and embedded).",
    ["result"],
)
UPSTREAM = Counter(
    "snapsource_upstream",
    "Searches with an upstream (docs/upstream.md), by what happened: local (answered locally), cached "
    "(the stored upstream page), called and converted (upstream calls made), failed (an upstream call failed).",
    ["outcome"],
)
OFFERS = Gauge("snapsource_offers", "Offers in the catalog.", multiprocess_mode="max")
VECTORS = Gauge("snapsource_index_vectors", "Image vectors in the index.", multiprocess_mode="max")


def render() -> tuple[bytes, str]:
    """The exposition text, merged across worker processes when they share a directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
