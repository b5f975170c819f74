"""10 s of load at concurrency 32 against `serve --workers 2` (`make load` runs 60 s)."""

from __future__ import annotations

import asyncio

from conftest import GROCERY, serve_workers
from snapsource.tools.loadtest import drive


def test_bounded_load_has_no_errors_but_deliberate_503s(resources, tmp_path):
    token = resources.tokens.create("load-test")
    limited = resources.tokens.create("load-test-limited", qps=1)
    img_urls = [f"/img/{image.name}" for image in resources.catalog.all_images()]
    photos = sorted((GROCERY / "queries").glob("*.jpg"))[:10]
    with serve_workers(resources.settings.data_dir, tmp_path) as url:
        report = asyncio.run(drive(url, token, limited, img_urls, photos, seconds=10, concurrency=32))
    print(report.table())
    log = (tmp_path / "serve.log").read_text()
    first = log.find("Traceback")  # what the server logged about an error, not its access log
    assert report.errors == [], log[max(0, first - 600) : first + 6000] if first >= 0 else log[-3000:]
    assert {"known image", "new image", "later page", "limited token"} <= set(report.latencies)
    assert report.statuses["limited token"].get(503, 0) >= 1  # the limit did bite
    assert report.requests >= 50
