"""`snapsource eval`: retrieval quality on ../shared (docs/quality.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from snapsource.cli.common import _resources, console, err
from snapsource.config import Settings

ABLATION: tuple[tuple[str, dict[str, Any]], ...] = (
    ("baseline: whole photo", {"multi_crop": False, "localise": False, "rerank_k": 0}),
    ("+ framings (multi_crop)", {"multi_crop": True, "localise": False, "rerank_k": 0}),
    ("+ localisation", {"multi_crop": True, "localise": True, "rerank_k": 0}),
    ("+ geometric re-ranking", {"multi_crop": True, "localise": True}),
)


def _parse_set(pairs: list[str]) -> dict[str, Any]:
    from snapsource.config import SETTINGS, _coerce

    known = {s.name: s for s in SETTINGS}
    out: dict[str, Any] = {}  # setting overrides, coerced to each setting's type
    for pair in pairs:
        name, _, raw = pair.partition("=")
        if name not in known or not _:
            raise typer.BadParameter(f"--set {pair!r}: expected NAME=VALUE with a setting from docs/settings.md")
        out[name] = _coerce(known[name], raw)
    return out


def eval_cmd(
    protocols: Annotated[
        list[str] | None,
        typer.Argument(help="grocery, edits, views, self and/or composites (default: grocery edits)."),
    ] = None,
    data: Annotated[Path, typer.Option("--data", help="Data dir for the eval catalogs (imported if needed).")] = Path(
        "build/eval-data"
    ),
    shared: Annotated[Path, typer.Option(help="The shared folder with catalogs/luma and eval/grocery.")] = Path("../shared"),
    output: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="At most this many queries (grocery), offers (edits, self, views) or composites a background (40)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the edits and composites.")] = 0,
    set_: Annotated[list[str], typer.Option("--set", help="Override a setting, e.g. --set rerank_k=0.")] = [],  # noqa: B006
    ablation: Annotated[bool, typer.Option(help="Run each improvement switched on in turn and compare.")] = False,
) -> None:
    """Measure retrieval quality: R@1/5/10, mAP and p50 latency per protocol (docs/quality.md)."""
    from snapsource.ingest.pipeline import ingest
    from snapsource.resources import Resources
    from snapsource.tools import evaluate

    wanted = protocols or ["grocery", "edits"]
    unknown = set(wanted) - {"grocery", "edits", "views", "self", "composites"}
    if unknown:
        raise typer.BadParameter(f"unknown protocol {', '.join(sorted(unknown))}: use grocery, edits, views, self or composites")
    luma = shared / "catalogs" / "luma" / "catalog.jsonl"
    manifest = shared / "eval" / "grocery" / "manifest.csv"
    overrides = _parse_set(set_)
    preparing = _resources(data, **overrides)
    err.print(f"importing the eval catalogs into {data} (only what changed)")
    ingest(preparing, luma)
    if "grocery" in wanted:
        gallery = data / "grocery-gallery.jsonl"
        gallery.write_text("".join(json.dumps(o) + "\n" for o in evaluate.grocery_gallery(manifest)))
        ingest(preparing, gallery)
    preparing.close()

    configs = ABLATION if ablation else (("settings" + (f" {overrides}" if overrides else ""), {}),)
    table = Table(
        "configuration",
        "protocol",
        "queries",
        "R@1",
        "R@5",
        "R@10",
        "mAP",
        "same P",
        "same R",
        "total",
        "cat",
        "p50 ms",
        title="retrieval quality (same P/R: precision of `match: same` in the first ten, share of queries it found; "
        "total: median; cat: predicted category on the product's path)",
    )
    results = []
    for label, config in configs:
        resources = Resources.open(Settings.load(data_dir=data, **{**config, **overrides}))
        for protocol in [p for p in wanted if p != "composites"]:
            started = time.perf_counter()
            if protocol == "grocery":
                result = evaluate.grocery(resources, manifest, limit)
                parts: tuple[str, ...] = ("overall", "packaged", "loose")
            elif protocol == "edits":
                result = evaluate.edits(resources, luma, seed, limit)
                parts = ("overall", *evaluate.EDITS)
            elif protocol == "views":
                result = evaluate.views(resources, luma, limit)
                parts = ("overall",)
            else:
                result = evaluate.self_retrieval(resources, luma)
                parts = ("overall",)
            err.print(f"{label}: {protocol} in {time.perf_counter() - started:.0f} s")
            for part in parts:
                s = result[part]
                if not s["queries"]:
                    continue
                table.add_row(
                    label,
                    f"{protocol} {part}" if part != "overall" else protocol,
                    str(s["queries"]),
                    *(f"{s[k]:.3f}" for k in ("recall_at_1", "recall_at_5", "recall_at_10", "map")),
                    "-" if s["same_precision"] is None else f"{s['same_precision']:.3f}",
                    f"{s['same_recall']:.3f}",
                    f"{s['total_median']:.0f}",
                    f"{s['category_accuracy']:.3f}",
                    f"{s['p50_ms']:.0f}",
                )
            results.append({"configuration": label, "settings": {**config, **overrides}, **result})
        resources.close()
    if len(wanted) > wanted.count("composites"):
        console.print(table)
    if "composites" in wanted:
        results += _eval_composites(data, luma, overrides, limit or 40, seed)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _eval_composites(data: Path, luma: Path, overrides: dict[str, Any], per_background: int, seed: int) -> list[dict]:
    """The composites protocol: box recall and R@1 in each product's box, with the boxes of
    vision/objects.py (new) and with the activation blobs alone (old), per background."""
    from snapsource.resources import Resources
    from snapsource.tools import composites

    table = Table(
        "boxes",
        "background",
        "products",
        "box recall",
        "boxes/photo",
        "R@1 in box",
        "by texture",
        title="every product in the photo (box recall: a found box at IoU >= 0.5; R@1: the product first in its box)",
    )
    results = []
    resources = Resources.open(Settings.load(data_dir=data, **overrides))
    for boxes in ("new", "old"):
        started = time.perf_counter()
        result = composites.composites(resources, luma, per_background, seed, boxes)
        err.print(f"composites ({boxes} boxes) in {time.perf_counter() - started:.0f} s")
        for background in composites.BACKGROUNDS:
            s = result[background]
            table.add_row(
                boxes,
                background,
                str(s["products"]),
                f"{s['box_recall']:.3f}",
                f"{s['boxes_per_photo']:.2f}",
                f"{s['recall_at_1']:.3f}",
                " ".join(f"{name} {value:.2f}" for name, value in s["by_texture"].items()),
            )
        results.append({"configuration": f"composites {boxes} boxes", "settings": overrides, **result})
    resources.close()
    console.print(table)
    return results
