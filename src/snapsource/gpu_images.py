"""Decoding and preparing catalog JPEGs on the GPU (nvJPEG through torchvision), for bulk ingest.

PIL decodes about 60 luma photos a second per core (about 1,000 on 16 cores), while the GPU embeds
tens of thousands: on a GPU machine the CPU's decoding is the limit. These are the steps of
`images.decode` and `images.pixels` again, in torch on the card:

- the header is read by PIL without decoding pixels: the same size limits, and the EXIF
  orientation; only RGB and grey JPEGs come here, the rest (PNG, WebP, CMYK, ...) is decoded on
  the CPU as before;
- one nvJPEG call decodes a batch; an image it cannot decode goes back to the CPU path, which
  reports it if PIL cannot read it either (nothing is refused here that the CPU takes);
- orientation by flips and transposes; the trim box by `images.border_box` on a 256 px thumbnail
  made on the card; crop, then an antialiased bicubic resize to 224 x 224, as PIL's;
- with geometric re-ranking on, the grey 256 px photo that SIFT reads (`verify.extract_gray`).

The results differ from PIL's by rounding and by PIL's DCT downscaling (`draft`), not by method:
vectors agree within cosine 0.999 (tests/test_gpu_images.py, benchmarks/gpu_ingest.py).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import images, verify

if TYPE_CHECKING:
    import torch

ORIENTATION = 0x0112
JpegDecoder = Callable[[list[bytes]], list["torch.Tensor"]]


@dataclasses.dataclass(frozen=True)
class Header:
    """What decoding needs to know before it starts: the stored size and how to turn it upright."""

    width: int
    height: int
    orientation: int

    @property
    def size(self) -> tuple[int, int]:
        """The upright size (as images.source_size gives it)."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def header(data: bytes, limits: images.ImageLimits) -> Header | None:
    """The header of a JPEG that nvJPEG can decode, checked against the limits; None for anything
    the CPU should decode (another format, CMYK, an unreadable header: the CPU path says why)."""
    if not data or len(data) > limits.max_bytes or data[:2] != b"\xff\xd8":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=("JPEG",))
            if img.mode not in ("RGB", "L"):
                return None
            images.check_size(*img.size, limits)
            return Header(img.width, img.height, int(img.getexif().get(ORIENTATION, 1) or 1))
    except images.ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return None


def jpeg_decoder(device: torch.device) -> JpegDecoder:
    """Bytes -> (3, H, W) uint8 tensors on `device`, as stored (not turned upright).

    nvJPEG (torchvision.io.decode_jpeg on a CUDA device, one call per batch) where torchvision
    is installed; without it, on the CPU only, PIL decodes at full size (no draft), so that the
    rest of this module runs anywhere and is tested without a GPU.
    """
    import torch

    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        if device.type == "cuda":
            raise RuntimeError("decoding on the GPU needs torchvision (with nvJPEG), matching your torch") from None

        def decode_with_pil(datas: list[bytes]) -> list[torch.Tensor]:
            out = []
            for data in datas:
                with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
                    out.append(torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))
            return out

        return decode_with_pil

    def decode_with_torchvision(datas: list[bytes]) -> list[torch.Tensor]:
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))

    return decode_with_torchvision


def nvjpeg_problem() -> str | None:
    """Why JPEGs cannot be decoded on the GPU here, or None."""
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return "torchvision is not installed"
    return None


def upright(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) as stored -> upright, as PIL's ImageOps.exif_transpose turns it."""
    import torch

    if orientation == 2:  # mirrored
        return pixels.flip(-1)
    if orientation == 3:
        return pixels.flip(-2, -1)
    if orientation == 4:
        return pixels.flip(-2)
    if orientation == 5:  # PIL's TRANSPOSE
        return pixels.transpose(-2, -1)
    if orientation == 6:  # PIL's ROTATE_270: a quarter turn clockwise
        return torch.rot90(pixels, -1, dims=(-2, -1))
    if orientation == 7:  # PIL's TRANSVERSE
        return pixels.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # PIL's ROTATE_90
        return torch.rot90(pixels, 1, dims=(-2, -1))
    return pixels


