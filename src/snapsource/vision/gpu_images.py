"""Decoding and preparing catalog JPEGs on the GPU (nvJPEG through torchvision), for bulk ingest.

PIL decodes about 60 luma photos a second per core (about 1,000 on 16 cores), while the GPU embeds
tens of thousands: on a GPU machine the CPU's decoding is the limit. These are the steps of
`images.decode` and `images.pixels` again, in torch on the card:

- the header is read by PIL without decoding pixels: the same size limits, and the EXIF
  orientation; only baseline RGB and grey JPEGs come here, the rest (progressive JPEGs, PNG,
  WebP, CMYK, ...) is decoded by the CPU's decoder processes meanwhile;
- one nvJPEG call decodes a batch; an image it cannot decode goes back to the CPU path, which
  reports it if PIL cannot read it either (nothing is refused here that the CPU takes);
- PIL's DCT downscaling (`draft`) as a block mean; orientation by flips and transposes; the trim
  test of `images.border_box`, batched, on a 256 px thumbnail made on the card; crop, then a
  resize to 224 x 224 with Pillow's own resampling coefficients;
- with geometric re-ranking on, the grey 256 px photo that SIFT reads (`verify.extract_gray`).

The results differ from PIL's by rounding and by the draft (libjpeg reduces with a smaller IDCT,
not a block mean), not by method: on the luma photos the vectors' cosine to the CPU's is 0.9997 at
the median and 0.997 at the least (tests/test_gpu_images.py; benchmarks/gpu_ingest.py with nvJPEG).
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

from snapsource.vision import images, verify

if TYPE_CHECKING:
    import torch

GROUP = 32  # images of one size prepared at once: 32 luma photos are about 0.6 GB as float32
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
        return images.upright_size(self.width, self.height, self.orientation)


def header(data: bytes, limits: images.ImageLimits, progressive: bool = False) -> Header | None:
    """The header of a JPEG for nvJPEG, checked against the limits; None for anything the CPU
    should decode: another format, CMYK, an unreadable header (the CPU path says why), and, unless
    `progressive`, progressive JPEGs. nvJPEG batch-decodes baseline JPEGs on the GPU's hardware
    decoder but progressive ones one at a time with Huffman decoding on one CPU thread (torchvision's
    decode_jpegs_cuda.cpp), while the decoder processes have every core."""
    if not data or len(data) > limits.max_bytes or data[:2] != b"\xff\xd8":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=("JPEG",))
            if img.mode not in ("RGB", "L"):
                return None
            if not progressive and (img.info.get("progressive") or img.info.get("progression")):
                return None
            images.check_size(*img.size, limits)
            return Header(img.width, img.height, int(img.getexif().get(images.ORIENTATION, 1) or 1))
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


@functools.lru_cache(maxsize=8)
def nvjpeg_problem(device: str = "cuda") -> str | None:
    """Why JPEGs cannot be decoded on `device` here, or None: one small JPEG is decoded to know."""
    try:
        import torch
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return "torchvision is not installed"
    probe = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(probe, "JPEG")
    try:
        decoded = jpeg_decoder(torch.device(device))([probe.getvalue()])[0]
    except (RuntimeError, OSError, ValueError) as exc:
        return f"torchvision could not decode a JPEG on {device}: {exc}"
    return None if tuple(decoded.shape) == (3, 48, 64) else f"torchvision decoded a JPEG on {device} as {tuple(decoded.shape)}"


def upright(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """(..., H, W) as stored -> upright, as PIL's ImageOps.exif_transpose turns it."""
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


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(x.dtype)


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    return (1.0 - x.abs()).clamp_(min=0.0)


def _bicubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    import torch

    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


# Pillow's resampling filters and their supports (libImaging/Resample.c)
FILTERS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "box": (_box, 0.5),
    "bilinear": (_bilinear, 1.0),
    "bicubic": (_bicubic, 2.0),
}


