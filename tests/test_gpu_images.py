"""Decoding and preparing JPEGs the GPU's way (gpu_images), run on the CPU with torch.

On a GPU, nvJPEG decodes; here PIL decodes at full size in its place (gpu_images.jpeg_decoder
without torchvision), and everything after it is the code a GPU runs: the draft, the orientation,
the trim box, Pillow's resampling and the grey photo for SIFT. benchmarks/gpu_ingest.py measures
the same agreement with nvJPEG on a GPU machine.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from conftest import LUMA, luma_offers, open_resources, write_catalog
from snapsource.ingest.pipeline import Plan, ingest, local_path
from snapsource.vision import gpu_images, images, verify
from snapsource.vision.embed import OnnxEmbedder
from snapsource.vision.embed_torch import TorchEmbedder

LIMITS = images.ImageLimits()
PHOTOS = sorted({p for o in luma_offers() for p in [o["img"], *o["images"]]})[::12]  # 61 photos


def luma_bytes(name: str) -> bytes:
    return (LUMA.parent / name).read_bytes()


def jpeg(img: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, **params)
    return out.getvalue()


def as_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_turns_pixels_as_pil_does(orientation):
    photo = Image.open(io.BytesIO(luma_bytes(PHOTOS[0]))).convert("RGB").resize((90, 60))
    exif = Image.Exif()
    exif[images.ORIENTATION] = orientation
    data = jpeg(photo, exif=exif)
    head = gpu_images.header(data, LIMITS)
    assert head is not None and head.orientation == orientation
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert head.size == expected.size
    stored = as_tensor(Image.open(io.BytesIO(data)))
    turned = gpu_images.upright(stored, orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(turned, np.asarray(expected.convert("RGB")))


@pytest.mark.parametrize("name", ["box", "bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(224, 224), (203, 256), (256, 155), (640, 700), (1, 3)])
def test_resampling_matches_pillow(name, size):
    """Pillow's filters, window widths and 8-bit rounding between passes, so that the trim box
    (found on a BOX thumbnail) and the model's input are Pillow's, within one level."""
    photo = Image.open(io.BytesIO(luma_bytes(PHOTOS[3]))).convert("RGB").crop((0, 0, 533, 671))
    expected = np.asarray(photo.resize(size, getattr(Image.Resampling, name.upper())), dtype=np.int16)
    got = gpu_images._resize(as_tensor(photo).float(), size, name).permute(1, 2, 0).numpy().astype(np.int16)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1
    assert (got != expected).mean() < 0.01


def test_thumbnail_sizes_are_pillows():
    for width, height in [(540, 670), (999, 605), (256, 256), (300, 100), (100, 300), (257, 3), (1000, 999), (80, 60)]:
        thumb = Image.new("RGB", (width, height))
        thumb.thumbnail((images.THUMBNAIL, images.THUMBNAIL))
        assert gpu_images.thumbnail_size(width, height) == thumb.size, (width, height)


def test_draft_scales_are_pillows():
    for name in PHOTOS[:10]:
        with Image.open(io.BytesIO(luma_bytes(name))) as img:
            width, height = img.size
            img.draft("RGB", (images.DRAFT_TARGET, images.DRAFT_TARGET))
            scale = images.draft_scale(width, height)
            assert img.size == (-(-width // scale), -(-height // scale))


def test_headers_take_only_what_nvjpeg_decodes_and_keep_the_limits():
    photo = Image.open(io.BytesIO(luma_bytes(PHOTOS[1])))
    assert gpu_images.header(jpeg(photo.convert("L")), LIMITS) is not None  # grey: nvJPEG gives RGB
    png = io.BytesIO()
    photo.save(png, "PNG")
    assert gpu_images.header(png.getvalue(), LIMITS) is None  # other formats: the CPU decodes
    assert gpu_images.header(jpeg(photo.convert("CMYK")), LIMITS) is None
    assert gpu_images.header(b"\xff\xd8 not a jpeg", LIMITS) is None  # the CPU says what is wrong
    progressive = luma_bytes(PHOTOS[1])  # nvJPEG would decode it one at a time: the CPU's processes do
    assert gpu_images.header(progressive, LIMITS) is None
    assert gpu_images.header(progressive, LIMITS, progressive=True) is not None
    small = images.ImageLimits(max_pixels=100_000)
    with pytest.raises(images.ImageError) as cpu_error:
        images.decode(luma_bytes(PHOTOS[1]), small)
    with pytest.raises(images.ImageError) as gpu_error:
        gpu_images.header(luma_bytes(PHOTOS[1]), small, progressive=True)
    assert str(gpu_error.value) == str(cpu_error.value)


@pytest.fixture(scope="module")
def prepared():
    datas = [luma_bytes(p) for p in PHOTOS]
    heads = [gpu_images.header(d, LIMITS, progressive=True) for d in datas]  # the luma photos are progressive
    result = gpu_images.GpuImages("cpu", 0.08, local=True).prepare(datas, heads)
    cpu = [images.decode(d) for d in datas]
    return result, cpu


def test_prepared_pixels_give_the_cpu_vectors(prepared):
    """Measured on all 725 luma photos: median cosine 0.9997, min 0.9968, 12 below 0.999: the draft
    is a block mean here and a reduced IDCT in libjpeg, which moves some trim boxes by 2-3 pixels."""
    result, cpu = prepared
    assert result.failed == [] and result.done == list(range(len(PHOTOS)))
    assert result.pixels.shape == (len(PHOTOS), 224, 224, 3) and result.pixels.dtype == torch.uint8
    expected = np.stack([images.pixels(img, 0.08) for img in cpu])
    assert np.abs(result.pixels.numpy().astype(int) - expected).mean() < 0.5
    onnx = OnnxEmbedder(precision="float32")  # the model the GPU path runs
    cosine = (onnx.embed_pixels(result.pixels.numpy()) * onnx.embed_pixels(expected)).sum(axis=1)
    assert np.median(cosine) >= 0.9995 and cosine.min() >= 0.99, (np.median(cosine), cosine.min())


def test_grey_photos_for_sift_match_the_cpus(prepared):
    result, cpu = prepared
    assert result.gray is not None and len(result.gray) == len(PHOTOS)
    matched = 0
    for gray, img in zip(result.gray, cpu):
        expected = np.asarray(img.convert("L").resize(verify.side_size(*img.size), Image.Resampling.BILINEAR))
        assert gray.shape == expected.shape
        assert np.abs(gray.astype(int) - expected).mean() < 1.0
        same = verify.inliers(verify.extract_gray(gray), verify.extract(img))
        matched += same >= verify.MAX_INLIERS // 2
    assert matched >= 0.95 * len(PHOTOS)


def test_an_undecodable_jpeg_is_handed_back_to_the_cpu():
    good = luma_bytes(PHOTOS[2])
    truncated = good[: len(good) // 3]
    heads = [gpu_images.header(d, LIMITS, progressive=True) for d in (good, truncated, good)]
    result = gpu_images.GpuImages("cpu", 0.08, local=False).prepare([good, truncated, good], heads)
    assert result.done == [0, 2] and result.failed == [1] and result.gray is None
    assert torch.equal(result.pixels[0], result.pixels[1])


def test_ingest_through_the_gpu_path(tmp_path, resources):
    """The ingest a GPU machine runs, with torch on the CPU: baseline JPEGs prepared the GPU's way;
    the luma photos (progressive), a PNG and a CMYK JPEG by the CPU's decoder; a truncated JPEG
    reported; then served by onnxruntime."""
    offers = [dict(o) for o in luma_offers()[:10]]
    for offer in offers[:5]:  # baseline copies of their photos
        baseline = tmp_path / f"{offer['item_id']}.jpg"
        baseline.write_bytes(jpeg(Image.open(io.BytesIO(luma_bytes(offer["img"])))))
        offer["img"], offer["images"] = str(baseline), []
    png, cmyk, broken = tmp_path / "p.png", tmp_path / "c.jpg", tmp_path / "b.jpg"
    other = luma_offers()[10]  # not among the offers: a copy of one of their photos would tie with it
    photo = Image.open(io.BytesIO(luma_bytes(other["img"])))
    photo.save(png, "PNG")
    cmyk.write_bytes(jpeg(photo.rotate(90, expand=True).convert("CMYK")))
    broken.write_bytes(luma_bytes(offers[1]["img"])[:5000])
    extra = [
        dict(offers[2], item_id=990001, img=str(png), images=[]),
        dict(offers[3], item_id=990002, img=str(cmyk), images=[]),
        dict(offers[4], item_id=990003, img=str(broken), images=[]),
    ]
    built = open_resources(tmp_path / "d", precision="float32")  # the GPU path runs float32
    built = dataclasses.replace(built, embedder=TorchEmbedder("cpu"))
    report = ingest(built, write_catalog(tmp_path / "c.jsonl", [*offers, *extra]), plan=Plan(16, 0, 4, gpu_decode=True))
    built.close()
    assert report.added == 12 and report.skipped == 1 and report.images_failed == 1
    assert report.images_gpu_decoded == 5  # the baseline copies; the rest went to the CPU's decoder
    assert {p.item_id for p in report.problems} == {990003}
    assert any("b.jpg" in p.reason and "truncated" in p.reason for p in report.problems), report.problems

    served = open_resources(tmp_path / "d", precision="float32")
    for offer in [*offers, extra[0], extra[1]]:
        data = local_path(offer["img"], LUMA.parent).read_bytes()
        query = served.embedder.embed_pixels(images.pixels(images.decode(data), 0.08)[None])[0]
        scores, ids = served.index.search_images(query, 1)
        assert scores[0] >= 0.99
        assert offer["item_id"] in {item for _, item in served.catalog.offers_for_images([int(ids[0])])}
    assert len(served.catalog.local_features([int(i) for i in served.index.ids()])) == len(served.index)
    served.close()


def test_border_boxes_on_the_device_are_the_cpus():
    """The batched test on thumbnails gives images.border_box's box (or None) for each of the
    luma and grocery photos, padded or not, and for flat and noisy borders."""
    from conftest import GROCERY

    photos = [LUMA.parent / p for p in PHOTOS] + sorted(GROCERY.rglob("*.jpg"))[::6]
    thumbs = []
    for path in photos:
        img = images.decode(path.read_bytes())
        canvas = Image.new("RGB", (img.width + 200, img.height + 60), (250, 250, 250))
        canvas.paste(img, (100, 30))
        for candidate in (img, canvas):
            small = candidate.copy()
            small.thumbnail((images.THUMBNAIL, images.THUMBNAIL), Image.Resampling.BOX)
            thumbs.append((np.asarray(small), candidate.size))
    kinds = set()
    for thumb, size in thumbs:
        expected = images.border_box(thumb, size, 0.08)
        got = gpu_images.border_boxes(torch.from_numpy(thumb.copy()).permute(2, 0, 1)[None].float(), size, 0.08)
        assert got == [expected], size
        kinds.add(expected is None)
    assert kinds == {True, False}