def thumbnail_size(width: int, height: int, box: int = images.THUMBNAIL) -> tuple[int, int]:
    """The size PIL's Image.thumbnail((box, box)) gives: the aspect kept, each side at most box."""
    if width <= box and height <= box:
        return width, height
    aspect = width / height
    if aspect <= 1:
        w = max(min(math.floor(box * aspect), math.ceil(box * aspect), key=lambda n: abs(aspect - n / box)), 1)
        return w, box
    h = max(min(math.floor(box / aspect), math.ceil(box / aspect), key=lambda n: 0 if n == 0 else abs(aspect - box / n)), 1)
    return box, h


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


# Pillow's resampling filters and their supports (libImaging/Resample.c)
FILTERS: dict[str, tuple[Callable[[float], float], float]] = {
    "box": (_box, 0.5),
    "bilinear": (_bilinear, 1.0),
    "bicubic": (_bicubic, 2.0),
}


@functools.lru_cache(maxsize=4096)
def _weights(size_in: int, size_out: int, name: str) -> np.ndarray:
    """Pillow's coefficients for resizing one axis from size_in to size_out: (size_out, size_in).

    Pillow samples its filter at input pixel centres over a window widened by the scale when it
    shrinks (that is its antialiasing), and normalises each output's weights to 1.
    """
    fn, support = FILTERS[name]
    scale = size_in / size_out
    filterscale = max(scale, 1.0)
    support *= filterscale
    out = np.zeros((size_out, size_in), dtype=np.float64)
    for xx in range(size_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), size_in)
        w = np.array([fn((x + 0.5 - center) / filterscale) for x in range(xmin, xmax)])
        out[xx, xmin:xmax] = w / w.sum() if w.sum() else w
    return out.astype(np.float32)


def _resize(pixels: torch.Tensor, size: tuple[int, int], name: str) -> torch.Tensor:
    """(C, H, W) float holding integers -> (C, h, w), as Pillow's resize(size, filter) gives it:
    the horizontal pass, rounded to 8 bits, then the vertical one (size is (w, h))."""
    import torch

    w, h = size
    if pixels.shape[-1] != w:
        weights = torch.from_numpy(_weights(int(pixels.shape[-1]), w, name)).to(pixels.device)
        pixels = _round(pixels @ weights.T).clamp_(0, 255)
    if pixels.shape[-2] != h:
        weights = torch.from_numpy(_weights(int(pixels.shape[-2]), h, name)).to(pixels.device)
        pixels = _round(weights @ pixels).clamp_(0, 255)
    return pixels


def _draft(pixels: torch.Tensor, scale: int) -> torch.Tensor:
    """(C, H, W) float at full size -> what PIL's draft() decodes at DCT scale 1/scale: the mean
    of each scale x scale block (the last partial ones padded with their edge), rounded.

    nvJPEG decodes at full size only; without this step the trim box and the vectors drift from
    the CPU's (on luma: min cosine 0.935 without it, 0.997 with it)."""
    import torch.nn.functional as F

    if scale == 1:
        return pixels
    h, w = pixels.shape[-2:]
    padded = F.pad(pixels[None], (0, -w % scale, 0, -h % scale), mode="replicate")
    return _to_uint8(F.avg_pool2d(padded, scale)[0]).float()


def _round(pixels: torch.Tensor) -> torch.Tensor:
    """Halves up, as Pillow's fixed-point arithmetic rounds (torch.round rounds them to even)."""
    return pixels.add_(0.5).floor_()


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    import torch

    return _round(pixels).clamp_(0, 255).to(torch.uint8)


