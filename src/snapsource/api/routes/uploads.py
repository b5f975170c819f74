"""Getting a photo in: TMAPI's convert_url, and uploads (multipart, base64 JSON or raw bytes).

Both answer `{"image_url": "/img/<sha256>.<ext>"}`, a path that `img_url` accepts. The request
body is read as a stream against a cap, so an oversized upload is refused before it is held.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from snapsource import jsontext
from snapsource.api.deps import ResourcesDep, TokenDep, json_body, json_body_doc, own_hosts
from snapsource.api.schemas import ERROR_RESPONSES, ImageUrlResponse
from snapsource.errors import ParameterError, envelope
from snapsource.search import queries

router = APIRouter()

SEARCH_ENDPOINTS = ("/search/image", "/global/search/image", "/global/search/image/v2")
_HOW = (
    "send the image as multipart/form-data in a field named `file`, as JSON "
    '{"image_base64": "..."}, or as the raw bytes with an image/* Content-Type'
)

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image: " + _HOW,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image_base64": {
                            "type": "string",
                            "description": "The image file as base64, optionally as a data: URL",
                        }
                    },
                    "required": ["image_base64"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def body_limit(max_image_bytes: int) -> int:
    """Largest request body worth reading: a base64 image of the largest size, and headers."""
    return max_image_bytes * 4 // 3 + 64 * 1024


async def read_image(request: Request, max_image_bytes: int) -> bytes:
    """The image bytes of an upload body, whichever of the three forms it takes."""
    limit = body_limit(max_image_bytes)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ParameterError(_too_large(int(declared), max_image_bytes))
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _multipart(request, limit)
    if kind in ("application/json", ""):
        return _base64_json(await _read_all(request, limit))
    if kind.startswith("image/") or kind == "application/octet-stream":
        return await _read_all(request, limit)
    raise ParameterError(f"unsupported Content-Type {kind!r}: {_HOW}")


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not, bare or as a data: URL."""
    text = text.strip()
    if text.startswith("data:"):
        head, comma, text = text.partition(",")
        if not comma or not head.endswith(";base64"):
            raise ParameterError("image_base64: a data: URL must be base64, like data:image/jpeg;base64,/9j/...")
    text = "".join(text.split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError("image_base64 is not valid base64") from None


def _too_large(size: int, max_image_bytes: int) -> str:
    return f"image too large: the request body is {size:,} bytes; images up to {max_image_bytes:,} bytes are accepted"


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ParameterError(f"image too large: the request body is over {limit:,} bytes")
        yield chunk


async def _read_all(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _capped(request, limit)])


async def _multipart(request: Request, limit: int) -> bytes:
    parser = MultiPartParser(request.headers, _capped(request, limit), max_files=1, max_fields=32, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ParameterError(f"the multipart body could not be read: {exc.message}; {_HOW}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ParameterError(f"the multipart body has no file field named `file`: {_HOW}")
        return await upload.read()
    finally:
        await form.close()


def _base64_json(body: bytes) -> bytes:
    try:
        payload = jsontext.loads(body)
    except ValueError:
        raise ParameterError(f"the body is not JSON: {_HOW}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("image_base64"), str):
        raise ParameterError(f"the JSON body has no image_base64 string: {_HOW}")
    return decode_base64(payload["image_base64"])


class ConvertUrl(BaseModel):
    url: str = Field(min_length=1, description="Any http(s) image URL")
    search_api_endpoint: str = Field("/search/image", description="The search the image is for (TMAPI)")


@router.post(
    "/1688/tools/image/convert_url",
    response_class=JSONResponse,
    responses={200: {"model": ImageUrlResponse, "description": "The image's path, for img_url"}, **ERROR_RESPONSES},
    summary="Convert an image URL for search (TMAPI)",
    tags=["images"],
    openapi_extra=json_body_doc(ConvertUrl),
)
async def convert_url(request: Request, resources: ResourcesDep, _token: TokenDep) -> JSONResponse:
    """Fetch any image URL once and keep it; the answer's `image_url` goes into `img_url`."""
    body = await json_body(request, ConvertUrl)  # the token first, then the body
    if body.search_api_endpoint not in SEARCH_ENDPOINTS:
        raise ParameterError(f"search_api_endpoint must be one of {', '.join(SEARCH_ENDPOINTS)}")
    query = await run_in_threadpool(queries.from_img_url, resources, body.url, own_hosts(request), True)
    return JSONResponse(envelope(200, "success", {"image_url": query.image_url}))


@router.post(
    "/1688/tools/image/upload",
    response_class=JSONResponse,
    responses={200: {"model": ImageUrlResponse, "description": "The image's path, for img_url"}, **ERROR_RESPONSES},
    summary="Upload an image for search",
    tags=["images"],
    openapi_extra=IMAGE_BODY,
)
async def upload(request: Request, resources: ResourcesDep, _token: TokenDep) -> JSONResponse:
    data = await read_image(request, resources.settings.max_image_bytes)
    query = await run_in_threadpool(queries.from_bytes, resources, data)
    return JSONResponse(envelope(200, "success", {"image_url": query.image_url}))
