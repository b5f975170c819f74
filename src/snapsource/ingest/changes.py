"""Catalog changes sent over HTTP (the catalog API): a batch of offers upserted, offers deleted.

Both take the catalog's writer lock like an import, so they wait for one that is writing (at most
`catalog_write_wait` seconds, then CatalogBusy: 503, retry). When they return, the change is
durable (the catalog committed, the vectors saved) and searchable: other worker processes and
servers take it up on their next search (the vector store's refresh, the columns' version).
"""

from __future__ import annotations

from typing import Any

from snapsource.errors import CatalogBusy
from snapsource.ingest.pipeline import IngestReport, drop_unused_images, ingest
from snapsource.ingest.rows import Records
from snapsource.resources import Resources


def upsert(resources: Resources, offers: list[Any], errors: dict[int, str] | None = None) -> IngestReport:
    """Add or update each offer (the later of two with one item_id wins); each row's outcome.
    `errors`: rows (numbered from 1) that could not be read, rejected with that reason."""
    try:
        source = Records(offers, errors=errors)
        return ingest(resources, source, outcomes=True, wait=resources.settings.catalog_write_wait)
    except TimeoutError:
        raise CatalogBusy(retry_after=5) from None


def delete(resources: Resources, item_ids: list[int]) -> list[int]:
    """Remove these offers (and photos no other offer shows); the ids that were there."""
    catalog, index = resources.catalog, resources.index
    try:
        with catalog.writer(timeout=resources.settings.catalog_write_wait):
            index.refresh()
            present = sorted(catalog.existing(item_ids))
            if present:
                catalog.delete_offers(present)
                index.offers_changed(present)
                drop_unused_images(resources)
                index.save()
    except TimeoutError:
        raise CatalogBusy(retry_after=5) from None
    return present
