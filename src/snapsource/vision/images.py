"""Decoding and preparing images for the model.

Catalog photos and query photos go through exactly the same steps, so that an offer's own
photo finds the offer: decode (with JPEG DCT downscaling), apply EXIF orientation, flatten to RGB
on white, trim a wide uniform border (padding) if there is one, resize to the model's input.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import io
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from snapsource.config import Settings
from snapsource.errors import DecodersBusy, ParameterError
from snapsource.vision.card import LITE0_INPUT, Input

INPUT_SIZE = 224

# Formats a query or catalog photo may come in, and the extension its stored copy gets. Others
# that Pillow could open (EPS, PDF, PSD, ...) are refused: they are not photos, and some of their
# decoders run external programs.
FORMATS = {
    "JPEG": "jpg",
    "MPO": "jpg",  # phone cameras' multi-picture JPEG
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
    "HEIF": "heic",
}
_OPENERS = tuple(fmt for fmt in FORMATS if fmt != "MPO")  # Pillow opens MPO with its JPEG opener

# Pillow's own bomb check raises only at twice its limit; we check our own cap explicitly.
Image.MAX_IMAGE_PIXELS = None
Image.init()  # load every plugin, so that `formats=` finds them
pillow_heif.register_heif_opener()


class ImageError(ParameterError):
    """An image that cannot be used: unreadable, not an image, too large, too small."""


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 40_000_000
    max_bytes: int = 10_000_000
    min_side: int = 32
    # a progressive JPEG's scans each pass over the whole image: the encoders' own use 10 or so, a
    # hostile 672 KB one repeated a 23-byte scan 20,000 times and took 262 s to decode here
    max_jpeg_scans: int = 100

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_image_pixels, settings.max_image_bytes, settings.min_image_side)


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.3g} MP"


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    """The pixel limits, checked from the header before anything is decoded."""
    if width * height > limits.max_pixels:
        raise ImageError(
            f"image too large: {width}x{height} pixels is {_megapixels(width * height)} > {_megapixels(limits.max_pixels)}"
        )
    if min(width, height) < limits.min_side:
        raise ImageError(f"image too small: {width}x{height} pixels; at least {limits.min_side} pixels on each side are needed")


class PixelBudget:
    """The pixels this process decodes at once. Each decode holds its image's pixel count (at most
    the whole budget) until its pixels are reduced: 8 concurrent 39.7 MP PNGs took 3.8 GB here
    and kept 3.2 GB. A decode that finds no room within `wait` seconds answers 503, Retry-After."""

    def __init__(self, pixels: int = 50_000_000, wait: float = 10.0) -> None:
        self.pixels, self.wait = pixels, wait
        self.used = 0
        self._room = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        want = min(pixels, self.pixels)
        with self._room:
            if not self._room.wait_for(lambda: self.used + want <= self.pixels, timeout=self.wait):
                raise DecodersBusy(retry_after=self.wait)
            self.used += want
        try:
            yield
        finally:
            with self._room:
                self.used -= want
                self._room.notify_all()
            if pixels >= TRIM_ABOVE:
                trim_memory()


DECODING = PixelBudget()
# the EXIF orientations as Pillow's ImageOps.exif_transpose turns them
TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """RGB at 1/factor of each side (box filter); palette and bilevel images are made RGB first."""
    try:
        return to_rgb(img.reduce(factor))
    except ValueError:  # a mode reduce() does not take
        return to_rgb(img).reduce(factor)


TRIM_ABOVE = 8_000_000  # pixels: after a decode this large, freed memory goes back to the system
_LIBC = ctypes.util.find_library("c")


def trim_memory() -> None:
    """glibc's malloc_trim: a large decode's freed arenas go back to the system instead of
    staying in the process for the next one (elsewhere, nothing)."""
    try:
        ctypes.CDLL(_LIBC).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def check_scans(data: bytes, limits: ImageLimits) -> None:
    """A JPEG's scans counted from its start-of-scan markers before any is decoded. Entropy-coded
    data never holds FF DA (an FF there is followed by 00 or a restart marker), so the count is
    exact but for the few of an embedded EXIF thumbnail."""
    scans = data.count(b"\xff\xda")
    if scans > limits.max_jpeg_scans:
        raise ImageError(
            f"image refused: the JPEG has {scans:,} scans > {limits.max_jpeg_scans} (cameras and editors write about 10); "
            "save it again as a baseline or ordinary progressive JPEG"
        )


ORIENTATION = 0x0112  # the EXIF tag


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The size of a stored image once its EXIF orientation is applied: a quarter turn swaps sides."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


DRAFT_TARGET = INPUT_SIZE * 2  # JPEGs are decoded at the smallest DCT scale that keeps this size


def draft_scale(width: int, height: int, target: int = DRAFT_TARGET) -> int:
    """The DCT scale (1, 2, 4 or 8) at which Pillow's JPEG draft() decodes a width x height JPEG
    for `target`: the largest that keeps both sides at least `target` (the GPU path mirrors it)."""
    fits = min(width // target, height // target)
    return next((n for n in (8, 4, 2) if fits >= n), 1)


def content_kind(data: bytes) -> str:
    """What bytes that are no image look like, in words: never the bytes themselves, which would
    let a fetched URL inside fetch_allow's networks be read a few bytes at a time."""
    head = data[:512].lstrip()
    if head[:1] == b"<":
        return "HTML or XML"
    if head[:1] in (b"{", b"["):
        return "JSON"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the 512th byte is still text
        text = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else "\0"
    return "text" if all(c.isprintable() or c.isspace() for c in text) else "binary data of an unknown kind"


