"""Every documented error of every route, over real HTTP, in TMAPI's envelope.

The list of errors comes from the app's OpenAPI document: a new route, or a status newly
documented for one, fails `test_every_documented_error_has_a_case` until it has a case here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from conftest import luma_offers, main_image_url, with_settings
from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.resources import Resources
from snapsource.tools.loopback import serve

ADMIN_KEY = "test-admin-key-errors"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
JPEG = {"content": b"\xff\xd8not really", "headers": {"Content-Type": "image/jpeg"}}
URL = {"json": {"url": "http://example.com/a.jpg"}}

# documented, yet no request from outside can get it: (method, path, status) -> why
UNTESTABLE: dict[tuple[str, str, int], str] = {
    ("GET", "/img/{name}", 422): "FastAPI documents a 422 for any route with a parameter; `name` is any path segment",
    ("GET", "/admin/tokens", 422): "its only parameters are the optional admin key headers, always strings",
    ("GET", "/catalog/imports", 422): "its only parameters are the optional key headers and apiToken, always strings",
    **{
        (method, "/1688/search/image", status): "answered only by a server with an upstream; tests/test_upstream.py "
        "gets each in TMAPI's envelope"
        for method in ("GET", "POST")
        for status in (417, 499)
    },
}
# Starlette's answers for requests no route takes: not in the document, tested all the same
UNDOCUMENTED = {("GET", "/no/such/path", 404), ("DELETE", "/1688/search/image", 405)}


class FailingTokens:
    """Every call fails, as it would with the accounts database gone: the 500 path, from outside."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        def fail(*args: object, **kwargs: object) -> None:
            raise RuntimeError(f"tokens.{name}: the database is gone")

        return fail


@dataclasses.dataclass
class World:
    """Clients of the servers the cases talk to, and the tokens they send."""

    api: httpx.Client  # the luma catalog, with an admin key
    broken: httpx.Client  # the same, but every token lookup fails
    stale: httpx.Client  # an empty catalog whose index another model rebuilt
    busy: httpx.Client  # the luma catalog with small catalog API limits and a 0.2 s write wait
    writer: Callable[[], contextlib.AbstractContextManager[None]]  # holds the catalog's writer lock
    token: str
    expired: str
    limited: str  # its one call per 1000 s already spent
    catalog_expired: str  # the same two with the catalog scope
    catalog_limited: str
    img_url: str


@dataclasses.dataclass(frozen=True)
class Case:
    call: Callable[[World], httpx.Response]
    needle: str  # in msg: the answer is this error, not another of the same status


def _search(world: World, token: str, client: httpx.Client | None = None, **params: object) -> httpx.Response:
    query = {"apiToken": token, "img_url": world.img_url, **params}
    return (client or world.api).get("/1688/search/image", params=query)


def _post(path: str, token: str, client: str = "api", **kwargs: object) -> Callable[[World], httpx.Response]:
    """A POST with the World's token of that name (or that literal token) to the World's client of that name."""
    return lambda w: getattr(w, client).post(path, params={"apiToken": getattr(w, token, token)}, **kwargs)


CATALOG_ROUTES = (
    ("POST", "/catalog/offers"),
    ("POST", "/catalog/offers/delete"),
    ("DELETE", "/catalog/offers/{item_id}"),
    ("GET", "/catalog/offers/{item_id}"),
    ("GET", "/catalog/offers/by-key/{key}"),
    ("GET", "/catalog/offers"),
    ("POST", "/catalog/imports"),
    ("GET", "/catalog/imports/{job_id}"),
    ("GET", "/catalog/imports"),
)


def _busy(world: World, method: str, path: str, **kwargs: object) -> httpx.Response:
    """A catalog write while another import holds the writer lock (the busy server waits 0.2 s)."""
    with world.writer():
        return world.busy.request(method, path, headers=ADMIN, **kwargs)


