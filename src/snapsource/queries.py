"""The image a search is about, whatever the user gave: a catalog photo, an upload, any URL.

Every query image ends up as a `Query`: its content hash, the path it is served at
(`/img/<sha256>.<ext>`, which `img_url` accepts on every later page) and its vector. Catalog
photos take their vector from the index; other photos are embedded once and kept by `Uploads`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from urllib.parse import urlsplit

import numpy as np

from . import images
from .errors import ParameterError
from .fetch import shorten
from .resources import Resources
from .uploads import Upload

IMAGE_PATH = re.compile(r"^/img/(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{2,4})$")


@dataclasses.dataclass(frozen=True)
class Query:
    sha256: str
    ext: str
    vector: np.ndarray

    @property
    def image_url(self) -> str:
        """The path that names this image in `img_url` (TMAPI's convert_url answer)."""
        return f"/img/{self.sha256}.{self.ext}"


def from_img_url(resources: Resources, img_url: str, own_hosts: set[str], fetch: bool | None = None) -> Query:
    """`img_url` of a search: an image this service serves (absolute or a path), or any http(s) URL.

    Other URLs are fetched unless `fetch` is false (default: unless `strict_img_url` is on).
    """
    url = urlsplit(img_url.strip())
    if url.scheme and url.scheme not in ("http", "https"):
        raise ParameterError(f"img_url must be an http(s) URL or a path; got scheme {url.scheme!r}")
    if not url.netloc or url.netloc.lower() in own_hosts:
        match = IMAGE_PATH.match(url.path)
        if not match:
            raise ParameterError(
                f"img_url {shorten(url.path)!r} is not an image of this service: give the `img` of a "
                "result, the image_url that upload or convert_url returned, or a full http(s) URL"
            )
        query = known(resources, match["sha"])
        if query is None:
            raise ParameterError(
                f"img_url {url.path} is not an image of this service (uploads unused for "
                f"{resources.settings.upload_keep_days} days are deleted: upload it again)"
            )
        return query
    if not url.scheme:
        raise ParameterError(f"img_url {shorten(img_url.strip())!r} is neither an http(s) URL nor a path")
    if not (fetch if fetch is not None else not resources.settings.strict_img_url):
        raise ParameterError(
            "img_url must be an image this service holds (strict_img_url is on): convert other URLs "
            "first with POST /1688/tools/image/convert_url"
        )
    return from_url(resources, img_url.strip())


def from_url(resources: Resources, url: str) -> Query:
    """Any http(s) image URL; fetched once, then known by its hash."""
    sha = resources.uploads.sha_for_url(url)
    query = known(resources, sha) if sha else None
    if query is not None:
        return query
    try:
        query = from_bytes(resources, resources.fetcher.fetch(url))
    except images.ImageError as exc:  # FetchError too
        raise type(exc)(f"image URL {shorten(url)}: {exc.msg}") from None
    resources.uploads.remember_url(url, query.sha256)
    return query


def from_bytes(resources: Resources, data: bytes) -> Query:
    """An uploaded or fetched photo: checked, embedded and kept unless it is known already."""
    sha = hashlib.sha256(data).hexdigest()
    query = known(resources, sha)
    if query is not None:
        return query
    img = images.decode(data, images.ImageLimits.of(resources.settings))
    vector = _embed(resources, img)
    upload = Upload(sha, images.sniff_extension(data), img.width, img.height)
    resources.uploads.put(upload, data, vector)
    return Query(sha, upload.ext, vector)


def known(resources: Resources, sha256: str) -> Query | None:
    """The query for an image this service already holds: an upload or a catalog photo."""
    uploads = resources.uploads
    upload = uploads.get(sha256)
    if upload is not None:
        vector = uploads.vector(sha256)
        if vector is None:  # made by another model: embed the kept file again
            path = uploads.file(upload.sha256, upload.ext)
            if not path.is_file():
                return None
            data = path.read_bytes()
            vector = embed_bytes(resources, data)
            uploads.put(upload, data, vector)
        return Query(upload.sha256, upload.ext, vector)
    image = resources.catalog.image_by_sha(sha256)
    if image is None:
        return None
    try:
        vector = resources.index.vectors(np.asarray([image.id], dtype=np.int64))[0]
    except RuntimeError:  # faiss: id not in the index (an import was interrupted)
        vector = embed_bytes(resources, resources.catalog.image_file(image.sha256, image.ext).read_bytes())
    return Query(image.sha256, image.ext, vector)


def embed_bytes(resources: Resources, data: bytes) -> np.ndarray:
    """The vector of a photo, kept nowhere (the command line's local files)."""
    return _embed(resources, images.decode(data, images.ImageLimits.of(resources.settings)))


def _embed(resources: Resources, img) -> np.ndarray:
    return resources.embedder.embed(images.prepare(img, resources.settings.trim_margin)[None])[0]
