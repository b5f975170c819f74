"""The image a search is about, whatever the user gave: a catalog photo, an upload, any URL.

Every query photo ends up as a `Query`: its content hash, the path it is served at
(`/img/<sha256>.<ext>`, which `img_url` accepts on every later page) and its `Analysis`: the
products found in it, the box searched, the vector of that box (several framings averaged) and
its local features for geometric re-ranking. Analyses are kept by `Uploads`, so a photo is
analysed once however many pages, users and restarts ask for it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from snapsource import metrics
from snapsource.arrays import pack, unpack
from snapsource.errors import ParameterError
from snapsource.resources import Resources
from snapsource.store.catalog import IMAGE_PATH
from snapsource.store.uploads import Upload
from snapsource.vision import hands, images, localise, objects, verify
from snapsource.vision.fetch import shorten
from snapsource.vision.localise import Box
from snapsource.vision.model import normalise

WHOLE_PHOTO = 0.5  # a main region covering more than this share of the photo: search the photo


@dataclasses.dataclass(frozen=True)
class Analysis:
    vector: np.ndarray
    size: tuple[int, int]  # the photo's upright size in pixels; boxes are in these pixels
    region: Box  # the box searched
    regions: tuple[Box, ...]  # the products found, strongest first
    whole: np.ndarray | None = None  # the whole photo's own vector, when it differs from `vector`
    local: verify.LocalFeatures | None = None

    @property
    def vectors(self) -> np.ndarray:
        """What the index is searched with: the searched box's vector, and the whole photo's,
        which keeps near-copies of a catalog photo on top (an offer scores its best match)."""
        return self.vector[None] if self.whole is None else np.stack([self.vector, self.whole])

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "vector": self.vector.astype(np.float32),
            "size": np.asarray(self.size, np.int64),
            "region": np.asarray(self.region.wire(), np.int64),
            "regions": np.asarray([b.wire() for b in self.regions], np.int64).reshape(-1, 4),
        }
        if self.whole is not None:
            arrays["whole"] = self.whole.astype(np.float32)
        if self.local is not None:
            arrays.update(points=self.local.points.astype(np.float16), descriptors=self.local.descriptors)
        return pack(**arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> Analysis:
        a = unpack(data)
        local = None
        if "points" in a:
            local = verify.LocalFeatures(a["points"].astype(np.float32), a["descriptors"])
        return cls(
            a["vector"],
            (int(a["size"][0]), int(a["size"][1])),
            Box(*(int(v) for v in a["region"])),
            tuple(Box(*(int(v) for v in row)) for row in a["regions"]),
            a["whole"] if "whole" in a else None,  # noqa: SIM401 - an NpzFile, read by key
            local,
        )


@dataclasses.dataclass(frozen=True)
class Query:
    sha256: str
    ext: str
    analysis: Analysis

    @property
    def vector(self) -> np.ndarray:
        return self.analysis.vector

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


def from_bytes(resources: Resources, data: bytes, keep: bool = True) -> Query:
    """An uploaded or fetched photo: checked, analysed and kept unless it is known already. A
    catalog photo is its indexed vector, whoever sends it. `keep=False` (the command line) analyses
    a new photo as the API would, and writes nothing."""
    sha = hashlib.sha256(data).hexdigest()
    query = known(resources, sha)
    if query is not None:
        return query
    img = images.decode(data, images.ImageLimits.of(resources.settings))
    result = analyse(resources, img)
    metrics.QUERY_PHOTOS.labels("analysed").inc()
    upload = Upload(sha, images.sniff_extension(data), *result.size)
    if keep:
        resources.uploads.put(upload, data, result.to_bytes())
    return Query(sha, upload.ext, result)


def known(resources: Resources, sha256: str) -> Query | None:
    """The query for an image this service already holds: an upload or a catalog photo."""
    uploads = resources.uploads
    upload = uploads.get(sha256)
    if upload is not None:
        blob = uploads.analysis(sha256)
        if blob is not None:
            metrics.QUERY_PHOTOS.labels("cached").inc()
            return Query(upload.sha256, upload.ext, Analysis.from_bytes(blob))
        path = uploads.file(upload.sha256, upload.ext)  # analysed by another pipeline: again
        if path.is_file():
            return _analyse_kept(resources, upload.sha256, upload.ext, path, keep_file=True)
    image = resources.catalog.image_by_sha(sha256)
    if image is None:
        return None
    return _catalog_photo(resources, image)


def _catalog_photo(resources: Resources, image) -> Query | None:
    """A catalog photo searched as it is (a result's `img`): its indexed vector and stored local
    features, nothing decoded. Boxes are found in photos from outside the catalog; here the box
    is the whole photo (a `region` still crops it)."""
    try:
        vector = resources.index.vectors(np.asarray([image.id], dtype=np.int64))[0]
    except RuntimeError:  # not in the index (an interrupted import): analyse the file instead
        path = resources.catalog.image_file(image.sha256, image.ext)
        return _analyse_kept(resources, image.sha256, image.ext, path, keep_file=False)
    width, height = resources.catalog.image_size(image.id)
    local = None
    if resources.settings.rerank_k > 0:
        blob = resources.catalog.local_features([image.id]).get(image.id)
        local = verify.LocalFeatures.from_bytes(blob) if blob else None
    whole = Box(0, 0, width, height)
    return Query(image.sha256, image.ext, Analysis(vector, (width, height), whole, (whole,), None, local))


def in_region(resources: Resources, query: Query, region: str) -> Query:
    """The same photo searched in a user-drawn box ("x1,x2,y1,y2" in its pixels)."""
    try:
        box = Box.parse(region, *query.analysis.size)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    key = (query.sha256, f"{box.wire()}")
    cached = resources.uploads.memo.get(key)
    if not isinstance(cached, Analysis):  # the memo keeps analyses only: this is None, not analysed yet
        path = resources.uploads.file(query.sha256, query.ext)
        if not path.is_file():  # a catalog photo
            path = resources.catalog.image_file(query.sha256, query.ext)
        img = images.decode(path.read_bytes(), images.ImageLimits.of(resources.settings))
        cached = analyse(resources, img, box)
        resources.uploads.memo.put(key, cached)
    return dataclasses.replace(query, analysis=cached)


def analyse(resources: Resources, img: Image.Image, region: Box | None = None) -> Analysis:
    """Find the products, choose the box (the user's, else the main product's when it is clearly
    smaller than the photo), and describe that box: vector of its framings, local features.
    The pixel work (object boxes, keypoints, the framings' resizing) runs side by side on
    vision/hands.py's threads while the model embeds (docs/performance.md, issue 22)."""
    settings = resources.settings
    width, height = images.source_size(img)
    whole = Box(0, 0, width, height)
    full_vector, blobs = _blobs(resources, img) if settings.localise else (None, [])
    chosen = region
    # the box searched is still the main activation blob's, as before boxes of several products
    # (measured on the grocery and edits protocols); the objects add every product for data.regions
    if chosen is None and blobs and blobs[0].area <= WHOLE_PHOTO * whole.area:
        chosen = blobs[0]
    crop = (
        img
        if chosen is None
        else img.crop(chosen.scaled(img.width / width, img.height / height, img.width, img.height).corners())
    )
    # the pixel work is done on both cores while the model waits (vision/hands.py): the boxes of
    # the photo's products and the box's keypoints first, the framings' resizing beside them
    boxes = hands.submit(_objects, img, settings.max_regions) if settings.localise else None
    local = hands.submit(verify.extract, crop) if settings.rerank_k > 0 else None
    vector, whole_vector = _describe(resources, crop, full_vector, chosen is None)
    found = objects.combine(boxes.result(), blobs, settings.max_regions) if boxes else []
    return Analysis(
        vector,
        (width, height),
        chosen or whole,
        tuple(found or [whole]),
        whole_vector,
        local.result() if local else None,
    )


def product_boxes(resources: Resources, img: Image.Image, separate: bool = True) -> list[Box]:
    """The photo's product boxes as `analyse` finds them, in source pixels; `separate=False`: the
    activation blobs alone (the boxes before vision/objects.py, for the composites ablation)."""
    blobs = _blobs(resources, img)[1]
    if not separate:
        return blobs
    return objects.combine(_objects(img, resources.settings.max_regions), blobs, resources.settings.max_regions)


def _blobs(resources: Resources, img: Image.Image) -> tuple[np.ndarray, list[Box]]:
    """The photo's vector and its activation blobs, strongest first, in source pixels (none for a
    model without a spatial map: the object boxes alone then). The model sees the photo without
    its padding (as catalog photos are embedded): blobs of its activations are found in that
    content box, then placed back in the photo."""
    settings = resources.settings
    width, height = images.source_size(img)
    sx, sy = img.width / width, img.height / height  # source pixels -> decoded pixels
    content = images.content_box(img, settings.trim_margin) or (0, 0, img.width, img.height)
    embedder = resources.embedder
    vectors, maps = embedder.look(images.prepare(img.crop(content), 0, embedder.card.input)[None])
    cw, ch = content[2] - content[0], content[3] - content[1]
    found = [
        Box(b.x1 + content[0], b.y1 + content[1], b.x2 + content[0], b.y2 + content[1]).scaled(1 / sx, 1 / sy, width, height)
        for b in (localise.regions(maps[0], cw, ch, settings.max_regions) if maps is not None else [])
    ]
    return vectors[0], found


def _objects(img: Image.Image, limit: int) -> objects.Objects:
    """The objects found in the photo's pixels (vision/objects.py), in source pixels: they
    separate the products of a photo of several; a photo of one product keeps its blob."""
    width, height = images.source_size(img)
    sx, sy = img.width / width, img.height / height
    found = objects.find(img, limit)
    return objects.Objects(tuple(b.scaled(1 / sx, 1 / sy, width, height) for b in found.boxes), found.plain)


def _describe(
    resources: Resources, crop: Image.Image, full_vector: np.ndarray | None, is_whole: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The box's vector (the mean of its framings' vectors) and, when that differs from the whole
    photo's, the whole photo's vector. The whole photo's vector (from its look at the boxes), when the box is the whole
    photo, give its first framing without embedding it again."""
    settings, embedder = resources.settings, resources.embedder
    views = images.views(crop, settings.multi_crop)
    whole_vector = full_vector
    reused = is_whole and whole_vector is not None
    todo = views[1:] if reused else views
    prepare = functools.partial(images.prepare, trim_margin=settings.trim_margin, shape=embedder.card.input)
    vectors = embedder.embed(np.stack(hands.each(prepare, todo))) if todo else None
    if reused:
        assert whole_vector is not None
        vectors = whole_vector[None] if vectors is None else np.concatenate([whole_vector[None], vectors])
    assert vectors is not None
    if whole_vector is None and is_whole:
        whole_vector = vectors[0]
    vector = normalise(vectors.mean(axis=0, keepdims=True))[0]
    return vector, whole_vector if len(vectors) > 1 or not is_whole else None


def analyse_bytes(resources: Resources, data: bytes) -> Analysis:
    """The analysis of a photo, kept nowhere (command line, eval)."""
    return analyse(resources, images.decode(data, images.ImageLimits.of(resources.settings)))


def _analyse_kept(resources: Resources, sha256: str, ext: str, path, keep_file: bool) -> Query | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    img = images.decode(data, images.ImageLimits.of(resources.settings))
    result = analyse(resources, img)
    metrics.QUERY_PHOTOS.labels("analysed").inc()
    upload = Upload(sha256, ext, *result.size)
    resources.uploads.put(upload, data if keep_file else None, result.to_bytes())
    return Query(sha256, ext, result)
