"""Every object in a photo, from its pixels: what tells the products of a kit apart.

The model's activation map (`localise`) is 7x7 cells: two products a few cells apart melt into
one blob. Here the photo itself is read, at up to `WORK` pixels a side:

1. The background is modelled from a band along the photo's border. A plain one (the band's
   colours all close to their median) is that colour; a busy one (wood, fabric, stripes, noise)
   is the histogram of its smoothed colours.
2. Pixels unlike that model are foreground: far from the colour, or of a colour the border
   hardly shows.
3. Morphology: an opening drops specks, a closing joins a product's parts, holes are filled.
4. Connected components give boxes; boxes too small are dropped, boxes that overlap much are
   merged, and the rest come largest first, scaled back to the photo's pixels.

`combine` then merges these boxes with the activation blobs: on a plain background the
components are exact and stand alone; on a busy one the blobs that no component explains follow
them. A photo of one product keeps its activation blob, as before.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from PIL import Image

from snapsource.vision.localise import Box

WORK = 640  # the long side the mask is computed at
BAND = 0.03  # the border band: this share of the short side
PLAIN = 18.0  # a border whose 90th-percentile deviation from its median is under this is plain
LEVELS = 12  # quantisation levels per channel of a busy background's colour histogram
RARE = 0.00025  # a colour under this share of the border's pixels is not background
MIN_AREA = 0.004  # a component under this share of the photo is a speck
MIN_SIDE = 0.04  # a box under this share of the photo's short side, either way, is a speck
MERGE = 0.3  # boxes overlapping by this IoU, or the smaller this much inside the larger, merge
INSIDE = 0.7
CLOSE_PLAIN = 0.02  # the closing's width, as a share of the short side
CLOSE_BUSY = 0.035
TEXTURE = 4.0  # the window (Gaussian sigma, working pixels) of the local texture's energy
SMOOTHER = 0.5  # a pixel whose texture energy is under this share of the border's 5th percentile


@dataclasses.dataclass(frozen=True)
class Objects:
    """The boxes found, largest first, in the photo's pixels, and whether its background is plain."""

    boxes: tuple[Box, ...]
    plain: bool


def iou(a: Box, b: Box) -> float:
    inter = _intersection(a, b)
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def _intersection(a: Box, b: Box) -> int:
    return max(0, min(a.x2, b.x2) - max(a.x1, b.x1)) * max(0, min(a.y2, b.y2) - max(a.y1, b.y1))


def _overlaps(a: Box, b: Box) -> bool:
    """Much overlap: an IoU over MERGE, or the smaller box mostly inside the other."""
    inter = _intersection(a, b)
    return iou(a, b) >= MERGE or inter >= INSIDE * min(a.area, b.area)


def find(img: Image.Image, limit: int = 5) -> Objects:
    """The objects of a photo (any mode, as decoded) against its background."""
    rgb = img.convert("RGB")
    width, height = rgb.size
    scale = min(1.0, WORK / max(width, height))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)
    arr = cv2.GaussianBlur(np.asarray(rgb, np.float32), (0, 0), 1.2)
    h, w, _ = arr.shape
    if min(h, w) < 16:
        return Objects((), True)
    band = max(2, round(BAND * min(h, w)))
    border = np.concatenate(
        [arr[:band].reshape(-1, 3), arr[-band:].reshape(-1, 3), arr[:, :band].reshape(-1, 3), arr[:, -band:].reshape(-1, 3)]
    )
    median = np.median(border, axis=0)
    spread = float(np.percentile(np.abs(border - median).max(axis=1), 90))
    plain = spread < PLAIN
    if plain:
        foreground = _channel_max(np.abs(arr - median)) > max(24.0, 2.0 * spread + 10.0)
    else:
        foreground = _rare_colours(arr, band)
    mask = _clean(foreground.astype(np.uint8), min(h, w), plain)
    boxes = _components(mask, plain)
    sx, sy = width / w, height / h
    scaled = [Box(int(b.x1 * sx), int(b.y1 * sy), min(width, round(b.x2 * sx)), min(height, round(b.y2 * sy))) for b in boxes]
    return Objects(tuple(scaled[:limit]), plain)


