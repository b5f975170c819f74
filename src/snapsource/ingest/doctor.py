"""Consistency of a data dir: offers, image rows, image files and index vectors agree.

An import killed midway (power cut, OOM killer, SIGKILL) leaves the database ahead of the index:
offers and images are committed chunk by chunk, while vectors reach disk at checkpoints. Nothing
is lost, since the photos are stored, but until it is repaired a search misses those images.
`check` finds every disagreement; `repair` resolves it: vectors without an image row are removed,
image rows no offer shows are deleted with their files, and missing vectors are embedded again from
the stored photos. `snapsource doctor` runs it on demand, `snapsource serve` at start-up.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snapsource.resources import Resources
from snapsource.store.catalog import StoredImage
from snapsource.vision import images

BATCH = 32


@dataclasses.dataclass
class Findings:
    offers: int = 0
    images: int = 0
    vectors: int = 0
    orphan_vectors: list[int] = dataclasses.field(default_factory=list)  # in the index, no image row
    unused_images: list[StoredImage] = dataclasses.field(default_factory=list)  # no offer shows them
    missing_vectors: list[StoredImage] = dataclasses.field(default_factory=list)  # shown, not indexed
    missing_files: list[StoredImage] = dataclasses.field(default_factory=list)  # row, no file
    repaired: bool = False

    @property
    def consistent(self) -> bool:
        return not (self.orphan_vectors or self.unused_images or self.missing_vectors or self.missing_files)

    def summary(self) -> str:
        state = "consistent" if self.consistent else "INCONSISTENT"
        return (
            f"{state}: {_count(self.offers, 'offer')}, {_count(self.images, 'image')}, {_count(self.vectors, 'vector')}; "
            f"{_count(len(self.orphan_vectors), 'vector')} without an image, {_count(len(self.unused_images), 'image')} "
            f"no offer shows, {_count(len(self.missing_vectors), 'image')} without a vector, "
            f"{_count(len(self.missing_files), 'image file')} missing"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def check(resources: Resources) -> Findings:
    catalog, index = resources.catalog, resources.index
    rows = {image.id: image for image in catalog.all_images()}
    shown = catalog.shown_image_ids()
    indexed = set(index.ids().tolist())
    return Findings(
        offers=catalog.count(),
        images=len(rows),
        vectors=len(indexed),
        orphan_vectors=sorted(indexed - set(rows)),
        unused_images=[rows[i] for i in sorted(set(rows) - shown)],
        missing_vectors=[rows[i] for i in sorted((shown & set(rows)) - indexed)],
        missing_files=[img for img in rows.values() if not catalog.image_file(img.sha256, img.ext).is_file()],
    )


def repair(resources: Resources, found: Findings | None = None) -> Findings:
    """Make the data dir consistent, then check again (a check's findings can be passed in).
    Missing image files cannot be repaired here; alone, they leave nothing to do (a catalog of a
    million offers takes seconds to check)."""
    catalog, index = resources.catalog, resources.index
    found = found or check(resources)
    lost = {img.id for img in found.missing_files}
    missing = [img for img in found.missing_vectors if img.id not in lost]
    if not (found.orphan_vectors or found.unused_images or missing):
        found.repaired = True
        return found
    if found.orphan_vectors or found.unused_images:
        index.remove(np.asarray(found.orphan_vectors + [i.id for i in found.unused_images], dtype=np.int64))
        index.save()  # vectors go first: a crash now leaves rows without vectors, which we repair
        catalog.delete_images(found.unused_images)
    limits = images.ImageLimits.of(resources.settings)
    for start in range(0, len(missing), BATCH):
        batch = missing[start : start + BATCH]
        arrays = [
            images.prepare(
                images.decode(catalog.image_file(i.sha256, i.ext).read_bytes(), limits),
                resources.settings.trim_margin,
                resources.embedder.card.input,
            )
            for i in batch
        ]
        index.add(np.asarray([i.id for i in batch], dtype=np.int64), resources.embedder.embed(np.stack(arrays)))
    if missing:
        index.save()
    after = check(resources)
    after.repaired = True
    return after
