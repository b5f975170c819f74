"""The `snapsource` command: the typer app, assembled from the commands of this package (search,
tokens, catalog, bench, evaluate, model), and the two that write a data dir: serve and ingest."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from snapsource.ingest.pipeline import DeleteMissing, IngestReport
    from snapsource.ingest.rows import Source


from snapsource.cli import bench, catalog, evaluate, search
from snapsource.cli.common import DEFAULT_DATA, DataOpt, _browsable, _describe_compaction, _doctor, _resources, _Typer, err
from snapsource.cli.model import model_app
from snapsource.cli.search import client_app
from snapsource.cli.text import safe
from snapsource.cli.tokens import token_app
from snapsource.config import Settings

app = _Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Search products by image in your own catalog.",
)
app.add_typer(token_app, name="token")
app.add_typer(client_app, name="client")
app.add_typer(model_app, name="model")


@app.command()
def serve(
    data: DataOpt = DEFAULT_DATA,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = 8000,
    public_url: Annotated[str, typer.Option(help="Base URL for image links (default: the request's own).")] = "",
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    print_port: Annotated[
        bool, typer.Option("--print-port", help="Only print the port it would listen on (free, or picked for 0), and exit.")
    ] = False,
) -> None:
    """Serve the search API (and /docs) for one catalog. In front of TMAPI: SNAPSOURCE_UPSTREAM,
    SNAPSOURCE_UPSTREAM_TOKEN, SNAPSOURCE_UPSTREAM_MODE and --public-url (docs/upstream.md)."""
    import shutil

    import uvicorn

    port = _listen_port(host, port)  # a port in use: one clear line now, not a traceback after start-up
    if print_port:
        typer.echo(port)
        return

    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # /metrics merges the workers' samples through files here (prometheus-client multiprocess)
        shared = data / ".metrics"
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared.resolve())
    os.environ["SNAPSOURCE_DATA_DIR"] = str(data)
    if public_url:
        os.environ["SNAPSOURCE_PUBLIC_URL"] = public_url
    resources = _resources(data)  # fail fast, with a clear message, before forking workers
    _doctor(resources, repair=True)  # an import killed midway left vectors to add: add them first
    resources.close()
    err.print(f"serving {data} on {_browsable(f'http://{host}:{port}')}/ (API docs: /docs, console: /console)")
    settings = resources.settings
    if settings.upstream:
        only = " (off: only searches with source=upstream or auto, by a token with the upstream scope, ask it)"
        err.print(
            f"upstream: {escape(settings.upstream)}, mode {settings.upstream_mode}"
            + (only if settings.upstream_mode == "off" else f"; query photos served to it from {escape(settings.public_url)}")
        )
    # a worker busy with a burst of photos answers the supervisor's ping late: give it 30 s before
    # it is killed (uvicorn's 5 s cut live requests under load); SIGTERM drains for at most 30 s.
    # The connection limits are settings (docs/settings.md), not uvicorn's defaults
    # (no limit on connections, none on how long or how large a request's headers may be).
    uvicorn.run(
        "snapsource.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="snapsource.api.protocol:HeaderLimits",
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        backlog=settings.backlog,
        timeout_worker_healthcheck=30,
        timeout_graceful_shutdown=30,
    )


def _listen_port(host: str, port: int) -> int:
    """The port `serve` listens on: `port` once it is known to be free, or a free one for 0."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            err.print(
                f"[red]error:[/] cannot listen on {escape(host)}:{port}: {exc.strerror or exc}; "
                "choose another port with --port (make demo PORT=...; 0 picks a free one)"
            )
            raise typer.Exit(2) from None
        return int(sock.getsockname()[1])


app.command()(catalog.doctor)


