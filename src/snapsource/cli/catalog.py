"""The data dir's catalog as it stands: `doctor`, `compact` and `info`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from snapsource.cli.common import DEFAULT_DATA, DataOpt, _browsable, _describe_compaction, _doctor, _resources, console, err
from snapsource.cli.text import counted, safe


def doctor(
    data: DataOpt = DEFAULT_DATA,
    repair: Annotated[bool, typer.Option(help="Also repair what the check finds.")] = False,
) -> None:
    """Check that offers, images, files and vectors agree (and repair with --repair)."""
    resources = _resources(data, existing=True)
    findings = _doctor(resources, repair)
    resources.close()
    if not findings.consistent:
        raise typer.Exit(1)


def compact(
    data: DataOpt = DEFAULT_DATA,
    retrain: Annotated[bool, typer.Option(help="Train the IVF lists anew even if the catalog has not grown.")] = False,
) -> None:
    """Fold newly imported vectors into the index's IVF base and drop deleted ones (a server does
    this in the background; this runs it now)."""
    resources = _resources(data, existing=True)
    try:
        started = time.perf_counter()
        report = resources.index.compact(retrain=retrain)
        if report is None:
            err.print("[yellow]another process is compacting this index; nothing done[/]")
            raise typer.Exit(1)
        err.print(f"compacted in {time.perf_counter() - started:.1f} s: {_describe_compaction(report)}")
        console.print(f"index: {resources.index.describe()}")
    finally:
        resources.close()


def info(
    data: DataOpt = DEFAULT_DATA,
    token: Annotated[str, typer.Option(help="Token to put in the example request.")] = "YOUR_TOKEN",
    url: Annotated[
        str, typer.Option(envvar="SNAPSOURCE_URL", help="Where the server listens (make demo passes the port serve uses).")
    ] = "http://127.0.0.1:8000",
) -> None:
    """What the data dir holds, and a working example request."""
    url = _browsable(url)
    resources = _resources(data, existing=True)
    example = resources.catalog.example_image()
    where: object = data
    if resources.catalog.dialect == "postgresql":
        from snapsource.store.postgres import redact

        where = redact(resources.settings.catalog)
    console.print(
        f"catalog {safe(where)}: {counted(resources.catalog.count(), 'offer')}, {counted(len(resources.index), 'image vector')}"
    )
    console.print(f"index: {resources.index.describe()}")
    # the token rides after '#': the browser keeps it and never sends it, so no log ever shows it
    typer.echo(f"search page: {url.rstrip('/')}/#token={token}")
    typer.echo(f"console:     {url.rstrip('/')}/console (sign in with SNAPSOURCE_ADMIN_KEY)")
    if example:
        img_url = f"{url.rstrip('/')}/img/{example.name}"
        console.print("try:", soft_wrap=True)
        typer.echo(
            f"  curl '{url.rstrip('/')}/1688/search/image?apiToken={token}&img_url={img_url}&page=1&page_size=20&sort=default'"
        )
        photo = resources.catalog.image_file(example.sha256, example.ext).resolve()  # a photo on this disk, uploaded
        typer.echo(f"  curl -F file=@{photo} '{url.rstrip('/')}/1688/search/image?apiToken={token}&page_size=20'")
        typer.echo(f"  API docs: {url.rstrip('/')}/docs")
    resources.close()
