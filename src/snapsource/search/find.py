"""One search by image, as the API and the command line both run it: the query photo's analysis
(queries.py) searched with the request's filters, sort and page (ranking.run). The ranking is
kept under the photo's hash and the box searched, so a later page or another sort reuses it."""

from __future__ import annotations

from typing import Any

from snapsource.resources import Resources
from snapsource.search.queries import Query
from snapsource.search.ranking import Page, run


def find(resources: Resources, query: Query, **options: Any) -> Page:
    """A page of offers for `query`; `options` are `ranking.run`'s: page, page_size, sort, filters, ..."""
    analysis = query.analysis
    return run(resources, analysis.vectors, local=analysis.local, key=f"{query.sha256}:{analysis.region.wire()}", **options)