def _channel_max(arr: np.ndarray) -> np.ndarray:
    """arr.max(axis=2) of an (h, w, 3) array, the same values: numpy reduces a last axis of three
    slowly (9 ms of a 640 px photo's 29)."""
    return np.maximum(np.maximum(arr[..., 0], arr[..., 1]), arr[..., 2])


def _rare_colours(arr: np.ndarray, band: int) -> np.ndarray:
    """Pixels whose smoothed colour is rare in the border band: a busy background's model."""
    smooth = cv2.GaussianBlur(arr, (0, 0), 2.5)
    bins = np.clip(smooth * (LEVELS / 256.0), 0, LEVELS - 1).astype(np.int32)
    index = (bins[..., 0] * LEVELS + bins[..., 1]) * LEVELS + bins[..., 2]
    edge = np.zeros(index.shape, bool)
    edge[:band], edge[-band:], edge[:, :band], edge[:, -band:] = True, True, True, True
    counts = np.bincount(index[edge], minlength=LEVELS**3).astype(np.float32)
    # a colour next to a common one is common too: the texture's shades between levels
    share = cv2.GaussianBlur(counts.reshape(LEVELS, -1), (0, 0), 0.6).reshape(-1)
    rare = (share / share.sum())[index] < RARE
    # and pixels smoother than the border's texture: a studio photo's product is flatter than wood
    grey = (arr[..., 0] + arr[..., 1] + arr[..., 2]) / np.float32(3)  # arr.mean(axis=2), three times faster
    mean = cv2.GaussianBlur(grey, (0, 0), TEXTURE)
    energy = np.sqrt(np.maximum(cv2.GaussianBlur(grey * grey, (0, 0), TEXTURE) - mean * mean, 0))
    floor = float(np.percentile(energy[edge], 5))
    return rare | (energy < SMOOTHER * floor)


def _clean(mask: np.ndarray, side: int, plain: bool = True) -> np.ndarray:
    """Opening, closing and filled holes: one solid blob per object. A busy background's mask has
    more holes (a product's colours that the texture shows too): a wider closing joins them."""
    small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, small)
    k = max(3, int(side * (CLOSE_PLAIN if plain else CLOSE_BUSY)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    k = max(3, int(side * 0.02) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    # holes: background pixels that the border's background cannot reach
    padded = np.pad(mask, 1)
    reach = padded.copy()
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(reach, flood, (0, 0), 1)
    return mask | (reach[1:-1, 1:-1] == 0).astype(np.uint8)


def _components(mask: np.ndarray, plain: bool) -> list[Box]:
    """Boxes of the mask's connected components: specks dropped, overlapping boxes merged."""
    h, w = mask.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = []
    for label in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[label])
        if area < MIN_AREA * h * w or min(bw, bh) < MIN_SIDE * min(h, w):
            continue
        if not plain and bw * bh > 0.9 * h * w:  # the busy background itself, mistaken
            continue
        boxes.append(Box(x, y, x + bw, y + bh))
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if _overlaps(a, b):
                    boxes[i] = Box(min(a.x1, b.x1), min(a.y1, b.y1), max(a.x2, b.x2), max(a.y2, b.y2))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes, key=lambda b: -b.area)


def combine(objects: Objects, blobs: list[Box], limit: int = 5) -> list[Box]:
    """One list of product boxes from the components (largest first) and the activation blobs
    (strongest first), without duplicates. With fewer than two components the blobs stand as they
    are: a photo of one product keeps the box it always had. On a plain background the components
    are exact and stand alone; on a busy one a blob that no component explains is added after
    them (a product whose colours the texture shares), unless it spans several components (the
    products melted together in the coarse map)."""
    if len(objects.boxes) < 2:
        return blobs[:limit]
    components = list(objects.boxes)
    boxes = components[:limit]
    if not objects.plain:
        for blob in blobs:
            spans = sum(_intersection(blob, c) >= 0.5 * c.area for c in components) >= 2
            if not spans and not any(_overlaps(blob, kept) for kept in boxes):
                boxes.append(blob)
    return boxes[:limit]