def _weights(starts: torch.Tensor, lengths: torch.Tensor, size_in: int, size_out: int, name: str) -> torch.Tensor:
    """Pillow's coefficients for resizing the span [start, start + length) of an axis of size_in
    pixels to size_out, for n spans at once: (n, size_out, size_in), zero outside each span.

    Pillow samples its filter at input pixel centres over a window widened by the scale when it
    shrinks (that is its antialiasing), and normalises each output's weights to 1. Computed in
    float64, as Pillow does, on the spans' device.
    """
    import torch

    fn, support = FILTERS[name]
    device = starts.device
    lengths = lengths.to(torch.float64)
    scale = (lengths / size_out)[:, None, None]  # (n, 1, 1)
    filterscale = scale.clamp(min=1.0)
    center = (torch.arange(size_out, device=device, dtype=torch.float64)[None, :, None] + 0.5) * scale  # (n, out, 1)
    x = torch.arange(size_in, device=device, dtype=torch.float64)[None, None, :] - starts.to(torch.float64)[:, None, None]
    reach = support * filterscale
    window = (x >= (center - reach + 0.5).floor().clamp(min=0)) & (
        x < torch.minimum((center + reach + 0.5).floor(), lengths[:, None, None])
    )
    weights = fn((x + 0.5 - center) / filterscale) * window
    total = weights.sum(dim=-1, keepdim=True)
    return (weights / torch.where(total == 0, 1.0, total)).to(torch.float32)


@functools.lru_cache(maxsize=1024)
def _weights_on(size_in: int, size_out: int, name: str, device: torch.device) -> torch.Tensor:
    """The weights for a whole axis, kept per size: (size_out, size_in)."""
    import torch

    zero, length = torch.zeros(1, device=device), torch.full((1,), size_in, device=device)
    return _weights(zero, length, size_in, size_out, name)[0]


def _resize(pixels: torch.Tensor, size: tuple[int, int], name: str) -> torch.Tensor:
    """(..., H, W) float holding integers -> (..., h, w), as Pillow's resize(size, filter) gives
    it: the horizontal pass, rounded to 8 bits, then the vertical one (size is (w, h))."""
    w, h = size
    if pixels.shape[-1] != w:
        pixels = _round(pixels @ _weights_on(int(pixels.shape[-1]), w, name, pixels.device).T).clamp_(0, 255)
    if pixels.shape[-2] != h:
        pixels = _round(_weights_on(int(pixels.shape[-2]), h, name, pixels.device) @ pixels).clamp_(0, 255)
    return pixels


def _crop_resize(batch: torch.Tensor, boxes: list[tuple[int, int, int, int] | None], size: int) -> torch.Tensor:
    """(n, C, H, W) -> (n, C, size, size): each image cropped to its box, then resized as Pillow
    does, for the whole batch in two batched products (the crop is where the weights are not 0)."""
    import torch

    n, _, height, width = batch.shape
    spans = torch.tensor([box or (0, 0, width, height) for box in boxes], device=batch.device)  # x1, y1, x2, y2
    wx = _weights(spans[:, 0], spans[:, 2] - spans[:, 0], width, size, "bicubic")
    wy = _weights(spans[:, 1], spans[:, 3] - spans[:, 1], height, size, "bicubic")
    rows = _round(batch @ wx.transpose(1, 2)[:, None]).clamp_(0, 255)
    return _round(wy[:, None] @ rows).clamp_(0, 255)


def _draft(pixels: torch.Tensor, scale: int) -> torch.Tensor:
    """(n, C, H, W) float at full size -> what PIL's draft() decodes at DCT scale 1/scale: the mean
    of each scale x scale block (the last partial ones padded with their edge), rounded.

    nvJPEG decodes at full size only, and that alone moves trim boxes and vectors (Pillow at full
    size against Pillow drafted: min cosine 0.935 on luma photos; this path with the step: 0.997)."""
    import torch.nn.functional as F

    if scale == 1:
        return pixels
    h, w = pixels.shape[-2:]
    padded = F.pad(pixels, (0, -w % scale, 0, -h % scale), mode="replicate")
    return _round(F.avg_pool2d(padded, scale))


def _round(pixels: torch.Tensor) -> torch.Tensor:
    """Halves up, as Pillow's fixed-point arithmetic rounds (torch.round rounds them to even)."""
    return pixels.add_(0.5).floor_()


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    import torch

    return _round(pixels).clamp_(0, 255).to(torch.uint8)


