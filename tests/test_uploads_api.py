"""Bring your own image: upload, convert_url, any URL as img_url, over real HTTP on loopback."""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import GROCERY, with_settings
from imageserver import ImageServer, cmyk_jpeg, encode, grocery_photo
from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.ingest.pipeline import ingest
from snapsource.resources import Resources
from snapsource.tools.evaluate import GROCERY_ITEM_BASE, grocery_gallery
from snapsource.tools.loopback import serve
from snapsource.vision.images import decode

PHOTO = grocery_photo(0)


@pytest.fixture(scope="module")
def images():
    photo = PHOTO.read_bytes()
    server = ImageServer(photo, encode(Image.open(io.BytesIO(photo)), "PNG"))
    with server.running() as url:
        yield server, url


class CountingEmbedder:
    """The real embedder, counting the images it embeds."""

    def __init__(self, inner) -> None:
        self.inner, self.images = inner, 0
        self.name, self.dim, self.card = inner.name, inner.dim, inner.card

    def embed(self, batch):
        self.images += len(batch)
        return self.inner.embed(batch)

    def feature_maps(self, batch):
        self.images += len(batch)
        return self.inner.feature_maps(batch)

    def look(self, batch):
        self.images += len(batch)
        return self.inner.look(batch)


@pytest.fixture(scope="module")
def grocery(tmp_path_factory):
    """The grocery products' catalog photos as a catalog, so shop photos find their product;
    image URLs on loopback allowed and a 2 s fetch deadline. Yields (resources, token)."""
    data = tmp_path_factory.mktemp("grocery")
    gallery = data / "gallery.jsonl"
    gallery.write_text("".join(json.dumps(o) + "\n" for o in grocery_gallery(GROCERY / "manifest.csv")))
    settings = Settings.load(environ={}, data_dir=data / "store", fetch_allow="127.0.0.0/8", fetch_timeout=2.0)
    opened = Resources.open(settings)
    assert ingest(opened, gallery).added == 81
    opened = dataclasses.replace(opened, embedder=CountingEmbedder(opened.embedder))
    yield opened, opened.tokens.create("uploads")
    opened.close()


@pytest.fixture(scope="module")
def open_resources(grocery):
    return grocery[0]


@pytest.fixture(scope="module")
def api(grocery):
    """A client of a server that may fetch from loopback; every call carries the token."""
    resources, token = grocery
    with serve(create_app(resources=resources)) as url:
        with httpx.Client(base_url=url, params={"apiToken": token}, timeout=30) as client:
            yield client


def ok(response: httpx.Response) -> dict:
    body = response.json()
    assert response.status_code == 200, body
    assert body["code"] == 200 and body["msg"] == "success"
    return body["data"]


def refused(response: httpx.Response, needle: str, status: int = 422) -> str:
    body = response.json()
    assert response.status_code == status and body["code"] == status and body["data"] is None, body
    assert needle in body["msg"], body["msg"]
    return body["msg"]


def expected_url(data: bytes, ext: str = "jpg") -> str:
    return f"/img/{hashlib.sha256(data).hexdigest()}.{ext}"


def product_of(photo) -> int:
    """The item_id of the grocery offer a shop photo shows, from the eval's manifest."""
    with open(GROCERY / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["role"] == "query" and r["image_path"].endswith("/" + photo.name)]
    assert len(rows) == 1, photo
    return GROCERY_ITEM_BASE + int(rows[0]["product_id"])


def test_multipart_upload_then_search_with_its_image_url(api):
    photo = PHOTO.read_bytes()
    data = ok(api.post("/1688/tools/image/upload", files={"file": (PHOTO.name, photo, "image/jpeg")}))
    assert data == {"image_url": expected_url(photo)}
    found = ok(api.get("/1688/search/image", params={"img_url": data["image_url"]}))
    assert found["items"] and found["total_count"] >= len(found["items"])
    assert product_of(PHOTO) in [i["item_id"] for i in found["items"]]  # the product the photo shows
    served = api.get(data["image_url"])
    assert served.status_code == 200 and served.content == photo
    assert served.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("style", ["plain", "data-url", "url-safe-unpadded", "with-newlines"])
