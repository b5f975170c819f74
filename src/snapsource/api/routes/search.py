"""Search by image: TMAPI's `GET /1688/search/image`, and a one-step `POST` with the photo in the body."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from snapsource import search
from snapsource.api.deps import FLAG_VALUES, BlankIsAbsent, Flag, ResourcesDep, TokenDep, fraction, one_of, own_hosts, public_base
from snapsource.api.routes.uploads import IMAGE_BODY, read_image
from snapsource.api.schemas import ERROR_RESPONSES, SearchResponse, UploadSearchResponse
from snapsource.errors import envelope
from snapsource.resources import Resources
from snapsource.search import queries

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
        page, page_size, sort, filters, region or None, group_same, match, score_threshold, explain, regions == "all"
    )


ParamsDep = Annotated[SearchParams, Depends(search_params)]


@router.get(
    "/1688/search/image",
    response_class=JSONResponse,
    responses={200: {"model": SearchResponse, "description": "Offers, best first"}, **ERROR_RESPONSES},
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
    resources.index.refresh()
    photo = query = queries.from_img_url(resources, img_url, own_hosts(request))
    if params.region:
        query = queries.in_region(resources, query, params.region)
    return JSONResponse(envelope(200, "success", _answer(request, resources, photo, query, params)))


@router.post(
    "/1688/search/image",
    response_class=JSONResponse,
    responses={200: {"model": UploadSearchResponse, "description": "Offers, best first"}, **ERROR_RESPONSES},
    summary="Upload an image and search with it in one step",
    tags=["search"],
    openapi_extra=IMAGE_BODY,
)
async def search_image_upload(request: Request, resources: ResourcesDep, _token: TokenDep, params: ParamsDep) -> JSONResponse:
    """The photo is kept like an upload: `data.image_url` searches it again (later pages) with GET."""
    await run_in_threadpool(_check_category, resources, params)
    data = await read_image(request, resources.settings.max_image_bytes)
    resources.index.refresh()
    photo = query = await run_in_threadpool(queries.from_bytes, resources, data)
    if params.region:
        query = await run_in_threadpool(queries.in_region, resources, query, params.region)
    page = await run_in_threadpool(_answer, request, resources, photo, query, params)
    return JSONResponse(envelope(200, "success", {**page, "image_url": query.image_url}))


def _check_category(resources: Resources, params: SearchParams) -> None:
    """A bad cat_id is refused before the photo is fetched or stored (ranking.run checks it again,
    for every caller): it needs the catalog's category names, so not in search_params."""
    search.filters.check_category(params.filters.cat_id, resources.columns.current().categories)


def _answer(
    request: Request, resources: Resources, photo: queries.Query, query: queries.Query, params: SearchParams
) -> dict[str, Any]:
    """The page of `query` (the photo, or its `region`), and with regions=all the groups of `photo`."""
    page = _page(request, resources, query, params)
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
        result = search.find(
            resources,
            boxed,
            page=1,
            page_size=params.page_size,
            sort=params.sort,
            filters=params.filters,
            group_same=params.group_same,
            match=params.match,
            score_threshold=params.score_threshold,
        )
        groups.append(
            {
                "region": box.wire(),
                "items": [hit.wire(base, params.explain) for hit in result.hits],
                "total_count": result.total_count,
            }
        )
    return groups


def _page(request: Request, resources: Resources, query: queries.Query, params: SearchParams) -> dict[str, Any]:
    """The data of a search answer: the spec's fields in its order and types (see test_contract),
    then ours: the box searched and the products found, as [x1, y1, x2, y2] in the photo's pixels.
    It is sent as built rather than validated a second time against SearchResponse."""
    result = search.find(
        resources,
        query,
        page=params.page,
        page_size=params.page_size,
        sort=params.sort,
        filters=params.filters,
        group_same=params.group_same,
        match=params.match,
        score_threshold=params.score_threshold,
    )
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
