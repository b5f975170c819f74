"""The models a data dir can embed with: the built-in ones, and those `snapsource model add` checked
and stored in `<data dir>/models/<id>/` (model.onnx and model.card.json beside it), which the
`model` setting names for serve and ingest alike.

A model is checked before it is stored, on real photos: the file loads, its input takes the card's
size, its output is the card's kind and dims, the vectors hold no NaN, the same photo gives the same
vector twice, and how long a photo takes here. A card that contradicts the file is refused with
what to fix.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np

from snapsource.vision import images
from snapsource.vision.card import Card, CardError
from snapsource.vision.model import PRECISIONS, default_model_path, lite0

FOLDER = "models"
FILE = "model.onnx"
CARD = "model.card.json"
CHECK_PHOTOS = 8
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".avif")


@dataclasses.dataclass(frozen=True)
class Stored:
    """A model this data dir can embed with."""

    card: Card
    path: Path
    built_in: bool

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0


@dataclasses.dataclass(frozen=True)
class Checked:
    """What `check` measured of a model file on real photos."""

    photos: int
    ms_per_photo: float
    spatial: tuple[int, ...] | None  # the (dims, h, w) map the boxes read, or None


def folder(data_dir: Path) -> Path:
    return data_dir / FOLDER


def stored(data_dir: Path) -> list[Stored]:
    """The built-in models (where their files are built), then the added ones, by id."""
    found = [Stored(lite0(p), default_model_path(p), True) for p in PRECISIONS]
    root = folder(data_dir)
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if (entry / FILE).is_file() and (entry / CARD).is_file():
                found.append(Stored(Card.load(entry / CARD), entry / FILE, False))
    return found


def find(data_dir: Path, model_id: str) -> Stored:
    """The model of this id; CardError naming the ids there are when none has it."""
    for model in stored(data_dir):
        if model.card.id == model_id:
            return model
    ids = ", ".join(m.card.id for m in stored(data_dir))
    raise CardError(f"no model {model_id!r} in {folder(data_dir)}: the models are {ids} (snapsource model add)")


def prepare(card: Card, photos: list[Path]) -> np.ndarray:
    """Photo files as the model's input batch, as its card says (untrimmed: as they are);
    CardError naming a photo that cannot be read."""
    batch = []
    for photo in photos:
        try:
            batch.append(images.prepare(images.decode(photo.read_bytes()), 0.0, card.input))
        except (OSError, images.ImageError) as exc:
            raise CardError(f"photo {photo}: {exc}: give --photos a folder of photos") from None
    return np.stack(batch)


def check(path: Path, card: Card, photos: list[Path], threads: int = 0) -> Checked:
    """Run the file on real photos as its card says; CardError with what to fix when they disagree."""
    import onnxruntime as ort

    from snapsource.vision.embed import pooled, spatial

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
        raise CardError(f"{path.name} is no ONNX model onnxruntime can load: {str(exc).splitlines()[0][:200]}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CardError(f"{path.name} takes {len(inputs)} inputs: an image encoder takes one, the photos")
    shape = inputs[0].shape
    size = card.input.size
    if len(shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(shape[1:], (3, size, size))):
        raise CardError(f"{path.name} takes input {shape}, not (N, 3, {size}, {size}) as the card's input.size says")
    if not photos:
        raise CardError("no photos to check the model on: give --photos DIR, or add it to a data dir with a catalog")
    prepared = prepare(card, photos[:CHECK_PHOTOS])
    name = inputs[0].name
    try:
        started = time.perf_counter()
        out = session.run(None, {name: prepared})[0]
        seconds = time.perf_counter() - started
        again = session.run(None, {name: prepared})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own types
        raise CardError(
            f"{path.name} cannot run on the card's input (N, 3, {size}, {size}): {str(exc).splitlines()[0][:200]}"
        ) from None
    spec = card.output
    want_rank = {"feature_map": 4, "tokens": 3, "pooled": 2}[spec.kind]
    if out.ndim != want_rank:
        guess = {4: "feature_map", 3: "tokens", 2: "pooled"}.get(out.ndim, "none of them")
        raise CardError(f"{path.name} answers shape {out.shape}, not a {spec.kind} output: its kind is {guess}")
    dims = out.shape[1] if spec.kind == "feature_map" else out.shape[-1]
    if dims != spec.dims:
        raise CardError(f"{path.name} answers {dims} dims, not the card's output.dims = {spec.dims}")
    if not np.isfinite(out).all():
        raise CardError(f"{path.name} answers NaN or infinite values on real photos: export it again (float32)")
    if not np.allclose(out, again, atol=1e-5):
        raise CardError(f"{path.name} answers differently for the same photos: export it in eval mode (no dropout)")
    maps = spatial(card, out) if spec.spatial else None
    vectors = pooled(card, out)
    if len(vectors) > 1 and np.allclose(vectors, vectors[:1], atol=1e-4):
        raise CardError(f"{path.name} gives every photo the same vector: check its output and the card's pooling")
    return Checked(len(prepared), 1000 * seconds / len(prepared), tuple(maps.shape[1:]) if maps is not None else None)


def add(data_dir: Path, path: Path, card: Card, photos: list[Path], replace: bool = False) -> tuple[Stored, Checked]:
    """Check the file with its card, then store both where serve and ingest find them."""
    if card.id in {m.card.id for m in stored(data_dir) if m.built_in}:
        raise CardError(f"{card.id!r} is a built-in model's id: give the card another id")
    target = folder(data_dir) / card.id
    if target.exists() and not replace:
        raise CardError(f"a model {card.id!r} is stored already: remove it first, or add with --replace")
    if (target / CARD).is_file() and Card.load(target / CARD).version == card.version and _differ(path, target / FILE):
        # the index records id@version only: other weights under it would mix two models' vectors
        raise CardError(f"{card.id}@{card.version} is stored with another file: give the card a new version")
    checked = check(path, card, photos)
    tmp = target.with_name(target.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(path, tmp / FILE)
    card.save(tmp / CARD)
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return Stored(card, target / FILE, False), checked


def _differ(a: Path, b: Path) -> bool:
    if not b.is_file() or a.stat().st_size != b.stat().st_size:
        return True
    with open(a, "rb") as x, open(b, "rb") as y:
        while chunk := x.read(1 << 20):
            if chunk != y.read(1 << 20):
                return True
    return False


def remove(data_dir: Path, model_id: str) -> Stored:
    model = find(data_dir, model_id)
    if model.built_in:
        raise CardError(f"{model_id!r} is built in: it cannot be removed")
    shutil.rmtree(model.path.parent)
    return model
