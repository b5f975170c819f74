"""GET /img/{name}: catalog photos and query images, content-addressed, so cacheable forever."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from snapsource.api.deps import ResourcesDep
from snapsource.api.schemas import errors
from snapsource.errors import NotFound
from snapsource.store.catalog import IMAGE_PATH

router = APIRouter()
MEDIA = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "avif": "image/avif",
    "heic": "image/heic",
}


@router.get(
    "/img/{name}",
    tags=["images"],
    summary="A catalog photo or an uploaded query image",
    responses={200: {"content": {media: {} for media in MEDIA.values()}, "description": "The image"}, **errors(404)},
)
def image(name: str, resources: ResourcesDep) -> FileResponse:
    match = IMAGE_PATH.match(f"/img/{name}")
    path = resources.image_file(match["sha"], match["ext"]) if match else None
    if match is None or path is None:
        raise NotFound(f"no image {name} on this service")
    return FileResponse(
        path,
        media_type=MEDIA.get(match["ext"], "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{match["sha"]}"'},
    )
