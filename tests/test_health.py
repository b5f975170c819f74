"""Readiness and Prometheus metrics, also merged across worker processes."""

from __future__ import annotations

import json
import os
import time

import httpx

from conftest import serve_workers
from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.resources import Resources
from snapsource.tools.loopback import serve


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format, 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
    return 0.0


def test_readyz(client):
    body = client.get("/readyz").json()
    assert body["status"] == "ready" and body["offers"] > 0 and body["vectors"] > 0


def test_readyz_is_503_when_the_index_was_rebuilt_by_another_model(tmp_path):
    resources = Resources.open(Settings.load(environ={}, data_dir=tmp_path))
    resources.index.save()
    with serve(create_app(resources=resources)) as url:
        assert httpx.get(url + "/readyz").status_code == 200
        meta = tmp_path / "index" / "index.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "model": "another-model@2"}))
        os.utime(meta, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
        response = httpx.get(url + "/readyz")
        assert response.status_code == 503 and "another-model@2" in response.json()["msg"]
    resources.close()


def test_metrics_count_requests_by_route_and_code(client, search, resources):
    from conftest import luma_offers

    before = client.get("/metrics").text
    search(luma_offers()[0])
    search(luma_offers()[0], page=0)
    client.get("/img/" + "0" * 64 + ".jpg")
    text = client.get("/metrics").text
    route = "/1688/search/image"
    assert (
        _sample(text, "snapsource_requests_total", route=route, code="200")
        == _sample(before, "snapsource_requests_total", route=route, code="200") + 1
    )
    assert _sample(text, "snapsource_requests_total", route=route, code="422") >= 1
    assert _sample(text, "snapsource_requests_total", route="/img/{name}", code="404") >= 1
    assert _sample(text, "snapsource_request_seconds_count", route=route) >= 2
    assert _sample(text, "snapsource_offers") == resources.catalog.count()
    assert _sample(text, "snapsource_index_vectors") == len(resources.index)
    assert "snapsource_query_photos_total" in text


def test_metrics_merge_two_worker_processes(resources, tmp_path):
    with serve_workers(resources.settings.data_dir, tmp_path) as url:
        for _ in range(30):  # new connections each time: both workers take some
            httpx.get(url + "/healthz", timeout=10)
        text = httpx.get(url + "/metrics", timeout=10).text
    assert _sample(text, "snapsource_requests_total", route="/healthz", code="200") == 30
    assert len(list((tmp_path / "metrics").glob("gauge_max_*.db"))) == 2  # both workers report there
