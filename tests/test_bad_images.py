"""A corpus of bad and awkward images, generated here, uploaded to the real server: each gets its
documented answer (docs/images.md) and the server stays up."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import LUMA, luma_offers
from imageserver import cmyk_jpeg, encode, png_bomb


def _photo() -> Image.Image:
    return Image.open(LUMA.parent / luma_offers()[4]["img"]).convert("RGB").resize((320, 400))


def _rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(_photo(), "JPEG", exif=exif.tobytes())


def _animated(fmt: str) -> bytes:
    frames = [_photo(), Image.new("RGB", (320, 400), "red")]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def _corpus() -> list[tuple[str, bytes, int, str]]:
    jpeg, png = encode(_photo(), "JPEG"), encode(_photo(), "PNG")
    deep = Image.fromarray(np.asarray(_photo().convert("L"), np.uint16) * 257)
    return [
        ("zero bytes", b"", 422, "the data is empty"),
        ("truncated JPEG", jpeg[: len(jpeg) // 2], 422, "not a readable image"),
        ("truncated PNG", png[: len(png) // 2], 422, "not a readable image"),
        ("PNG bomb", png_bomb(), 422, "image too large: 20000x20000 pixels"),
        ("65,000 x 1 strip", encode(Image.new("L", (65_000, 1)), "PNG"), 422, "image too small: 65000x1"),
        ("SVG", b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"/>', 422, "not an image"),
        ("HTML", b"<!doctype html><html><body><img src=x></body></html>", 422, "not an image"),
        ("16-bit PNG", encode(deep, "PNG"), 200, ""),
        ("CMYK JPEG", cmyk_jpeg(jpeg), 200, ""),
        ("animated GIF", _animated("GIF"), 200, ""),
        ("animated WebP", _animated("WEBP"), 200, ""),
        ("EXIF-rotated JPEG", _rotated(), 200, ""),
    ]


@pytest.mark.parametrize("name, data, status, needle", _corpus(), ids=lambda v: v if isinstance(v, str) else None)
def test_each_bad_image_gets_its_documented_answer(client, token, name, data, status, needle):
    for kind in ("image/jpeg", "image/png"):  # the Content-Type does not decide
        response = client.post(
            "/1688/search/image", params={"apiToken": token, "page_size": 3}, content=data, headers={"Content-Type": kind}
        )
        body = response.json()
        assert response.status_code == status and body["code"] == status, (name, body)
        assert needle in body["msg"], (name, body["msg"])
        if status == 200:
            assert body["data"]["image_url"].startswith("/img/")
    assert client.get("/healthz").status_code == 200


def test_exif_rotated_photo_is_searched_upright(client, token):
    rotated = client.post("/1688/search/image", params={"apiToken": token}, files={"file": ("r.jpg", _rotated())}).json()
    upright = client.post(
        "/1688/search/image",
        params={"apiToken": token},
        files={"file": ("u.png", encode(_photo().rotate(-90, expand=True), "PNG"))},
    ).json()
    assert rotated["data"]["region"][2:] == [400, 320]  # width and height as seen upright
    assert rotated["data"]["items"][0]["item_id"] == upright["data"]["items"][0]["item_id"]