def border_boxes(
    thumbs: torch.Tensor, size: tuple[int, int], min_margin: float, tolerance: int = 14, flatness: float = 2.5
) -> list[tuple[int, int, int, int] | None]:
    """images.border_box for a batch of thumbnails (n, 3, h, w) of images of one `size`, on their
    device: the same test in the same half levels, and one copy of its results to the host."""
    import torch

    arr = thumbs * 2  # half levels, as images.border_box: the corners' median may fall between two
    n, _, h, w = arr.shape
    corners = torch.stack([arr[:, :, 0, 0], arr[:, :, 0, -1], arr[:, :, -1, 0], arr[:, :, -1, -1]], dim=1)
    middle = corners.sort(dim=1).values
    background = (middle[:, 1] + middle[:, 2]) / 2  # (n, 3): the median of four
    plain = (corners - background[:, None]).abs().amax(dim=(1, 2)) <= 2 * tolerance
    deviation = (arr - background[:, :, None, None]).abs().amax(dim=1)  # (n, h, w)
    differs = deviation > 2 * tolerance
    rows, cols = differs.any(dim=2), differs.any(dim=1)
    ys, xs = torch.arange(h, device=arr.device), torch.arange(w, device=arr.device)
    first_row, last_row = torch.where(rows, ys, h).amin(dim=1), torch.where(rows, ys, -1).amax(dim=1)
    first_col, last_col = torch.where(cols, xs, w).amin(dim=1), torch.where(cols, xs, -1).amax(dim=1)
    found = rows.any(dim=1) & cols.any(dim=1)
    widest = torch.stack([first_row / h, (h - 1 - last_row) / h, first_col / w, (w - 1 - last_col) / w], dim=1).amax(dim=1)
    inside = ((ys >= first_row[:, None]) & (ys <= last_row[:, None]))[:, :, None] & (
        (xs >= first_col[:, None]) & (xs <= last_col[:, None])
    )[:, None, :]
    margin = (~inside).sum(dim=(1, 2)).clamp(min=1)
    flat = (deviation * ~inside).sum(dim=(1, 2)) / margin / 2 <= flatness
    keep = plain & found & (widest >= min_margin) & flat
    table = torch.stack([keep.long(), first_col, first_row, last_col, last_row], dim=1).cpu().tolist()
    return [images.scale_box(tuple(row[1:]), (w, h), size) if row[0] else None for row in table]


@dataclasses.dataclass
class Prepared:
    """A batch made ready on the card: pixels of the images that decoded, in order, and which failed."""

    pixels: torch.Tensor  # (n, 224, 224, 3) uint8 on the device, for TorchEmbedder.embed_pixels
    done: list[int]  # positions in the batch given to prepare(), in order
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
        """Images of one stored size and orientation are prepared together, GROUP at a time."""
        import torch

        decoded: dict[int, torch.Tensor] = {}  # by position, the images that decoded at their stored size
        failed: list[int] = []
        groups: dict[tuple[int, int, int], list[int]] = {}
        for position, (pixels, head) in enumerate(zip(self._decode(list(datas)), headers)):
            if pixels is None or pixels.shape[-2:] != (head.height, head.width):
                failed.append(position)
            else:
                decoded[position] = pixels
                groups.setdefault((head.height, head.width, head.orientation), []).append(position)
        done: list[int] = []
        parts: list[torch.Tensor] = []
        grays: list[np.ndarray] = []
        for (height, width, orientation), positions in groups.items():
            for start in range(0, len(positions), GROUP):
                chunk = positions[start : start + GROUP]
                batch = torch.stack([decoded[p] for p in chunk]).to(self.device).float()
                batch = upright(_draft(batch, images.draft_scale(width, height)), orientation)
                parts.append(_to_uint8(_crop_resize(batch, self._boxes(batch), images.INPUT_SIZE)).permute(0, 2, 3, 1))
                if self.local:
                    grays.extend(self._grays(batch))
                done.extend(chunk)
        if not parts:
            empty = torch.empty((0, images.INPUT_SIZE, images.INPUT_SIZE, 3), dtype=torch.uint8, device=self.device)
            return Prepared(empty, [], failed, [] if self.local else None)
        order = sorted(range(len(done)), key=done.__getitem__)  # back to the order given
        pixels = torch.cat(parts)[torch.tensor(order, device=self.device)]
        return Prepared(pixels, sorted(done), failed, [grays[i] for i in order] if self.local else None)

    def _boxes(self, batch: torch.Tensor) -> list[tuple[int, int, int, int] | None]:
        """The trim box of each image of a batch, found on its thumbnail."""
        if self.trim_margin <= 0:
            return [None] * len(batch)
        size = (int(batch.shape[-1]), int(batch.shape[-2]))
        return border_boxes(_resize(batch, thumbnail_size(*size), "box"), size, self.trim_margin)

    def _grays(self, batch: torch.Tensor) -> list[np.ndarray]:
        """PIL's "L" conversion (ITU-R 601-2 luma, its integer rounding), then a bilinear resize."""
        r, g, b = batch[:, 0:1], batch[:, 1:2], batch[:, 2:3]
        gray = _round(r * (19595 / 65536) + g * (38470 / 65536) + b * (7471 / 65536))
        side = verify.side_size(int(batch.shape[-1]), int(batch.shape[-2]))
        return list(_to_uint8(_resize(gray, side, "bilinear"))[:, 0].cpu().numpy())
