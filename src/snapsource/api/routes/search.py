"""Search by image: TMAPI's `GET /1688/search/image`, and a one-step `POST` with the photo in the body."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from snapsource import search
from snapsource.api.deps import FLAG_VALUES, BlankIsAbsent, Flag, ResourcesDep, TokenDep, fraction, one_of, own_hosts, public_base
from snapsource.api.routes.uploads import IMAGE_BODY, read_image
from snapsource.api.schemas import SEARCH_ERRORS, SearchResponse, UploadSearchResponse
from snapsource.errors import Forbidden, ParameterError, envelope
from snapsource.resources import Resources
from snapsource.search import queries
from snapsource.upstream import proxy
from snapsource.upstream.connector import is_upstream_path

router = APIRouter(route_class=BlankIsAbsent)  # `name=` is `name` left out, for every parameter here

ONLY = f"({FLAG_VALUES}; false, empty or left out: any offer)"


@dataclasses.dataclass(frozen=True)
class SearchParams:
    page: int
    page_size: int
    sort: search.Sort
    filters: search.Filters
    region: str | None
    group_same: bool
    match: str = "all"
    score_threshold: float | None = None
    explain: bool = False
    regions: bool = False
    source: str | None = None

    def tmapi(self, page: int | None = None) -> dict[str, str]:
        """TMAPI's parameters of this search, as the upstream is sent them (flags only when set)."""
        params = {"page": str(page or self.page), "page_size": str(self.page_size), "sort": self.sort.value}
        params.update(self.filters.tmapi())
        return params

    def own(self) -> tuple[str, ...]:
        """snapsource's own parameters this search uses: the upstream could not apply them."""
        used = {
            "keyword": self.filters.keyword,
            "cat_id": self.filters.cat_id,
            "region": self.region,
            "group_same": self.group_same,
            "match": self.match != "all",
            "score_threshold": self.score_threshold is not None,
            "regions": self.regions,
        }
        return tuple(name for name, value in used.items() if value)


async def search_params(  # async: validation only, no thread hop
    page: Annotated[int, Query(ge=1, description="Page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=search.MAX_PAGE_SIZE, description="Items per page")] = 20,
    sort: Annotated[search.Sort, Query(description="default (similarity), sales, price_up, price_down")] = search.Sort.default,
    price_start: Annotated[str | None, Query(description="Minimum price (decimal string)")] = None,
    price_end: Annotated[str | None, Query(description="Maximum price (decimal string)")] = None,
    support_dropshipping: Annotated[Flag, Query(description=f"Only offers that support dropshipping {ONLY}")] = False,
    is_factory: Annotated[Flag, Query(description=f"Only offers from factories {ONLY}")] = False,
    verified_supplier: Annotated[Flag, Query(description=f"Only verified suppliers {ONLY}")] = False,
    free_shipping: Annotated[Flag, Query(description=f"Only offers with free shipping {ONLY}")] = False,
    new_arrival: Annotated[Flag, Query(description=f"Only new offers {ONLY}")] = False,
    cat_id: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Keep offers in this category or below it: a category id, a whole number such as 1031887 "
            "(an id of their category_path), or a category name where the catalog's paths hold names",
        ),
    ] = None,
    keyword: Annotated[
        str | None,
        Query(
            max_length=search.filters.MAX_KEYWORD,
            description="Keep offers whose title holds every word of this as a whole word, in any case (in Chinese, "
            "Japanese and other scripts written without spaces: anywhere), as 1688's search within image results; "
            "echoed in data.keyword",
        ),
    ] = None,
    region: Annotated[
        str | None,
        Query(
            description="Search only this box of the photo: x1,x2,y1,y2 in its pixels (1688's order). "
            "Without it, the main product found is searched (data.region)."
        ),
    ] = None,
    group_same: Annotated[
        Flag,
        Query(description=f"Fold offers with near-identical main photos (relistings) into the best one ({FLAG_VALUES})"),
    ] = False,
    match: Annotated[
        Literal["all", "same"],
        one_of("all", "same"),
        Query(
            description="all: every offer over the threshold; same: only offers that are the same product "
            "(a geometric match with the photo, or a near-copy of one of their photos)",
        ),
    ] = "all",
    score_threshold: Annotated[
        float | None,
        fraction(),
        Query(ge=0, le=1, description="Keep offers whose photo is at least this similar to the query (cosine, 0-1)"),
    ] = None,
    explain: Annotated[
        Flag,
        Query(
            description="Add each item's similarity (0-1), match (same or similar) and matched_img (its photo that matched), "
            f"and data.categories ({FLAG_VALUES})"
        ),
    ] = False,
    regions: Annotated[
        Literal["all"] | None,
        one_of("all"),
        Query(
            description="all: also search every product found in the photo (data.regions), each box as region= "
            "would, and answer their first pages in data.groups",
        ),
    ] = None,
    source: Annotated[
        Literal["local", "upstream", "auto"] | None,
        one_of("local", "upstream", "auto"),
        Query(
            description="With an upstream (docs/upstream.md), for a token with the upstream scope: local (this catalog "
            "only), upstream (ask the upstream, or its stored answer) or auto (the upstream when the local answer is "
            "not good enough); left out: the server's upstream_mode. data.source says which answered",
        ),
    ] = None,
) -> SearchParams:
    """The spec's parameters besides img_url, shared by GET and POST."""
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
    return SearchParams(
        page, page_size, sort, filters, region or None, group_same, match, score_threshold, explain, regions == "all", source
    )