@app.command()
def ingest(
    catalog: Annotated[
        Path,
        typer.Argument(
            exists=True,
            help="Catalog file: JSON Lines of offers, CSV/TSV, a Shopify or WooCommerce product export, or saved "
            "TMAPI answers; or a zip of one and its photos.",
        ),
    ],
    data: DataOpt = DEFAULT_DATA,
    format_: Annotated[
        str,
        typer.Option(
            "--format", metavar="<format>", help="auto (from the content), jsonl, csv, tsv, shopify, woocommerce or tmapi."
        ),
    ] = "auto",
    mapping: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Mapping file (JSON or TOML) of a CSV/TSV's columns: docs/catalog.md."),
    ] = None,
    delete_missing: Annotated[
        bool,
        typer.Option(
            help="Remove offers that are not in the file: never while a row is rejected or skipped, and "
            "above delete_missing_max_share of the catalog (10%) only with --yes."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm a --delete-missing that removes a large share.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Write nothing: check the rows and show what would be added and deleted."),
    ] = False,
    rebuild: Annotated[bool, typer.Option(help="Embed every image again (after a model change).")] = False,
    device: Annotated[
        str | None,
        typer.Option(
            help="Embed on cpu (onnxruntime), cuda / cuda:N (torch on a GPU: float32 only, so with "
            "SNAPSOURCE_PRECISION=float32) or auto; default: the device setting."
        ),
    ] = None,
    decoders: Annotated[
        int | None, typer.Option(help="Decoder processes; default: one per core on a GPU, none on the CPU.")
    ] = None,
) -> None:
    """Import or update offers from a catalog file, or a zip of one and its photos (upsert by item_id)."""
    from snapsource.ingest import archive
    from snapsource.ingest.formats import open_source

    if catalog.is_dir():
        err.print(
            f"[red]error:[/] {escape(str(catalog))} is a folder: name its catalog file "
            f"({escape(str(catalog / 'products.csv'))}), whose photo paths are read from that folder"
        )
        raise typer.Exit(2)
    unpacked = contextlib.ExitStack()
    try:
        if archive.is_zip(catalog):  # the file and its photos: unpacked for this run, as the API does
            folder = Path(unpacked.enter_context(tempfile.TemporaryDirectory(prefix="snapsource-zip-")))
            catalog = archive.unpack(catalog, folder, Settings.load(data_dir=data).catalog_import_max_bytes)
            mapping = mapping or archive.mapping_beside(catalog)
        source = open_source(catalog, format_, mapping)
    except ValueError as exc:  # FormatError, or a setting: before the data dir is opened, nothing is made
        unpacked.close()
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    with unpacked:
        _ingest(source, data, format_, delete_missing, yes, dry_run, rebuild, device, decoders)


def _ingest(
    source: Source,
    data: Path,
    format_: str,
    delete_missing: bool,
    yes: bool,
    dry_run: bool,
    rebuild: bool,
    device: str | None,
    decoders: int | None,
) -> None:
    import shutil

    from snapsource.ingest.formats import format_of
    from snapsource.ingest.pipeline import DeleteMissing, Plan
    from snapsource.ingest.pipeline import ingest as run_ingest

    named = format_ not in (None, "", "auto")
    err.print(f"format: {format_of(source)}{'' if named else ' (found from the content; name another with --format)'}")
    existed = data.exists()
    deleting = DeleteMissing(confirmed=yes) if delete_missing else None
    if dry_run:
        _ingest_preview(data, existed, source, deleting)
        return
    if rebuild and (data / "index").exists():
        shutil.rmtree(data / "index")  # vectors of the old model are never compared with new ones
    resources = _resources(data, device=device, decoders=decoders)
    plan = Plan.of(resources)
    err.print(f"embedding on {resources.embedder.description} in {plan.describe()}")
    total = source.count()
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("offers"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("ingest", total=total, rate="")

        def update(rows: int, embedded: int) -> None:
            rate = embedded / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=rows, rate=f"{rate:,.0f} images/s")

        report = run_ingest(resources, source, delete_missing=deleting or False, rebuild=rebuild, progress=update, plan=plan)
    resources.close()

    _print_problems(report)
    err.print(
        f"rows {report.rows}: added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"rejected {report.rejected} (invalid), skipped {report.skipped} (no readable image), "
        f"{f'left out {report.left_out} (unpublished, hidden or grouped), ' if report.left_out else ''}"
        f"deleted {report.deleted}; images embedded {report.images_embedded}"
        f"{f' ({report.images_gpu_decoded} decoded on the GPU)' if report.images_gpu_decoded else ''}, "
        f"reused {report.images_reused}, failed {report.images_failed}; "
        f"{report.seconds:.1f} s, {report.images_per_second:,.1f} images/s"
    )
    if report.compacted:
        err.print(f"index compacted: {_describe_compaction(report.compacted)}")
    _print_deletion(report)
    if report.imported == 0 and report.deleted == 0:
        err.print(
            "[red]nothing imported[/]" + (": fix the rows above and run again" if report.rows else ": the file has no offers")
        )
        if not existed:  # this run made the data dir: leave nothing half-made behind
            shutil.rmtree(data, ignore_errors=True)
    if report.imported == 0 and (report.rows > 0 or report.deleted == 0):
        raise typer.Exit(1)
    if report.deletion is not None and report.deletion.refused:
        raise typer.Exit(1)