def decode(data: bytes, limits: ImageLimits = ImageLimits(), target: int = DRAFT_TARGET) -> Image.Image:
    """Decode bytes to an upright RGB image, downscaled at decode time where the format allows.

    The size is checked from the header, before any pixel is decoded (decompression bombs).
    Animated images (GIF, WebP) give their first frame.
    """
    if not data:
        raise ImageError("not an image: the data is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"image too large: {len(data):,} bytes > {limits.max_bytes:,} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=_OPENERS)
            width, height = img.size
            check_size(width, height, limits)
            draftable = img.format in ("JPEG", "MPO")
            if draftable:
                check_scans(data, limits)
                img.draft("RGB", (target, target))
            held = img.size[0] * img.size[1]  # after draft: the pixels this decode will hold
            with DECODING.hold(held):
                orientation = img.getexif().get(ORIENTATION, 1)
                if not draftable and (factor := draft_scale(width, height, target)) > 1:
                    # as a JPEG's draft: the sides stay at least `target`; the EXIF turn after it
                    # (the reduced copy carries no EXIF)
                    out = _reduce(img, factor)
                    if orientation in TRANSPOSES:
                        out = out.transpose(TRANSPOSES[orientation])
                else:
                    out = to_rgb(ImageOps.exif_transpose(img))
            out.info["source_size"] = upright_size(width, height, orientation)  # before any downscaling
            return out
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"not an image: the data is none of {', '.join(sorted(set(FORMATS.values())))} (it looks like {content_kind(data)})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"not a readable image: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Flatten any mode to RGB; transparent pixels become white, as on a product page."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    img.load()
    return img


def content_box(
    img: Image.Image, min_margin: float, tolerance: int = 14, flatness: float = 2.5
) -> tuple[int, int, int, int] | None:
    """The box inside a uniform border, when that border is at least `min_margin` wide on a side.

    A border counts as padding only when it is flat: every pixel within `tolerance` of the corner
    colour and their mean deviation under `flatness`. Real photos on light backgrounds have
    texture and noise there, and trimming them was measured to hurt.
    """
    if min_margin <= 0:
        return None
    small = img.copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    return border_box(np.asarray(small), img.size, min_margin, tolerance, flatness)


THUMBNAIL = 256  # content_box looks for a border at this size


def border_box(
    small: np.ndarray, size: tuple[int, int], min_margin: float, tolerance: int = 14, flatness: float = 2.5
) -> tuple[int, int, int, int] | None:
    """content_box's test on a thumbnail (h, w, 3) of an image of `size`, the box in that image's
    pixels. gpu_images.border_boxes is the same test for a batch of thumbnails on a GPU."""
    # in half levels: the corners' median may fall between two levels, and int16 is ten times
    # faster here than float arithmetic
    arr = small.astype(np.int16) * 2
    h, w, _ = arr.shape
    corners = np.stack([arr[0, 0], arr[0, -1], arr[-1, 0], arr[-1, -1]])
    background = np.median(corners, axis=0).astype(np.int16)
    if np.abs(corners - background).max() > 2 * tolerance:
        return None
    distance = np.abs(arr - background)
    deviation = np.maximum(np.maximum(distance[..., 0], distance[..., 1]), distance[..., 2])  # each pixel's, once
    differs = deviation > 2 * tolerance
    rows = np.flatnonzero(differs.any(axis=1))
    cols = np.flatnonzero(differs.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    top, bottom, left, right = rows[0], h - 1 - rows[-1], cols[0], w - 1 - cols[-1]
    if max(top / h, bottom / h, left / w, right / w) < min_margin:
        return None
    margin = np.ones((h, w), dtype=bool)
    margin[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = False
    if deviation[margin].mean() / 2 > flatness:
        return None
    return scale_box((int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])), (w, h), size)