ParamsDep = Annotated[SearchParams, Depends(search_params)]


@router.get(
    "/1688/search/image",
    response_class=JSONResponse,
    responses={200: {"model": SearchResponse, "description": "Offers, best first"}, **SEARCH_ERRORS},
    summary="Search offers by image",
    tags=["search"],
)
def search_image(
    request: Request,
    resources: ResourcesDep,
    _token: TokenDep,
    img_url: Annotated[
        str,
        Query(
            min_length=1,
            description="The query image: the `img` of a result, the image_url of upload or convert_url, "
            "or any http(s) image URL (fetched once, unless strict_img_url is on)",
        ),
    ],
    params: ParamsDep,
) -> JSONResponse:
    _check_category(resources, params)
    upstream = _upstream(request, resources, params)
    resources.index.refresh()
    if upstream is not None and is_upstream_path(img_url) and not urlsplit(img_url.strip()).netloc:
        ask = proxy.Ask(params.tmapi(), upstream_path=img_url.strip(), own=params.own())  # no photo here
        choice = upstream.choose(ask, params.source, _no_local, _token_id(request))
        return JSONResponse(envelope(200, "success", {**(choice.data or {}), **choice.wire()}))
    photo = query = queries.from_img_url(resources, img_url, own_hosts(request))
    if params.region:
        query = queries.in_region(resources, query, params.region)
    passed = img_url.strip() if is_upstream_path(img_url) else None  # an Alibaba photo: the upstream reads it as is
    data = _answer_from(request, resources, upstream, photo, query, params, passed)
    return JSONResponse(envelope(200, "success", data))


@router.post(
    "/1688/search/image",
    response_class=JSONResponse,
    responses={200: {"model": UploadSearchResponse, "description": "Offers, best first"}, **SEARCH_ERRORS},
    summary="Upload an image and search with it in one step",
    tags=["search"],
    openapi_extra=IMAGE_BODY,
)
async def search_image_upload(request: Request, resources: ResourcesDep, _token: TokenDep, params: ParamsDep) -> JSONResponse:
    """The photo is kept like an upload: `data.image_url` searches it again (later pages) with GET."""
    await run_in_threadpool(_check_category, resources, params)
    upstream = _upstream(request, resources, params)
    data = await read_image(request, resources.settings.max_image_bytes)
    resources.index.refresh()
    photo = query = await run_in_threadpool(queries.from_bytes, resources, data)
    if params.region:
        query = await run_in_threadpool(queries.in_region, resources, query, params.region)
    page = await run_in_threadpool(_answer_from, request, resources, upstream, photo, query, params, None)
    return JSONResponse(envelope(200, "success", {**page, "image_url": query.image_url}))


def _upstream(request: Request, resources: Resources, params: SearchParams) -> proxy.Upstream | None:
    """The upstream this search may ask (None: the local catalog only). `source=upstream|auto`
    needs a token with the upstream scope and a configured upstream; `source=local` costs nothing
    and is taken from any token, on any server."""
    upstream: proxy.Upstream | None = request.app.state.upstream
    if params.source not in (None, "local"):
        if not resources.tokens.allows(request.query_params.get("apiToken"), "upstream"):
            raise Forbidden(
                "source= needs a token with the upstream scope: create one with `snapsource token create --scope "
                "search --scope upstream`, or leave source out"
            )
        if upstream is None:
            raise ParameterError("source= needs an upstream: this server has none (the upstream setting, docs/upstream.md)")
    if upstream is None or upstream.mode(params.source) == "off":
        return None
    return upstream