def _print_problems(report: IngestReport) -> None:
    """The rows that were rejected or had a photo fail, in row order."""
    if report.problems:
        rows = len({p.row for p in report.problems})
        title = f"{len(report.problems)} problem(s) on {rows} row(s)"  # a skipped row: its photos' and its own
        table = Table("row", "item_id", "problem", title=title, title_justify="left")
        for p in sorted(report.problems, key=lambda p: p.row):
            # a catalog file's text shows as typed: markup such as "[prices]" and escapes as \x1b
            table.add_row(str(p.row) if p.row else "-", safe(p.item_id or "-"), safe(p.reason))
        err.print(table)


def _print_deletion(report: IngestReport, *, would: bool = False) -> None:
    """What --delete-missing deleted (or would), with a sample of the offers, or why it refused."""
    deletion = report.deletion
    if deletion is None:
        return
    sample = ", ".join(f"{item_id} {title!r}" for item_id, title in deletion.sample)
    more = f" and {deletion.missing - len(deletion.sample):,} more" if deletion.missing > len(deletion.sample) else ""
    missing = f"{deletion.missing:,} of the catalog's {deletion.catalog:,} offers are not in the file"
    if deletion.missing:
        err.print(Text(f"{missing}: {sample}{more}"))
    if deletion.refused:
        err.print(Text(f"--delete-missing {'would be ' if would else ''}refused: {deletion.refused}", style="yellow"))
    elif would:
        err.print(f"--delete-missing would delete {deletion.missing:,} offer(s)")
    elif deletion.deleted:
        err.print(Text(f"deleted {deletion.deleted:,} offer(s) not in the file; their documents are kept in {deletion.kept_in}"))


def _ingest_preview(data: Path, existed: bool, source: Source, deleting: DeleteMissing | None) -> None:
    """`ingest --dry-run`: the rows checked and what would be added and deleted; nothing written."""
    import shutil

    from snapsource.ingest.pipeline import dry_run

    resources = _resources(data)
    try:
        report = dry_run(resources, source, deleting)
    finally:
        resources.close()
        if not existed:  # a dry run leaves no data dir behind
            shutil.rmtree(data, ignore_errors=True)
    _print_problems(report)
    err.print(
        f"dry run, nothing written: rows {report.rows}: {report.added} new, {report.updated} in the catalog already, "
        f"rejected {report.rejected} (invalid), left out {report.left_out}; photos are not read, so rows whose photos all fail are not known yet"
    )
    _print_deletion(report, would=True)
    if report.deletion is not None and report.deletion.refused:
        raise typer.Exit(1)


app.command()(catalog.compact)
app.command("search")(search.search_cmd)
app.command()(catalog.info)
app.command()(bench.bench)
app.command("eval")(evaluate.eval_cmd)


def main() -> None:
    app()
