"""Shared fixtures: the real luma catalog ingested once, and a real HTTP server on loopback.

Two profiles: `default` (SQLite and faiss in the data dir) and `scaleout` (PostgreSQL and Milvus,
started by scripts/scaleout-env, which `make test` runs with SNAPSOURCE_TEST_PROFILE=scaleout and
`-m "profiles or scaleout"`). Tests marked `profiles` run in both; every data dir a test opens
through `open_resources` gets its own PostgreSQL schema and Milvus collection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.ingest.pipeline import IngestReport, ingest
from snapsource.resources import Resources
from snapsource.tools import loopback
from snapsource.tools.loopback import serve
from snapsource.vision.fetch import Fetcher, FetchPolicy

PROFILE = os.environ.get("SNAPSOURCE_TEST_PROFILE", "default")
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SNAPSOURCE_SHARED", ROOT.parent / "shared"))
LUMA = SHARED / "catalogs" / "luma" / "catalog.jsonl"
SPEC = SHARED / "spec"
GROCERY = SHARED / "eval" / "grocery"


def luma_offers() -> list[dict]:
    return [json.loads(line) for line in LUMA.read_text().splitlines() if line.strip()]


def write_catalog(path: Path, offers: list[dict], extra_lines: list[str] = ()) -> Path:
    """A catalog file elsewhere whose image paths still point at the luma photos."""
    lines = []
    for offer in offers:
        offer = dict(offer)
        offer["img"] = str(LUMA.parent / offer["img"]) if not offer["img"].startswith("/") else offer["img"]
        offer["images"] = [str(LUMA.parent / p) for p in offer.get("images", [])]
        lines.append(json.dumps(offer, ensure_ascii=False))
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")
    return path


def fresh_postgres(base: str) -> str:
    """A URL of `base` whose tables live in a new, empty schema: a database of one's own."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def profile_settings() -> dict[str, str]:
    """The `catalog` and `vectors` settings of a new, empty catalog in this run's profile."""
    if PROFILE == "default":
        return {}
    import uuid

    return {
        "catalog": fresh_postgres(os.environ["SNAPSOURCE_TEST_POSTGRES"]),
        "vectors": f"{os.environ['SNAPSOURCE_TEST_MILVUS']}/c_{uuid.uuid4().hex[:12]}",
    }


def profile_env(settings: dict[str, str]) -> dict[str, str]:
    return {f"SNAPSOURCE_{name.upper()}": value for name, value in settings.items()}


def open_resources(data_dir: Path, **settings) -> Resources:
    """A data dir's resources with these settings, in this run's profile."""
    return Resources.open(Settings.load(environ={}, data_dir=data_dir, **{**profile_settings(), **settings}))


@pytest.fixture(scope="session")
def luma() -> tuple[Resources, IngestReport]:
    """The demo catalog, ingested once into a temporary data dir."""
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="snapsource-luma-"))
    resources = open_resources(data)
    report = ingest(resources, LUMA)
    return resources, report


@pytest.fixture(scope="session")
def resources(luma) -> Resources:
    return luma[0]


@pytest.fixture(scope="session")
def token(resources) -> str:
    return resources.tokens.create("tests")


@contextlib.contextmanager
def serve_workers(data_dir: Path, workdir: Path, workers: int = 2, port: int | None = None, **settings: str) -> Iterator[str]:
    """`snapsource serve --workers N` as a real subprocess, its output in workdir/serve.log and its
    Prometheus files in workdir/metrics; yields its base URL."""
    (workdir / "metrics").mkdir(exist_ok=True)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics")}
    env.update({f"SNAPSOURCE_{name.upper()}": value for name, value in settings.items()})
    with open(workdir / "serve.log", "wb") as log, loopback.serve_workers(data_dir, workers, env, log, port=port) as (url, _):
        yield url


def with_settings(resources: Resources, **changes) -> Resources:
    """The same catalog, index and query images, served with other settings."""
    settings = dataclasses.replace(resources.settings, **changes)
    return dataclasses.replace(resources, settings=settings, fetcher=Fetcher(FetchPolicy.of(settings)))


@pytest.fixture(scope="session")
def base_url(resources) -> Iterator[str]:
    """The ingested catalog behind a real HTTP server, with default settings."""
    with serve(create_app(resources=resources)) as url:
        yield url


@pytest.fixture(scope="session")
def client(base_url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


@pytest.fixture()
def search(client, token, resources):
    """search(offer_or_img_url, **params) -> the parsed JSON body (any status)."""

    def run(img, **params):
        if isinstance(img, dict):
            img = main_image_url(resources, img)
        response = client.get("/1688/search/image", params={"apiToken": token, "img_url": img, **params})
        body = response.json()
        assert body["code"] == response.status_code
        return body

    return run


def all_items(search, img, **params) -> list[dict]:
    """Every item of a search, page after page (20 a page), with the `search` fixture."""
    items, page = [], 1
    while True:
        data = search(img, page=page, page_size=20, **params)["data"]
        items += data["items"]
        if not data["has_next_page"]:
            return items
        page += 1


def main_image_url(resources: Resources, offer: dict) -> str:
    import hashlib

    data = (LUMA.parent / offer["img"]).read_bytes()
    image = resources.catalog.image_by_sha(hashlib.sha256(data).hexdigest())
    assert image is not None
    return f"/img/{image.name}"