def scale_box(content: tuple[int, int, int, int], thumb: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The content's first and last column and row on a (w, h) thumbnail -> the box to keep in
    the image of `size`, with 2% of the thumbnail added around it."""
    first_col, first_row, last_col, last_row = content
    (w, h), (width, height) = thumb, size
    scale_x, scale_y = width / w, height / h
    pad = 0.02
    x1 = max(0.0, (first_col - pad * w) * scale_x)
    y1 = max(0.0, (first_row - pad * h) * scale_y)
    x2 = min(float(width), (last_col + 1 + pad * w) * scale_x)
    y2 = min(float(height), (last_row + 1 + pad * h) * scale_y)
    return int(x1), int(y1), int(round(x2)), int(round(y2))


def pixels(img: Image.Image, trim_margin: float, shape: Input | None = None) -> np.ndarray:
    """What the model sees of one image, before scaling: (size, size, 3) uint8 RGB, trimmed, then
    resized as the model's card says (`shape`: its input; None: the built-in model's).

    Ingest moves images in this form (a quarter of float32's bytes, and already channels-last
    for a GPU); `scale` turns a batch of them into the model's input.
    """
    shape = shape or LITE0_INPUT
    box = content_box(img, trim_margin)
    if box is not None:
        img = img.crop(box)
    resample = Image.Resampling.BICUBIC if shape.interpolation == "bicubic" else Image.Resampling.BILINEAR
    size = shape.size
    if shape.resize == "squash":
        return np.asarray(img.resize((size, size), resample), dtype=np.uint8)
    # torchvision's Resize(side) then CenterCrop(size) on a PIL image, to the pixel (open_clip, timm)
    side = math.floor(size / shape.crop_fraction)
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    other = int(side * long / short)
    resized = img.resize((side, other) if w <= h else (other, side), resample)
    left = int(round((resized.width - size) / 2.0))
    top = int(round((resized.height - size) / 2.0))
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def scale(batch: np.ndarray, shape: Input | None = None) -> np.ndarray:
    """(N, size, size, 3) uint8 -> (N, 3, size, size) float32, with the card's mean and std (the
    built-in model's: TF-style (x - 127) / 128); as torchvision's ToTensor and Normalize do it."""
    shape = shape or LITE0_INPUT
    x = batch.astype(np.float32)
    if shape.colour == "BGR":
        x = x[..., ::-1]
    if shape.range == 1:
        x = x / np.float32(255.0)
    mean = np.asarray(shape.mean, np.float32)
    std = np.asarray(shape.std, np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2))


def prepare(img: Image.Image, trim_margin: float, shape: Input | None = None) -> np.ndarray:
    """The model's input for one image: CHW float32, as its card says (`shape`; None: built-in)."""
    return scale(pixels(img, trim_margin, shape)[None], shape)[0]


def source_size(img: Image.Image) -> tuple[int, int]:
    """The upright size of the file a decoded image came from (regions are given in it)."""
    return img.info.get("source_size", img.size)


VIEW_SCALE = 0.7


def views(img: Image.Image, multi_crop: bool) -> list[Image.Image]:
    """What the model sees of a query photo: the photo, and with `multi_crop` also its centre and
    four corners at 70% of each side. A shop photo rarely frames the product as the catalog
    photo does; averaging the five framings was measured to help (docs/quality.md)."""
    if not multi_crop:
        return [img]
    w, h = img.size
    cw, ch = int(w * VIEW_SCALE), int(h * VIEW_SCALE)
    corners = [((w - cw) // 2, (h - ch) // 2), (0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch)]
    return [img, *(img.crop((x, y, x + cw, y + ch)) for x, y in corners)]


def sniff_extension(data: bytes) -> str:
    """File extension for stored copies, from the bytes rather than the name."""
    with Image.open(io.BytesIO(data), formats=_OPENERS) as img:
        return FORMATS.get(img.format or "", "img")
