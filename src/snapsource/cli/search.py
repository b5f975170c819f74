"""`snapsource search` (the data dir's catalog, without HTTP) and `snapsource client search` (a
server over HTTP): the API's parameters under the API's names, and the same tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from snapsource.cli.common import DEFAULT_DATA, DataOpt, _resources, _Typer, console, err
from snapsource.cli.text import counted, json_line, link_target, safe

client_app = _Typer(no_args_is_help=True, help="Use a snapsource or TMAPI server over HTTP.")


class Sort(StrEnum):
    """search.Sort's values, named here so that `--help` and a wrong value list them (importing
    the search would slow every command's start)."""

    default = "default"
    sales = "sales"
    price_up = "price_up"
    price_down = "price_down"


class Match(StrEnum):
    """search.ranking.MATCHES."""

    all = "all"
    same = "same"


class Regions(StrEnum):
    all = "all"


class Source(StrEnum):
    """The API's source= (docs/upstream.md)."""

    local = "local"
    upstream = "upstream"
    auto = "auto"


# `search` and `client search` take the API's parameters under the API's names
PhotoArg = Annotated[str, typer.Argument(metavar="PHOTO_OR_URL", help="A local image file, or an http(s) image URL.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per offer, best first (the API's item schema).")]
PageOpt = Annotated[int, typer.Option("--page", help="Page number (from 1).")]
PageSizeOpt = Annotated[int, typer.Option("--page-size", help="Offers per page (1-20).")]
SortOpt = Annotated[Sort, typer.Option("--sort", help="default (similarity), sales, price_up or price_down.")]
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
    Match,
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
    Regions | None,
    typer.Option(
        "--regions",
        help="all: also search every product found in the photo, a first page per box (the API's data.groups); "
        "with --json, one line per box (region, items, total_count) instead of one per offer.",
    ),
]
SourceOpt = Annotated[
    Source | None,
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


def search_cmd(
    image: PhotoArg,
    data: DataOpt = DEFAULT_DATA,
    as_json: JsonOpt = False,
    page: PageOpt = 1,
    page_size: PageSizeOpt = 20,
    sort: SortOpt = Sort.default,
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
    match: MatchOpt = Match.all,
    score_threshold: ScoreThresholdOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain/--no-explain", help=EXPLAIN_HELP + " On by default here: it costs nothing locally.")
    ] = True,
    regions: RegionsOpt = None,
    source: Annotated[
        Source | None,
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

    resources = _resources(data, existing=True)
    try:
        if source not in (None, Source.local):
            raise ParameterError(
                f"--source {source.value}: this command searches the local catalog only; ask a server with an upstream "
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
            sort=search.Sort(sort.value),
            filters=filters,
            group_same=group_same,
            match=match.value,
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
        err.print(f"[red]error:[/] {safe(exc)}")
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
        sys.stdout.write(json_line(row) + "\n")


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
    title = counted(total if total is not None else len(items), "offer")
    if cat_id is not None:
        title += f", category {safe(cat_id)}"
    caption = "category vote: " + " > ".join(f"{safe(c)} {share:.0%}" for c, share in votes) if explain and votes else None
    console.print(_offers_table(items, title, start, explain, caption))
    for group in groups:
        box = ",".join(str(v) for v in group.region)
        console.print(_offers_table(group.items, f"box {safe(f'[{box}]')}: {counted(group.total_count, 'offer')}", 1, explain))


URL_COLUMN_WIDTH = 140  # a terminal this wide has room for the offer's URL beside its title


def _offers_table(items: list, title: str, start: int, explain: bool, caption: str | None = None) -> Table:
    """Offers at any terminal width (80 included): #, item_id, price and the explain columns are
    never cut (no_wrap, min_width); title and shop give way (one line, ellipsised). The title links
    to the offer; the URL has its own column only where the terminal has room for it."""
    from rich import box
    from rich.style import Style

    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)

    def whole(name: str, values: list[str], justify: Any = "left") -> None:
        """A column never cut: as wide as its widest value (`safe` text, measured as shown)."""
        widths = [Text.from_markup(value).cell_len for value in values]
        table.add_column(name, no_wrap=True, min_width=max([len(name), *widths]), justify=justify)

    whole("#", [str(start + len(items))], "right")
    if explain:
        whole("similarity", [])
        whole("match", ["similar"])
    whole("item_id", [safe(item.item_id) for item in items])
    table.add_column("title", overflow="ellipsis")
    whole("price", [safe(item.price) for item in items], "right")
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
            row += [f"{item.similarity:.3f}" if item.similarity is not None else "", safe(item.match or "")]
        target = link_target(item.product_url)
        row += [safe(item.item_id), _one_line(item.title, Style(link=target) if target else ""), safe(item.price)]
        row += [safe(item.moq), safe(item.sale_info.sale_quantity)]
        if grouped:
            row.append(f"+{len(item.same_product)}" if item.same_product else "")
        shop = item.shop_info.company_name or item.shop_info.login_id or ""
        row.append(_one_line(shop))
        if url:
            row.append(safe(item.product_url or ""))
        table.add_row(*row)
    return table


def _one_line(value: str, style: Any = "") -> Text:
    """A cell that gives way to the columns never cut: one line, ellipsised."""
    cell = Text.from_markup(safe(value), style=style, overflow="ellipsis")
    cell.no_wrap = True
    return cell


@client_app.command("search")
def client_search(
    photo: PhotoArg,
    url: Annotated[str, typer.Option("--url", envvar="SNAPSOURCE_URL", help="Base URL of the server.")] = "http://127.0.0.1:8000",
    token: Annotated[str, typer.Option(envvar="SNAPSOURCE_TOKEN", help="apiToken.")] = "",
    as_json: JsonOpt = False,
    page: PageOpt = 1,
    page_size: PageSizeOpt = 20,
    sort: SortOpt = Sort.default,
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
        Match | None,
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
        sort=sort.value,
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
        match=match.value if match else None,
        score_threshold=score_threshold,
        explain=explain,
        regions=regions.value if regions else None,
        source=source.value if source else None,
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
        err.print(f"[red]error:[/] cannot reach {safe(where)}: {safe(str(exc) or type(exc).__name__)}")
        raise typer.Exit(2) from None
    except (ApiError, OSError, httpx.HTTPError) as exc:
        err.print(f"[red]error:[/] {safe(exc)}")
        raise typer.Exit(2) from None
    if result is not None and result.source is not None:  # a server with an upstream says who answered
        err.print(
            f"answered by: {safe(result.source)}" + (f" ({safe(result.upstream_skipped)})" if result.upstream_skipped else "")
        )
        if result.upstream_error:
            failed = result.upstream_error
            err.print(f"[yellow]the upstream failed[/] ({safe(failed.get('code'))}: {safe(failed.get('msg'))}): local answer")
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