CASES: dict[tuple[str, str, int], Case] = {
    ("GET", "/1688/search/image", 401): Case(lambda w: _search(w, "ss_wrong"), "apiToken is not valid"),
    ("GET", "/1688/search/image", 422): Case(lambda w: _search(w, w.token, page=0), "page"),
    ("GET", "/1688/search/image", 439): Case(lambda w: _search(w, w.expired), "expired on"),
    ("GET", "/1688/search/image", 500): Case(lambda w: _search(w, w.token, w.broken), "Unexpected error"),
    ("GET", "/1688/search/image", 503): Case(lambda w: _search(w, w.limited), "concurrency limit exceeded"),
    ("POST", "/1688/search/image", 401): Case(_post("/1688/search/image", "ss_wrong", **JPEG), "apiToken is not valid"),
    ("POST", "/1688/search/image", 422): Case(
        _post("/1688/search/image", "token", content=b"hello", headers={"Content-Type": "text/plain"}), "unsupported Content-Type"
    ),
    ("POST", "/1688/search/image", 439): Case(_post("/1688/search/image", "expired", **JPEG), "expired on"),
    ("POST", "/1688/search/image", 500): Case(_post("/1688/search/image", "token", "broken", **JPEG), "Unexpected error"),
    ("POST", "/1688/search/image", 503): Case(_post("/1688/search/image", "limited", **JPEG), "concurrency limit exceeded"),
    ("POST", "/1688/tools/image/convert_url", 401): Case(_post("/1688/tools/image/convert_url", "ss_wrong", **URL), "apiToken"),
    ("POST", "/1688/tools/image/convert_url", 422): Case(
        _post("/1688/tools/image/convert_url", "token", json={"url": ""}), "url"
    ),
    ("POST", "/1688/tools/image/convert_url", 439): Case(_post("/1688/tools/image/convert_url", "expired", **URL), "expired on"),
    ("POST", "/1688/tools/image/convert_url", 500): Case(
        _post("/1688/tools/image/convert_url", "token", "broken", **URL), "Unexpected error"
    ),
    ("POST", "/1688/tools/image/convert_url", 503): Case(
        _post("/1688/tools/image/convert_url", "limited", **URL), "concurrency limit exceeded"
    ),
    ("POST", "/1688/tools/image/upload", 401): Case(_post("/1688/tools/image/upload", "ss_wrong", **JPEG), "apiToken"),
    ("POST", "/1688/tools/image/upload", 422): Case(_post("/1688/tools/image/upload", "token", **JPEG), "not an image"),
    ("POST", "/1688/tools/image/upload", 439): Case(_post("/1688/tools/image/upload", "expired", **JPEG), "expired on"),
    ("POST", "/1688/tools/image/upload", 500): Case(
        _post("/1688/tools/image/upload", "token", "broken", **JPEG), "Unexpected error"
    ),
    ("POST", "/1688/tools/image/upload", 503): Case(
        _post("/1688/tools/image/upload", "limited", **JPEG), "concurrency limit exceeded"
    ),
    ("GET", "/img/{name}", 404): Case(lambda w: w.api.get("/img/" + "0" * 64 + ".jpg"), "no image"),
    ("GET", "/readyz", 503): Case(lambda w: w.stale.get("/readyz"), "Index unavailable: "),
    ("GET", "/admin/tokens", 401): Case(lambda w: w.api.get("/admin/tokens"), "admin key"),
    ("GET", "/admin/tokens", 500): Case(lambda w: w.broken.get("/admin/tokens", headers=ADMIN), "Unexpected error"),
    ("POST", "/admin/tokens", 401): Case(lambda w: w.api.post("/admin/tokens", json={"name": "x"}), "admin key"),
    ("POST", "/admin/tokens", 422): Case(lambda w: w.api.post("/admin/tokens", headers=ADMIN, json={"name": ""}), "name"),
    ("POST", "/admin/tokens", 500): Case(
        lambda w: w.broken.post("/admin/tokens", headers=ADMIN, json={"name": "x"}), "Unexpected error"
    ),
    ("DELETE", "/admin/tokens/{token_id}", 401): Case(lambda w: w.api.delete("/admin/tokens/1"), "admin key"),
    ("DELETE", "/admin/tokens/{token_id}", 404): Case(
        lambda w: w.api.delete(f"/admin/tokens/{2**62}", headers=ADMIN), "no active token"
    ),
    ("DELETE", "/admin/tokens/{token_id}", 422): Case(lambda w: w.api.delete("/admin/tokens/0", headers=ADMIN), "token_id"),
    ("DELETE", "/admin/tokens/{token_id}", 500): Case(
        lambda w: w.broken.delete("/admin/tokens/1", headers=ADMIN), "Unexpected error"
    ),
    ("GET", "/admin/usage", 401): Case(
        lambda w: w.api.get("/admin/usage", headers={"Authorization": "Bearer wrong"}), "admin key"
    ),
    ("GET", "/admin/usage", 422): Case(lambda w: w.api.get("/admin/usage", headers=ADMIN, params={"days": 0}), "days"),
    ("GET", "/admin/usage", 500): Case(lambda w: w.broken.get("/admin/usage", headers=ADMIN), "Unexpected error"),
    ("GET", "/admin/upstream", 401): Case(
        lambda w: w.api.get("/admin/upstream", headers={"Authorization": "Bearer wrong"}), "admin key"
    ),
    ("GET", "/admin/upstream", 422): Case(lambda w: w.api.get("/admin/upstream", headers=ADMIN, params={"days": 0}), "days"),
    ("GET", "/admin/upstream", 500): Case(lambda w: w.broken.get("/admin/upstream", headers=ADMIN), "Unexpected error"),
    ("GET", "/1688/search/image", 403): Case(lambda w: _search(w, w.token, source="upstream"), "upstream scope"),
    ("POST", "/1688/search/image", 403): Case(
        lambda w: w.api.post(
            "/1688/search/image", params={"apiToken": w.token, "source": "auto"}, files={"file": ("a.jpg", b"x")}
        ),
        "upstream scope",
    ),
    **{
        (method, path, 401): Case(
            lambda w, m=method, p=path: w.api.request(m, p.format(item_id=1, job_id="x", key="SKU-1")), "catalog scope"
        )
        for method, path in CATALOG_ROUTES
    },
    **{
        (method, path, 403): Case(
            lambda w, m=method, p=path: w.api.request(
                m, p.format(item_id=1, job_id="x", key="SKU-1"), params={"apiToken": w.token}
            ),
            "lacks the catalog scope",
        )
        for method, path in CATALOG_ROUTES
    },
    **{
        (method, path, 439): Case(
            lambda w, m=method, p=path: w.api.request(
                m, p.format(item_id=1, job_id="x", key="SKU-1"), params={"apiToken": w.catalog_expired}
            ),
            "expired on",
        )
        for method, path in CATALOG_ROUTES
    },
    **{  # the routes that write answer 503 for a busy writer too: those cases come below
        (method, path, 503): Case(
            lambda w, m=method, p=path: w.api.request(
                m, p.format(item_id=1, job_id="x", key="SKU-1"), params={"apiToken": w.catalog_limited}
            ),
            "concurrency limit exceeded",
        )
        for method, path in CATALOG_ROUTES
    },
    **{
        (method, path, 500): Case(
            lambda w, m=method, p=path: w.broken.request(
                m, p.format(item_id=1, job_id="x", key="SKU-1"), params={"apiToken": "x"}
            ),
            "Unexpected error",
        )
        for method, path in CATALOG_ROUTES
    },
    ("POST", "/catalog/offers", 413): Case(
        lambda w: w.busy.post("/catalog/offers", json=[{"item_id": 1}] * 2000, headers=ADMIN), "catalog_max"
    ),
    ("POST", "/catalog/offers", 422): Case(lambda w: w.api.post("/catalog/offers", json=[], headers=ADMIN), "no offers"),
    ("POST", "/catalog/offers", 503): Case(
        lambda w: _busy(w, "POST", "/catalog/offers", json=[{"item_id": 1}]), "Another import"
    ),
    ("POST", "/catalog/offers/delete", 422): Case(
        lambda w: w.api.post("/catalog/offers/delete", json={"item_ids": []}, headers=ADMIN), "item_ids"
    ),
    ("POST", "/catalog/offers/delete", 503): Case(
        lambda w: _busy(w, "POST", "/catalog/offers/delete", json={"item_ids": [1]}), "Another import"
    ),
    ("DELETE", "/catalog/offers/{item_id}", 404): Case(
        lambda w: w.api.delete(f"/catalog/offers/{2**62}", headers=ADMIN), "no offer with item_id"
    ),
    ("DELETE", "/catalog/offers/{item_id}", 422): Case(lambda w: w.api.delete("/catalog/offers/0", headers=ADMIN), "item_id"),
    ("DELETE", "/catalog/offers/{item_id}", 503): Case(lambda w: _busy(w, "DELETE", "/catalog/offers/1"), "Another import"),
    ("GET", "/catalog/offers/{item_id}", 404): Case(
        lambda w: w.api.get(f"/catalog/offers/{2**62}", headers=ADMIN), "no offer with item_id"
    ),
    ("GET", "/catalog/offers/{item_id}", 422): Case(lambda w: w.api.get("/catalog/offers/0", headers=ADMIN), "item_id"),
    ("GET", "/catalog/offers/by-key/{key}", 404): Case(
        lambda w: w.api.get("/catalog/offers/by-key/SKU-1", headers=ADMIN), "no offer with the key"
    ),
    ("GET", "/catalog/offers/by-key/{key}", 422): Case(
        lambda w: w.api.get("/catalog/offers/by-key/" + "k" * 201, headers=ADMIN), "key"
    ),
    ("GET", "/catalog/offers", 422): Case(
        lambda w: w.api.get("/catalog/offers", params={"updated_since": "soon"}, headers=ADMIN), "ISO 8601"
    ),
    ("POST", "/catalog/imports", 413): Case(
        lambda w: w.busy.post("/catalog/imports", files={"file": ("c.jsonl", b"{}\n" * 1000)}, headers=ADMIN), "catalog_max_bytes"
    ),
    ("POST", "/catalog/imports", 422): Case(
        lambda w: w.api.post("/catalog/imports", json={"url": "ftp://x"}, headers=ADMIN), "multipart"
    ),
    ("GET", "/catalog/imports/{job_id}", 404): Case(
        lambda w: w.api.get("/catalog/imports/imp_0", headers=ADMIN), "no import job"
    ),
    ("GET", "/catalog/imports/{job_id}", 422): Case(lambda w: w.api.get("/catalog/imports/" + "x" * 65, headers=ADMIN), "job_id"),
    ("GET", "/no/such/path", 404): Case(lambda w: w.api.get("/no/such/path"), "Not Found"),
    ("DELETE", "/1688/search/image", 405): Case(lambda w: w.api.delete("/1688/search/image"), "Method Not Allowed"),
}


