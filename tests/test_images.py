"""Image preparation: orientation, alpha onto white, padding trimmed only when it is padding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import LUMA, luma_offers
from snapsource import images


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_alpha_is_flattened_onto_white():
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    out = images.decode(encode(rgba))
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (120, 60), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    out = images.decode(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (60, 120)


def test_white_padding_is_trimmed_but_a_photo_is_not():
    photo = images.decode((LUMA.parent / luma_offers()[0]["img"]).read_bytes())
    canvas = Image.new("RGB", (photo.width * 2, photo.height * 2), (255, 255, 255))
    canvas.paste(photo, (photo.width // 2, photo.height // 3))
    box = images.content_box(canvas, 0.08)
    assert box is not None
    x1, y1, x2, y2 = box
    assert x1 >= photo.width // 2 - photo.width * 0.1 and x2 <= photo.width * 1.6
    # a noisy light background (a real photo) is never trimmed
    rng = np.random.default_rng(0)
    noisy = Image.fromarray((235 + rng.integers(0, 20, (300, 300, 3))).astype(np.uint8))
    noisy.paste(Image.new("RGB", (100, 100), "black"), (100, 100))
    assert images.content_box(noisy, 0.08) is None
    assert images.content_box(canvas, 0) is None  # the setting turns it off


def test_padded_copy_embeds_close_to_the_original(resources):
    data = (LUMA.parent / luma_offers()[0]["img"]).read_bytes()
    photo = images.decode(data)
    canvas = Image.new("RGB", (photo.width * 2, photo.height * 2), (255, 255, 255))
    canvas.paste(photo, (photo.width // 3, photo.height // 2))
    original, padded = (resources.embedder.embed(images.prepare(i, 0.08)[None])[0] for i in (photo, canvas))
    untrimmed = resources.embedder.embed(images.prepare(canvas, 0)[None])[0]
    assert float(original @ padded) > float(original @ untrimmed)
    assert float(original @ padded) > 0.9


@pytest.mark.parametrize("data, needle", [(b"", "empty"), (b"<html>hi</html>", "not an image")])
def test_unreadable_input(data, needle):
    with pytest.raises(images.ImageError, match=needle):
        images.decode(data)


def test_pixel_cap():
    big = encode(Image.new("RGB", (3000, 3000), "white"))
    with pytest.raises(images.ImageError, match="pixels"):
        images.decode(big, images.ImageLimits(max_pixels=1_000_000))
