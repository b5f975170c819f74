"""Wire models of the API responses, for the OpenAPI document and contract tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from snapsource.offer import Item


class SearchGroup(BaseModel):
    region: list[int] = Field(description="The product's box, [x1, y1, x2, y2] in the photo's pixels")
    items: list[Item] = Field(description="The first page of that box's results (region= searches the same)")
    total_count: int


class SearchData(BaseModel):
    page: int
    page_size: int
    total_count: int
    keyword: str
    sort: str
    cat_id: int | str | None = Field(description="The category asked for, else the one predicted from the best matches")
    filters: dict[str, Any]
    items: list[Item]
    has_next_page: bool
    region: list[int] = Field(description="snapsource: the box searched, [x1, y1, x2, y2] in the photo's pixels")
    regions: list[list[int]] = Field(description="snapsource: the products found, strongest first, as boxes")
    groups: list[SearchGroup] | None = Field(
        None, description="snapsource, with regions=all: each product box's own first page, in the order of regions"
    )


class SearchResponse(BaseModel):
    code: int
    msg: str
    data: SearchData


class UploadSearchData(SearchData):
    image_url: str = Field(description="The uploaded image's path: pass it as img_url for later pages")


class UploadSearchResponse(BaseModel):
    code: int
    msg: str
    data: UploadSearchData


class ImageUrl(BaseModel):
    image_url: str = Field(description="Path of the stored image, such as /img/<sha256>.jpg; use it as img_url")


class ImageUrlResponse(BaseModel):
    code: int
    msg: str
    data: ImageUrl


class ErrorResponse(BaseModel):
    code: int
    msg: str
    data: None = None


ERRORS = {
    401: "Missing or invalid apiToken (or admin key)",
    403: "A valid token without the scope this API needs (the catalog scope for /catalog/*, the upstream scope for source=)",
    404: "No such image, token, offer or import job",
    405: "Method not allowed: the Allow header lists the methods this path takes",
    413: "The request body, or the number of offers in it, is over the limit the message names",
    422: "Parameter error or unusable image: the message says which and why",
    417: "The upstream (docs/upstream.md) could not be reached, answered no TMAPI page, or is paused after failures; nothing local answers",
    439: "Subscription expired or insufficient balance (the token's quota or expiry date; or the upstream's, with nothing local to answer)",
    499: "The upstream took too long (upstream_timeout) and nothing local answers",
    500: "Unexpected error",
    503: "API request concurrency limit exceeded, the index is not loaded yet, or another import is writing the catalog (see Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, all in TMAPI's envelope."""
    return {status: {"model": ErrorResponse, "description": ERRORS[status]} for status in statuses}


# what every token-checked /1688 route may answer besides 200
ERROR_RESPONSES = errors(401, 422, 439, 500, 503)
# and a search's: source= without the upstream scope, the upstream's failures with no local answer
SEARCH_ERRORS = {**errors(401, 403, 417, 422, 439, 499), **ERROR_RESPONSES}
