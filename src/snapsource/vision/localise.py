"""Where the products are in a photo, from the embedding model's own activations.

No detector is shipped (none exists on PyPI with usable weights), so we read the CNN that
embeds the photo anyway, as SCDA does (Wei et al., 2017): summed over channels, the last feature
map is high where the network sees an object. Cells above the map's mean form connected blobs;
each blob's bounding box is a region, strongest first. A shop photo of a carton held in a hand
yields the carton; a shelf of apples yields one box over the apples.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Box:
    """A box in pixels: x1, y1 inclusive, x2, y2 exclusive."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def area(self) -> int:
        return max(0, self.x2 - self.x1) * max(0, self.y2 - self.y1)

    def wire(self) -> list[int]:
        """The response form: [x1, y1, x2, y2]."""
        return [self.x1, self.y1, self.x2, self.y2]

    def corners(self) -> tuple[int, int, int, int]:
        """Pillow's box form: (x1, y1, x2, y2), for Image.crop."""
        return self.x1, self.y1, self.x2, self.y2

    def scaled(self, sx: float, sy: float, width: int, height: int) -> Box:
        """The same box in an image `sx`, `sy` times as large, clipped to width x height."""
        return Box(
            max(0, min(width - 1, int(self.x1 * sx))),
            max(0, min(height - 1, int(self.y1 * sy))),
            max(1, min(width, round(self.x2 * sx))),
            max(1, min(height, round(self.y2 * sy))),
        )

    @classmethod
    def parse(cls, text: str, width: int, height: int) -> Box:
        """The `region` parameter: "x1,x2,y1,y2" in pixels (1688's order), clipped to the image."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4 or not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError("region must be four integers x1,x2,y1,y2 (pixels, 1688's order), e.g. 10,410,25,300")
        x1, x2, y1, y2 = (int(p) for p in parts)
        x1, x2 = sorted((max(0, x1), min(width, x2)))
        y1, y2 = sorted((max(0, y1), min(height, y2)))
        if x2 - x1 < 8 or y2 - y1 < 8:
            raise ValueError(f"region {text} leaves less than 8x8 pixels of this {width}x{height} image")
        return cls(x1, y1, x2, y2)


def regions(feature_map: np.ndarray, width: int, height: int, limit: int = 5) -> list[Box]:
    """Boxes of the objects in an image of width x height, from its (C, h, w) feature map."""
    activation = feature_map.sum(axis=0)
    mask = activation > activation.mean()
    grid_h, grid_w = mask.shape
    seen = np.zeros_like(mask)
    blobs: list[tuple[float, Box]] = []
    for i in range(grid_h):
        for j in range(grid_w):
            if not mask[i, j] or seen[i, j]:
                continue
            cells, stack = [], [(i, j)]
            seen[i, j] = True
            while stack:
                y, x = stack.pop()
                cells.append((y, x))
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < grid_h and 0 <= nx < grid_w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
            ys, xs = zip(*cells)
            mass = float(sum(activation[y, x] for y, x in cells))
            # a cell's receptive field spills over its neighbours: widen the box by half a cell
            box = Box(
                int(max(0.0, (min(xs) - 0.5) * width / grid_w)),
                int(max(0.0, (min(ys) - 0.5) * height / grid_h)),
                int(min(float(width), (max(xs) + 1.5) * width / grid_w)),
                int(min(float(height), (max(ys) + 1.5) * height / grid_h)),
            )
            blobs.append((mass, box))
    blobs.sort(key=lambda blob: -blob[0])
    if not blobs:
        return []
    strongest = blobs[0][0]
    return [box for mass, box in blobs[:limit] if mass >= 0.1 * strongest]