def documented(app) -> set[tuple[str, str, int]]:
    """(method, path, status) of every error answer the OpenAPI document lists."""
    return {
        (method.upper(), path, int(status))
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
        if status.isdigit() and int(status) >= 400
    }


@pytest.fixture(scope="module")
def admin_resources(resources):
    with_key = with_settings(resources, admin_key=ADMIN_KEY)
    yield with_key
    with_key.fetcher.close()


@pytest.fixture(scope="module")
def stale_resources(tmp_path_factory):
    """An empty catalog whose index.json says another model made it, as after a rebuild."""
    data_dir = tmp_path_factory.mktemp("stale")
    resources = Resources.open(Settings.load(environ={}, data_dir=data_dir))  # faiss in the data dir, in any profile
    resources.index.save()
    meta = data_dir / "index" / "index.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "model": "another-model@2"}))
    os.utime(meta, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    yield resources
    resources.close()


@pytest.fixture(scope="module")
def world(admin_resources, stale_resources, resources, token) -> Iterator[World]:
    limited = resources.tokens.create("errors-limited", qps=0.001)
    resources.tokens.admit(limited)  # spends the bucket: the next call is refused for 1000 s
    catalog_limited = resources.tokens.create("errors-catalog-limited", qps=0.001, scopes=["catalog"])
    resources.tokens.admit(catalog_limited, "catalog")
    broken = dataclasses.replace(admin_resources, tokens=FailingTokens())
    with (
        serve(create_app(resources=admin_resources)) as api_url,
        serve(create_app(resources=broken)) as broken_url,
        serve(create_app(resources=stale_resources)) as stale_url,
        serve(create_app(resources=with_settings(admin_resources, catalog_write_wait=0.2, catalog_max_bytes=1000))) as busy_url,
        httpx.Client(base_url=busy_url, timeout=30) as busy,
        httpx.Client(base_url=api_url, timeout=30) as api,
        # a fresh connection each call: a 500 may close the one before (uvicorn logs the exception)
        httpx.Client(base_url=broken_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as broken_client,
        httpx.Client(base_url=stale_url, timeout=30) as stale,
    ):
        yield World(
            api=api,
            broken=broken_client,
            stale=stale,
            busy=busy,
            writer=admin_resources.catalog.writer,
            token=token,
            expired=resources.tokens.create("errors-expired", expires=dt.date.today() - dt.timedelta(days=1)),
            limited=limited,
            catalog_expired=resources.tokens.create(
                "errors-catalog-expired", expires=dt.date.today() - dt.timedelta(days=1), scopes=["catalog"]
            ),
            catalog_limited=catalog_limited,
            img_url=main_image_url(resources, luma_offers()[0]),
        )


def test_every_documented_error_has_a_case(resources):
    listed = documented(create_app(resources=resources))
    assert listed - CASES.keys() - UNTESTABLE.keys() == set(), "documented errors without a case in CASES"
    assert CASES.keys() - UNDOCUMENTED <= listed, "cases of errors the document does not list"
    assert UNTESTABLE.keys() <= listed and not UNTESTABLE.keys() & CASES.keys(), "UNTESTABLE holds testable errors"


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda key: "{} {} {}".format(*key))
def test_error_answers_in_tmapi_envelope(world, key):
    _, _, status = key
    response = CASES[key].call(world)
    body = response.json()
    assert response.status_code == status, body
    assert response.headers["content-type"] == "application/json"
    assert body.keys() == {"code", "msg", "data"} and body["code"] == status and body["data"] is None, body
    assert isinstance(body["msg"], str) and CASES[key].needle in body["msg"], body["msg"]
    if status == 405:
        assert response.headers["Allow"] == "GET, POST"
    if "concurrency" in CASES[key].needle or "Another import" in CASES[key].needle:
        assert int(response.headers["Retry-After"]) >= 1


def test_an_index_from_another_model_is_one_answer_on_readyz_and_search(world, stale_resources):
    """IndexMismatch is translated in one place, whichever route meets it."""
    token = stale_resources.tokens.create("stale")
    ready = world.stale.get("/readyz")
    searched = world.stale.get("/1688/search/image", params={"apiToken": token, "img_url": "/img/x.jpg"})
    assert ready.status_code == searched.status_code == 503
    assert ready.json() == searched.json()
    assert "another-model@2" in ready.json()["msg"]
