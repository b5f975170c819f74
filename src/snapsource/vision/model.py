"""The embedding model's identity and contract, shared by every backend that runs it.

EfficientNet-Lite0 (ImageNet weights): an image's vector is its last feature map, average-pooled
and L2-normalised (1280 dims), so inner product is cosine similarity. The model's identity (name,
version) is recorded in the index with the preprocessing that changes vectors; a mismatch means
re-ingest. onnxruntime on the CPU (embed.py) and torch on a GPU (embed_torch.py) run the same
weights and give vectors within cosine 0.999 of each other, so both carry one name and share an index.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

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

    @property
    def device(self) -> str | torch.device:
        """Where it runs, for code: "cpu" (onnxruntime), or torch's device (ingest decodes JPEGs there)."""
        ...

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