def test_base64_upload(api, style):
    photo = PHOTO.read_bytes()
    text = base64.b64encode(photo).decode()
    if style == "data-url":
        text = "data:image/jpeg;base64," + text
    elif style == "url-safe-unpadded":
        text = base64.urlsafe_b64encode(photo).decode().rstrip("=")
    elif style == "with-newlines":
        text = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    data = ok(api.post("/1688/tools/image/upload", json={"image_base64": text}))
    assert data == {"image_url": expected_url(photo)}


def test_raw_body_upload(api):
    png = encode(Image.open(PHOTO), "PNG")
    data = ok(api.post("/1688/tools/image/upload", content=png, headers={"Content-Type": "image/png"}))
    assert data == {"image_url": expected_url(png, "png")}


def test_convert_url_then_search(api, images):
    server, url = images
    data = ok(api.post("/1688/tools/image/convert_url", json={"url": url + "/photo.png", "search_api_endpoint": "/search/image"}))
    assert data["image_url"] == expected_url(encode(Image.open(PHOTO), "PNG"), "png")  # the bytes fetched, kept
    found = ok(api.get("/1688/search/image", params={"img_url": data["image_url"]}))["items"]
    assert product_of(PHOTO) in [i["item_id"] for i in found]
    refused(
        api.post("/1688/tools/image/convert_url", json={"url": url + "/photo.png", "search_api_endpoint": "/x"}),
        "search_api_endpoint must be one of /search/image",
    )
    refused(api.post("/1688/tools/image/convert_url", json={"search_api_endpoint": "/search/image"}), "url: is required")


def test_one_step_post_search_and_later_pages_by_get(api, open_resources):
    photo = grocery_photo(1).read_bytes()
    first = ok(
        api.post(
            "/1688/search/image",
            params={"page_size": 5, "sort": "default"},
            files={"file": ("shelf.jpg", photo, "image/jpeg")},
        )
    )
    assert list(first)[-1] == "image_url" and first["image_url"] == expected_url(photo)
    assert first["page"] == 1 and len(first["items"]) == 5 and first["has_next_page"]
    embedded, reused = open_resources.embedder.images, open_resources.rankings.hits
    second = ok(api.get("/1688/search/image", params={"img_url": first["image_url"], "page": 2, "page_size": 5}))
    assert open_resources.embedder.images == embedded  # page 2 re-embeds nothing
    assert open_resources.rankings.hits == reused + 1  # nor searches and re-ranks again
    assert not {i["item_id"] for i in first["items"]} & {i["item_id"] for i in second["items"]}
    assert second["total_count"] == first["total_count"]


def test_any_url_as_img_url_is_fetched_once_for_all_pages(api, images, open_resources):
    server, url = images
    img_url = url + "/photo-as-octets"
    embedded = open_resources.embedder.images
    page1 = ok(api.get("/1688/search/image", params={"img_url": img_url, "page_size": 4}))
    page2 = ok(api.get("/1688/search/image", params={"img_url": img_url, "page_size": 4, "page": 2}))
    assert server.hits["/photo-as-octets"] == 1
    assert open_resources.embedder.images - embedded <= 1  # the photo was uploaded before: maybe 0
    assert page1["items"] and page2["items"] and page1["items"] != page2["items"]


def test_cmyk_jpeg_is_searchable(api, images):
    """A CMYK JPEG is read with its colours (not as a negative) and finds what the RGB photo finds.

    Its pixels differ from the RGB photo's by the JPEG round trip, so look-alike products that score
    within a hair of each other may swap places: the RGB photo's best match is in its top 3."""
    _, url = images
    rgb_pixels = np.asarray(decode(PHOTO.read_bytes()), dtype=np.float32)
    cmyk_pixels = np.asarray(decode(cmyk_jpeg(PHOTO.read_bytes())), dtype=np.float32)
    assert rgb_pixels.shape == cmyk_pixels.shape
    assert np.abs(rgb_pixels - cmyk_pixels).mean() < 8  # an inverted read would be ~100 away
    cmyk = ok(api.get("/1688/search/image", params={"img_url": url + "/cmyk.jpg"}))["items"]
    rgb = ok(api.post("/1688/search/image", files={"file": (PHOTO.name, PHOTO.read_bytes(), "image/jpeg")}))["items"]
    assert cmyk and rgb[0]["item_id"] in [item["item_id"] for item in cmyk[:3]]


