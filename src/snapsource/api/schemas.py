"""Wire models of the API responses, for the OpenAPI document and contract tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..offer import Item


class SearchData(BaseModel):
    page: int
    page_size: int
    total_count: int
    keyword: str
    sort: str
    cat_id: int | None
    filters: dict[str, Any]
    items: list[Item]
    has_next_page: bool
    region: list[int] = Field(description="snapsource: the box searched, [x1, y1, x2, y2] in the photo's pixels")
    regions: list[list[int]] = Field(description="snapsource: the products found, strongest first, as boxes")


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "Missing or invalid apiToken",
        422: "Parameter error or unusable image: the message says which and why",
        500: "Unexpected error",
    }.items()
}