def _token_id(request: Request) -> int | None:
    lease = getattr(request.state, "lease", None)
    return lease.token_id if lease is not None else None


def _no_local() -> search.ranking.Page:
    raise AssertionError("a search without a photo here has no local answer")  # choose() never asks then


def _answer_from(
    request: Request,
    resources: Resources,
    upstream: proxy.Upstream | None,
    photo: queries.Query,
    query: queries.Query,
    params: SearchParams,
    passed: str | None,
) -> dict[str, Any]:
    """The local answer, or the upstream's when `upstream` chooses it; with an upstream
    configured, data.source says which (and data.upstream_error why the local one stood in)."""
    if upstream is None:
        page = _answer(request, resources, photo, query, params)
        named = request.app.state.upstream is not None or params.source is not None
        return {**page, "source": "local"} if named else page

    found: dict[int, search.ranking.Page] = {}

    def first_page() -> search.ranking.Page:
        if 1 not in found:
            found[1] = _find(resources, query, params, page=1)
        return found[1]

    ask = proxy.Ask(params.tmapi(), photo=query, upstream_path=passed, own=params.own())
    choice = upstream.choose(ask, params.source, first_page, _token_id(request))
    if choice.data is not None:
        return {**choice.data, **choice.wire()}
    return {**_answer(request, resources, photo, query, params, found.get(params.page)), **choice.wire()}


def _check_category(resources: Resources, params: SearchParams) -> None:
    """A bad cat_id is refused before the photo is fetched or stored (ranking.run checks it again,
    for every caller): it needs the catalog's category names, so not in search_params."""
    search.filters.check_category(params.filters.cat_id, resources.columns.current().categories)


def _answer(
    request: Request,
    resources: Resources,
    photo: queries.Query,
    query: queries.Query,
    params: SearchParams,
    found: search.ranking.Page | None = None,
) -> dict[str, Any]:
    """The page of `query` (the photo, or its `region`), and with regions=all the groups of `photo`;
    `found`: that page, searched already (the upstream's rule read it)."""
    page = _page(request, resources, query, params, found)
    if params.regions:
        page["groups"] = _groups(request, resources, photo, params)
    return page


def _groups(request: Request, resources: Resources, photo: queries.Query, params: SearchParams) -> list[dict[str, Any]]:
    """regions=all: every product box of the photo searched as `region=` searches it, with the
    request's filters and sort; the first page of each, in the order of data.regions."""
    groups = []
    base = public_base(request)
    for box in photo.analysis.regions:
        boxed = queries.in_region(resources, photo, f"{box.x1},{box.x2},{box.y1},{box.y2}")
        result = _find(resources, boxed, params, page=1)
        groups.append(
            {
                "region": box.wire(),
                "items": [hit.wire(base, params.explain) for hit in result.hits],
                "total_count": result.total_count,
            }
        )
    return groups


def _page(
    request: Request, resources: Resources, query: queries.Query, params: SearchParams, found: search.ranking.Page | None = None
) -> dict[str, Any]:
    """The data of a search answer: the spec's fields in its order and types (see test_contract),
    then ours: the box searched and the products found, as [x1, y1, x2, y2] in the photo's pixels.
    It is sent as built rather than validated a second time against SearchResponse."""
    result = found or _find(resources, query, params)
    base = public_base(request)
    return {
        "page": result.page,
        "page_size": result.page_size,
        "total_count": result.total_count,
        "keyword": result.filters.keyword,
        "sort": result.sort.value,
        "cat_id": search.categories.wire_id(result.cat_id),
        "filters": result.filters.echo(),
        "items": [hit.wire(base, params.explain) for hit in result.hits],
        "has_next_page": result.has_next_page,
        "region": query.analysis.region.wire(),
        "regions": [box.wire() for box in query.analysis.regions],
        **({"categories": [v.wire() for v in result.categories]} if params.explain else {}),
    }


def _find(resources: Resources, query: queries.Query, params: SearchParams, page: int | None = None) -> search.ranking.Page:
    """The local search of `query` with the request's parameters (at `page`, or the request's)."""
    return search.find(
        resources,
        query,
        page=page or params.page,
        page_size=params.page_size,
        sort=params.sort,
        filters=params.filters,
        group_same=params.group_same,
        match=params.match,
        score_threshold=params.score_threshold,
    )
