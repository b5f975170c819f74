"""Export recipes for the image encoders people hold weights for: the visual tower of an open_clip
model and a timm model, each written as ONNX (float32, and int8 with onnxruntime's dynamic
quantization) with its card (vision/card.py), the card's preprocessing read from the library's
own configuration.

Build-time only, in the export venv (`make export-venv`: torch with torchvision, timm, open_clip):
serving and ingest run the files with onnxruntime. Each export checks itself and writes what it
measured beside the files (`<id>.report.json`): onnxruntime's vectors against torch's (cosine),
and the card's preprocessing against the library's own transform on real photos (largest
difference of the model's input).

    python -m snapsource.tools.model_recipes timm:vit_small_patch14_dinov2 --weights model.safetensors --output models/
    python -m snapsource.tools.model_recipes open_clip:ViT-B-32 --weights open_clip_model.bin --output models/

Without --weights the architecture gets random weights (seeded): what the tests run, since no
registry ships these weights; speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from snapsource.vision import images, models
from snapsource.vision.card import Card, Input, Output

FAMILIES = ("timm", "open_clip")


def _torch() -> Any:
    import torch

    return torch


def _timm(name: str, weights: Path | None, size: int | None) -> tuple[Any, Card, Any]:
    """A timm model without its head: its features as tokens (a ViT) or a feature map (a CNN)."""
    import timm
    from timm.data import create_transform, resolve_data_config

    extra = {"img_size": size} if size and "vit" in name else {}
    model = timm.create_model(name, pretrained=False, num_classes=0, **extra).eval()
    if weights is not None:
        timm.models.load_checkpoint(model, str(weights), strict=True)
    else:  # timm starts LayerScale at 1e-5: untrained, every photo's CLS token is then the same
        with _torch().no_grad():
            for module in model.modules():
                if type(module).__name__ == "LayerScale":
                    module.gamma.fill_(1.0)
    config = resolve_data_config({"input_size": (3, size, size)} if extra else {}, model=model)
    _, height, width = config["input_size"]
    assert height == width, f"{name}: a square input is expected, not {height} x {width}"
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    tokens = hasattr(model, "patch_embed")
    pool = getattr(model, "global_pool", "avg")
    output = (
        Output(
            kind="tokens", pooling="cls" if pool == "token" and prefix else "mean", dims=model.num_features, prefix_tokens=prefix
        )
        if tokens
        else Output(kind="feature_map", pooling="mean", dims=model.num_features)
    )
    card = Card(
        id=_id(f"timm-{name}-{height}"),
        family="timm",
        input=Input(
            size=height,
            resize="shorter",
            crop_fraction=float(config.get("crop_pct", 1.0)),
            interpolation="bicubic" if config["interpolation"] == "bicubic" else "bilinear",
            mean=tuple(config["mean"]),
            std=tuple(config["std"]),
        ),
        output=output,
        licence="the weights' own (see their model card)",
        source=f"timm {timm.__version__}: {name}" + (f", weights {weights.name}" if weights else ", random weights"),
    )

    class Features(_torch().nn.Module):  # type: ignore[misc]  # torch, imported here only
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_features(x)

    return Features().eval(), card, create_transform(**config)


def _open_clip(name: str, weights: Path | None, size: int | None) -> tuple[Any, Card, Any]:
    """An open_clip model's visual tower: the image embedding, in the space its text tower shares."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    if weights is not None:
        open_clip.load_checkpoint(model, str(weights))
    visual = model.visual.eval()
    side = visual.image_size[0] if isinstance(visual.image_size, tuple | list) else visual.image_size
    mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    dims = int(visual(_torch().zeros(1, 3, side, side)).shape[-1])
    card = Card(
        id=_id(f"open-clip-{name}"),
        family="open_clip",
        input=Input(size=side, resize="shorter", interpolation="bicubic", mean=tuple(mean), std=tuple(std)),
        output=Output(kind="pooled", pooling="none", dims=dims),
        licence="the weights' own (see their model card); open_clip: MIT",
        source=f"open_clip {open_clip.__version__}: {name}" + (f", weights {weights.name}" if weights else ", random weights"),
    )
    return visual, card, preprocess


def _id(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-")[:80]


def export(spec: str, weights: Path | None, output: Path, photos: list[Path], size: int | None = None, seed: int = 31) -> Path:
    """Write `<id>.onnx`, its card, the int8 model and card, and the report; the report's path."""
    torch = _torch()
    family, _, name = spec.partition(":")
    if family not in FAMILIES or not name:
        raise SystemExit(f"--from {spec!r}: expected {' or '.join(f + ':NAME' for f in FAMILIES)}")
    torch.manual_seed(seed)
    net, card, transform = (_timm if family == "timm" else _open_clip)(name, weights, size)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{card.id}.onnx"
    side = card.input.size
    with warnings.catch_warnings():  # the TorchScript exporter: the dynamo one needs onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, side, side),),
            str(path),
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    card.save(path.with_name(f"{card.id}.card.json"))
    report = _verify(net, card, transform, path, photos)
    quantized = _quantize(path, card)
    report["int8"] = _compare(quantized, path, card, photos)
    report_path = output / f"{card.id}.report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report_path


def _verify(net: Any, card: Card, transform: Any, path: Path, photos: list[Path]) -> dict[str, Any]:
    """onnxruntime against torch on the card's input, and the card's input against the library's."""
    torch = _torch()
    import onnxruntime as ort

    from snapsource.vision.embed import pooled

    ours = models.prepare(card, photos)
    theirs = np.stack([transform(images.decode(p.read_bytes())).numpy() for p in photos])
    with torch.no_grad():
        expected = pooled(card, net(torch.from_numpy(ours)).numpy())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = pooled(card, session.run(None, {"pixels": ours})[0])
    return {
        "id": card.id,
        "photos": len(photos),
        "cosine_min_onnx_vs_torch": float(np.min(np.sum(got * expected, axis=1))),
        "input_max_abs_diff_vs_library": float(np.max(np.abs(ours - theirs))),
        "input_shape": list(ours.shape),
    }


def _quantize(path: Path, card: Card) -> Path:
    """The int8 model: weights int8 (onnxruntime's dynamic quantization, as for transformers), its card."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_name(f"{card.id}-int8.onnx")
    quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
    int8 = card.model_copy(update={"id": f"{card.id}-int8"[:80], "precision": "int8"})
    int8.save(target.with_name(f"{int8.id}.card.json"))
    return target


def _compare(quantized: Path, floats: Path, card: Card, photos: list[Path]) -> dict[str, float]:
    import onnxruntime as ort

    from snapsource.vision.embed import pooled

    batch = models.prepare(card, photos)
    a = pooled(card, ort.InferenceSession(str(floats), providers=["CPUExecutionProvider"]).run(None, {"pixels": batch})[0])
    b = pooled(card, ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"]).run(None, {"pixels": batch})[0])
    cos = np.sum(a * b, axis=1)
    return {"cosine_mean_int8_vs_float32": float(np.mean(cos)), "cosine_min_int8_vs_float32": float(np.min(cos))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="model_recipes", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="timm:NAME or open_clip:NAME")
    parser.add_argument("--weights", type=Path, help="the weights file; none: random weights (seeded)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="real photos to check the export on")
    parser.add_argument("--size", type=int, help="timm ViTs: the input side (their default otherwise)")
    args = parser.parse_args(argv)
    if not args.photos:
        raise SystemExit("--photos: give a few real photos (JPEG or PNG) to check the export on")
    report = export(args.spec, args.weights, args.output, args.photos, args.size)
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