@dataclasses.dataclass
class Prepared:
    """A batch made ready on the card: pixels of the images that decoded, in order, and which failed."""

    pixels: torch.Tensor  # (n, 224, 224, 3) uint8 on the device, for TorchEmbedder.embed_pixels
    done: list[int]  # positions in the batch given to prepare()
    failed: list[int]  # positions the CPU should decode instead
    gray: list[np.ndarray] | None  # per done image: (h, w) uint8 at verify.SIDE, for SIFT


class GpuImages:
    """images.decode + images.pixels for batches of JPEGs, on `device`."""

    def __init__(self, device: torch.device | str, trim_margin: float, local: bool, decode: JpegDecoder | None = None) -> None:
        import torch

        self.device = torch.device(device)
        self.trim_margin = trim_margin
        self.local = local
        self.decode = decode or jpeg_decoder(self.device)

    def _decode(self, datas: list[bytes]) -> list[torch.Tensor | None]:
        """nvJPEG gives nothing for a batch with one bad image: then each is decoded alone."""
        try:
            return list(self.decode(datas))
        except (RuntimeError, OSError, ValueError):  # nvJPEG raises RuntimeError, PIL OSError
            out: list[torch.Tensor | None] = []
            for data in datas:
                try:
                    out.append(self.decode([data])[0])
                except (RuntimeError, OSError, ValueError):
                    out.append(None)
            return out

    def prepare(self, datas: Sequence[bytes], headers: Sequence[Header]) -> Prepared:
        import torch

        decoded = self._decode(list(datas))
        done, failed, oriented = [], [], []
        for position, (pixels, head) in enumerate(zip(decoded, headers)):
            if pixels is None or pixels.shape[-2:] != (head.height, head.width):
                failed.append(position)
                continue
            done.append(position)
            pixels = _draft(pixels.to(self.device).float(), images.draft_scale(head.width, head.height))
            oriented.append(upright(pixels, head.orientation))
        boxes = self._boxes(oriented)
        out = torch.empty((len(oriented), images.INPUT_SIZE, images.INPUT_SIZE, 3), dtype=torch.uint8, device=self.device)
        for i, (pixels, box) in enumerate(zip(oriented, boxes)):
            if box is not None:
                x1, y1, x2, y2 = box
                pixels = pixels[:, y1:y2, x1:x2]
            size = (images.INPUT_SIZE, images.INPUT_SIZE)
            out[i] = _to_uint8(_resize(pixels, size, "bicubic")).permute(1, 2, 0)
        return Prepared(out, done, failed, self._grays(oriented) if self.local else None)

    def _boxes(self, oriented: list[torch.Tensor]) -> list[tuple[int, int, int, int] | None]:
        """The trim box of each image, found on thumbnails copied to the host in one transfer."""
        if self.trim_margin <= 0 or not oriented:
            return [None] * len(oriented)
        sizes = [(int(p.shape[-1]), int(p.shape[-2])) for p in oriented]
        thumbs = [_to_uint8(_resize(p, thumbnail_size(*size), "box")).permute(1, 2, 0) for p, size in zip(oriented, sizes)]
        return [images.border_box(t, size, self.trim_margin) for t, size in zip(_to_host(thumbs), sizes)]

    def _grays(self, oriented: list[torch.Tensor]) -> list[np.ndarray]:
        """PIL's "L" conversion (ITU-R 601-2 luma, its integer rounding), then a bilinear resize."""
        weights = [19595 / 65536, 38470 / 65536, 7471 / 65536]
        grays = []
        for p in oriented:
            gray = _round(p[0] * weights[0] + p[1] * weights[1] + p[2] * weights[2])[None]
            grays.append(_to_uint8(_resize(gray, verify.side_size(int(p.shape[-1]), int(p.shape[-2])), "bilinear"))[0])
        return _to_host(grays)


def _to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Many small device tensors -> numpy arrays, through one copy."""
    import torch

    if not tensors:
        return []
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu().numpy()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].reshape(tuple(t.shape)))
        start += t.numel()
    return out
