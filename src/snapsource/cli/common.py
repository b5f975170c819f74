"""What every `snapsource` command shares: typer's help as a user reads it, the two consoles,
`--data`, and opening a data dir's `Resources` with one clear line when it cannot be opened."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

from snapsource.cli.text import safe
from snapsource.config import Settings


def _no_flag_types(params: list) -> list:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""  # a flag takes no value: typer would show `<bool>` beside it
    return params


class _Command(TyperCommand):
    """Help as a user reads it: flags without `<bool>`, and arguments named by their metavar in
    the usage line (`PHOTO_OR_URL`, where typer writes `{photo}`)."""

    def get_params(self, ctx):
        return _no_flag_types(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


class _Group(TyperGroup):
    def get_params(self, ctx):
        return _no_flag_types(super().get_params(ctx))


class _Typer(typer.Typer):
    """typer.Typer whose groups and commands render their help as `_Command` does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(*args, cls=_Command, **kwargs)


# Written to a file or a pipe (a CI log, `snapsource eval > results.txt`), Rich would cut tables at
# 80 columns; there is no screen to fit there, so it writes them whole (COLUMNS still rules).
# No emoji codes: a title holding ":warning:" is printed as it is (text.safe keeps markup literal).
console = Console(emoji=False) if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=200, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)  # one error, one line, whatever the width

DataOpt = Annotated[Path, typer.Option("--data", help="Data directory of the catalog.", envvar="SNAPSOURCE_DATA_DIR")]
DEFAULT_DATA = Path("./data")


def _resources(data: Path, *, existing: bool = False, **overrides):
    """The data dir's resources; with `existing`, for a command that reads a catalog, refused
    when it holds none (a mistyped --data would otherwise be a new, empty catalog)."""
    from snapsource.resources import Resources
    from snapsource.store.vectors import IndexMismatch
    from snapsource.vision.model import ModelMissing

    try:
        settings = Settings.load(data_dir=data, **overrides)
        if existing:
            refuse_missing_catalog(settings)
        return Resources.open(settings)
    except (ModelMissing, IndexMismatch, ValueError, ConnectionError) as exc:  # bad URLs, unreachable stores
        err.print(f"[red]error:[/] {safe(exc)}")
        raise typer.Exit(2) from None


def missing_catalog(settings: Settings) -> str | None:
    """Why the data dir holds no catalog (None when it holds one): its folder, or the SQLite file
    the `catalog` setting names, is not there. A PostgreSQL catalog keeps its pepper and photos in
    the folder."""
    folder = settings.data_dir
    if not folder.is_dir():
        return f"no catalog in {folder}: the folder does not exist"
    if settings.catalog.startswith("postgres"):
        return None
    path = Path(settings.catalog.removeprefix("sqlite:///")) if settings.catalog else folder / "catalog.db"
    return None if path.is_file() else f"no catalog in {folder}: {path} does not exist"


def refuse_missing_catalog(settings: Settings) -> None:
    """Exit 2 with one plain line when the data dir holds no catalog."""
    why = missing_catalog(settings)
    if why is not None:
        err.print(
            f"[red]error:[/] {safe(why)}; name the data dir of an imported catalog with --data (or SNAPSOURCE_DATA_DIR), "
            f"or import one first: snapsource ingest CATALOG --data {safe(settings.data_dir)}"
        )
        raise typer.Exit(2)


def _browsable(url: str) -> str:
    """`url` as a browser on this machine opens it: a server bound to every address (0.0.0.0,
    ::) answers on loopback."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.rstrip("/"))
    loopback = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}
    host = parts.netloc.rpartition(":")[0] if parts.port is not None else parts.netloc
    if host not in loopback:
        return url.rstrip("/")
    netloc = loopback[host] + (f":{parts.port}" if parts.port is not None else "")
    return parts._replace(netloc=netloc).geturl()


def _doctor(resources, repair: bool):
    from snapsource.ingest import doctor as checkup

    findings = checkup.check(resources)
    if repair and not findings.consistent:
        err.print(f"doctor: {findings.summary()}; repairing")
        findings = checkup.repair(resources, findings)
    err.print(f"doctor: {findings.summary()}")
    if findings.missing_files:
        err.print("doctor: some image files are missing: import the catalog again to fetch them")
    return findings


def _describe_compaction(report: dict[str, object]) -> str:
    if "entities" in report:  # Milvus, filled again from the catalog database
        return f"Milvus collection filled again: {report['entities']} offer images"
    if not report.get("lists"):
        return f"no IVF base (fewer than 10,000 vectors): {report['delta']} scored exactly"
    how = "lists trained anew" if report["retrained"] else "same lists"
    return f"IVF{report['lists']}-SQ8 base of {report['base']} vectors ({report['added']} filed, {how})"
