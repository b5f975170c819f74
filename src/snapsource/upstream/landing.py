"""The upstream's items, kept in the local catalog: each page answered becomes an import job.

The job goes through the catalog's one import path (ingest/jobs.py): it survives a restart and
resumes, its photos are fetched by the guarded fetcher (public addresses and `fetch_allow`) with
`ingest_workers` at a time, embedded and indexed in the background, and each item is upserted by
item_id, marked `source: "upstream"` with the time it was seen, so an offer seen again is
refreshed. An offer of the operator's own (in the catalog with no source) is never overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from snapsource.ingest import jobs
from snapsource.resources import Resources

SOURCE = "upstream"


def land(resources: Resources, items: list[dict[str, Any]], seen: float) -> jobs.Job | None:
    """Queue `items` (a page of the upstream's answer) for import; None when none is to be kept."""
    ids = [item["item_id"] for item in items if isinstance(item, dict) and isinstance(item.get("item_id"), int)]
    stored = resources.catalog.documents(ids)
    own = {item_id for item_id, (doc, _) in stored.items() if json.loads(doc).get("source") != SOURCE}
    seen_at = dt.datetime.fromtimestamp(seen, dt.UTC).isoformat(timespec="seconds")
    rows = [
        json.dumps({**item, "source": SOURCE, "seen_at": seen_at}, ensure_ascii=False)
        for item in items
        if isinstance(item, dict) and item.get("item_id") not in own
    ]
    if not rows:
        return None
    stamp = dt.datetime.fromtimestamp(seen, dt.UTC).strftime("%Y%m%dT%H%M%S")
    job_id = jobs.reserve(resources, jobs.ADMIN)
    return jobs.submit_file(resources, job_id, f"upstream-{stamp}.jsonl", "\n".join(rows).encode(), "jsonl", None)
