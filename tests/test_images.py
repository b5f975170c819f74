"""Image preparation: orientation, alpha onto white, padding trimmed only when it is padding."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from conftest import LUMA, luma_offers
from snapsource.vision import images


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


def _photo() -> Image.Image:
    return Image.open(LUMA.parent / luma_offers()[0]["img"]).convert("RGB").resize((300, 360))


@pytest.mark.parametrize(
    "fmt, mode, ext",
    [
        ("JPEG", "RGB", "jpg"),
        ("JPEG", "L", "jpg"),
        ("MPO", "RGB", "jpg"),
        ("PNG", "RGB", "png"),
        ("WEBP", "RGB", "webp"),
        ("GIF", "P", "gif"),
        ("BMP", "RGB", "bmp"),
        ("TIFF", "RGB", "tif"),
        ("AVIF", "RGB", "avif"),
        ("HEIF", "RGB", "heic"),
    ],
)
def test_every_photo_format_decodes_to_the_same_picture(fmt, mode, ext):
    photo = _photo()
    data = encode(photo.convert(mode), fmt)
    out = images.decode(data)
    assert out.mode == "RGB" and out.size == photo.size and images.sniff_extension(data) == ext
    error = np.abs(np.asarray(out, np.float32) - np.asarray(photo.convert(mode).convert("RGB"), np.float32)).mean()
    assert error < 12, f"{fmt}: mean error {error:.1f}"


def test_cmyk_jpeg_keeps_its_colours():
    red = Image.new("RGB", (64, 64), (220, 30, 30)).convert("CMYK")
    r, g, b = images.decode(encode(red, "JPEG", quality=95)).getpixel((32, 32))
    assert r > 180 and g < 80 and b < 80


def test_palette_transparency_and_16_bit():
    pal = Image.new("P", (64, 64), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.info["transparency"] = 0
    assert images.decode(encode(pal, "PNG")).getpixel((3, 3)) == (255, 255, 255)
    deep = Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    assert images.decode(encode(deep, "PNG")).getpixel((3, 3)) == (255, 255, 255)  # scaled to its own range


def test_animated_gif_and_webp_give_their_first_frame():
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("blue", "yellow", "green")]
    for fmt in ("GIF", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        r, g, b = images.decode(data).getpixel((32, 32))
        assert b > 200 and r < 60 and g < 60, fmt


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"", "not an image: the data is empty"),
        (b"<html>hi</html>", "not an image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>', "not an image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n", "not an image"),  # Pillow could: we refuse
        (encode(Image.new("RGB", (64, 64)), "PDF"), "not an image"),
        (encode(Image.new("RGB", (200, 200)), "JPEG")[:300], "not a readable image"),
        (encode(Image.new("L", (65_000, 1)), "PNG"), "image too small: 65000x1 pixels"),
        (encode(Image.new("RGB", (31, 400)), "PNG"), "image too small: 31x400"),
    ],
)
def test_unusable_input_is_named(data, needle):
    with pytest.raises(images.ImageError, match=re.escape(needle)):
        images.decode(data)


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"# HELP python_gc_objects_collected_total Objects collected\n", "text"),  # a /metrics page
        (b"  <!doctype html><title>router admin</title>", "HTML or XML"),
        (b'{"token": "secret"}', "JSON"),
        (b"\x00\x01\x02secret\xff", "binary data of an unknown kind"),
        ("é".encode() * 300, "text"),  # a character cut at the 512th byte is still text
    ],
)
def test_what_is_no_image_is_named_by_kind_never_by_its_bytes(data, kind):
    """A fetched URL inside fetch_allow's networks must not be readable a few bytes at a time."""
    with pytest.raises(images.ImageError) as refused:
        images.decode(data)
    assert f"it looks like {kind})" in str(refused.value)
    assert "HELP" not in str(refused.value) and "secret" not in str(refused.value)


def test_pixel_cap_is_checked_before_decoding():
    from imageserver import png_bomb

    with pytest.raises(images.ImageError, match=re.escape("image too large: 20000x20000 pixels is 400 MP > 40 MP")):
        images.decode(png_bomb())


def test_byte_cap():
    with pytest.raises(images.ImageError, match="image too large: 2,000 bytes > 1,000 bytes"):
        images.decode(b"\0" * 2000, images.ImageLimits(max_bytes=1000))


def test_pixel_cap():
    big = encode(Image.new("RGB", (3000, 3000), "white"))
    with pytest.raises(images.ImageError, match="pixels"):
        images.decode(big, images.ImageLimits(max_pixels=1_000_000))


def hostile_progressive_jpeg(repeats: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: each copy is another pass over the image."""
    data = encode(Image.new("RGB", (1200, 1200), (120, 80, 40)), "JPEG", progressive=True)
    last = data.rindex(b"\xff\xda")
    return data[:last] + data[last:-2] * repeats + b"\xff\xd9"


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding():
    normal = encode(Image.new("RGB", (640, 480), (10, 200, 30)), "JPEG", progressive=True)
    assert 2 <= normal.count(b"\xff\xda") <= 20 and images.decode(normal).size == (640, 480)
    assert images.decode(hostile_progressive_jpeg(50)).info["source_size"] == (1200, 1200)  # within the limit
    hostile = hostile_progressive_jpeg(2_000)
    with pytest.raises(images.ImageError, match=r"the JPEG has 2,0\d\d scans > 100"):  # counted, not decoded
        images.decode(hostile)


def test_the_pixel_budget_makes_a_decode_wait_then_answers_busy():
    from snapsource.errors import DecodersBusy

    budget = images.PixelBudget(pixels=100, wait=0.05)
    with budget.hold(60):
        with budget.hold(40):  # fits beside it
            assert budget.used == 100
        with pytest.raises(DecodersBusy) as busy:
            with budget.hold(50):
                pass
        assert busy.value.status == 503 and busy.value.headers == {"Retry-After": "1"}
    with budget.hold(10**9):  # larger than the budget: alone, not refused
        assert budget.used == 100
    assert budget.used == 0
