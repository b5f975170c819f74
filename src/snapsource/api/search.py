"""GET /1688/search/image: TMAPI's search by image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from .. import search
from ..errors import envelope
from .deps import ResourcesDep, TokenDep, own_hosts, public_base
from .schemas import ERROR_RESPONSES, SearchResponse

router = APIRouter()


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
    img_url: Annotated[str, Query(min_length=1, description="URL of an image this service serves (`img` of a result)")],
    page: Annotated[int, Query(ge=1, description="Page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=search.MAX_PAGE_SIZE, description="Items per page")] = 20,
    sort: Annotated[search.Sort, Query(description="default (similarity), sales, price_up, price_down")] = search.Sort.default,
    price_start: Annotated[str | None, Query(description="Minimum price (decimal string)")] = None,
    price_end: Annotated[str | None, Query(description="Maximum price (decimal string)")] = None,
    support_dropshipping: Annotated[bool, Query(description="Only offers that support dropshipping")] = False,
    is_factory: Annotated[bool, Query(description="Only offers from factories")] = False,
    verified_supplier: Annotated[bool, Query(description="Only verified suppliers")] = False,
    free_shipping: Annotated[bool, Query(description="Only offers with free shipping")] = False,
    new_arrival: Annotated[bool, Query(description="Only new offers")] = False,
) -> JSONResponse:
    """The data is built in the spec's order and types (see test_contract), so it is sent as is
    rather than validated a second time against SearchResponse, which documents it."""
    filters = search.Filters.from_params(
        price_start,
        price_end,
        support_dropshipping=support_dropshipping,
        is_factory=is_factory,
        verified_supplier=verified_supplier,
        free_shipping=free_shipping,
        new_arrival=new_arrival,
    )
    resources.index.refresh()
    image = search.stored_image(resources, img_url, own_hosts(request))
    vector = search.vector_of(resources, image)
    result = search.run(resources, vector, page=page, page_size=page_size, sort=sort, filters=filters)
    base = public_base(request)
    data = {
        "page": result.page,
        "page_size": result.page_size,
        "total_count": result.total_count,
        "keyword": "",
        "sort": result.sort.value,
        "cat_id": None,
        "filters": result.filters.echo(),
        "items": [hit.wire(base) for hit in result.hits],
        "has_next_page": result.has_next_page,
    }
    return JSONResponse(envelope(200, "success", data))