@pytest.mark.parametrize(
    "path, needle",
    [
        ("/truncated.jpg", "not a readable image"),
        ("/page.jpg", "not an image"),
        ("/drawing.svg", "not an image"),
        ("/pixel.gif", "image too small: 1x1 pixels"),
        ("/bomb.png", "image too large: 20000x20000 pixels is 400 MP > 40 MP"),
        ("/missing.jpg", "HTTP 404"),
        ("/to-private", "address 10.0.0.5 is private"),
        ("/to-metadata", "address 169.254.169.254 is link-local"),
        ("/to-ipv6-loopback", "address ::1 is loopback"),
        ("/hop4", "more than 3 redirects"),
        ("/endless.jpg", "image too large"),
        ("/slow.jpg", "longer than 2 s"),
    ],
)
def test_bad_image_urls_are_refused_by_name_and_the_server_stays_up(api, images, path, needle):
    _, url = images
    msg = refused(api.get("/1688/search/image", params={"img_url": url + path}), needle)
    assert url + path in msg
    refused(api.post("/1688/tools/image/convert_url", json={"url": url + path}), needle)
    health = api.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_default_settings_refuse_loopback_urls(client, token, images):
    """The session server runs with default settings: no allow-list."""
    server, url = images
    hits = server.hits["/photo.jpg"]
    for host, needle in (("127.0.0.1", "address 127.0.0.1 is loopback"), ("localhost", "localhost resolves to it")):
        img_url = url.replace("127.0.0.1", host) + "/photo.jpg"
        response = client.get("/1688/search/image", params={"apiToken": token, "img_url": img_url})
        refused(response, needle)
    assert server.hits["/photo.jpg"] == hits


def test_strict_mode_keeps_tmapi_behaviour(grocery, images):
    resources, token = grocery
    _, url = images
    strict = with_settings(resources, strict_img_url=True)
    with serve(create_app(resources=strict)) as base, httpx.Client(base_url=base, params={"apiToken": token}) as api:
        refused(api.get("/1688/search/image", params={"img_url": url + "/photo.jpg"}), "convert_url")
        converted = ok(api.post("/1688/tools/image/convert_url", json={"url": url + "/photo.jpg"}))
        assert ok(api.get("/1688/search/image", params={"img_url": base + converted["image_url"]}))["items"]
    strict.fetcher.close()


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"files": {"photo": ("a.jpg", b"x", "image/jpeg")}}, "no file field named `file`"),
        ({"json": {"image": "abc"}}, "no image_base64"),
        ({"json": {"image_base64": "not base64!"}}, "not valid base64"),
        ({"json": {"image_base64": "data:image/jpeg,abc"}}, "data: URL must be base64"),
        ({"json": {"image_base64": ""}}, "not an image: the data is empty"),
        ({"content": b"{nope", "headers": {"Content-Type": "application/json"}}, "not JSON"),
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, "unsupported Content-Type 'text/plain'"),
        ({"content": b"<html></html>", "headers": {"Content-Type": "image/jpeg"}}, "not an image"),
        ({"content": b"\0" * 14_000_000, "headers": {"Content-Type": "image/jpeg"}}, "image too large"),
    ],
)
def test_bad_uploads_are_refused(api, kwargs, needle):
    refused(api.post("/1688/tools/image/upload", **kwargs), needle)
    refused(api.post("/1688/search/image", **kwargs), needle)


def test_upload_needs_a_token(client):
    response = client.post("/1688/tools/image/upload", files={"file": ("a.jpg", PHOTO.read_bytes(), "image/jpeg")})
    refused(response, "apiToken is missing", 401)
    response = client.post("/1688/tools/image/convert_url", json={"url": "http://example.com/a.jpg"})
    refused(response, "apiToken is missing", 401)


def test_unknown_image_path_says_what_to_do(api):
    msg = refused(api.get("/1688/search/image", params={"img_url": "/img/" + "a" * 64 + ".jpg"}), "upload it again")
    assert "not an image of this service" in msg
