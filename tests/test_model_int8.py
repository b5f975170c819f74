"""The int8 model (`make model` builds it beside the float one): its file and card, its vectors
close to float32's on real luma photos, an index of one precision refusing the other, and the
`precision` setting checked before anything opens."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import LUMA, PROFILE, luma_offers, write_catalog
from snapsource.config import Settings
from snapsource.ingest.pipeline import ingest
from snapsource.resources import Resources
from snapsource.store.vectors import IndexMismatch
from snapsource.tools import model_export
from snapsource.vision import embed, images
from snapsource.vision.embed import OnnxEmbedder, int8_saturates, open_embedder
from snapsource.vision.model import MODEL_ID, default_model_path, model_id

INT8 = default_model_path("int8")
PHOTOS = sorted({o["img"] for o in luma_offers()})[::5]  # 39 main photos


def test_make_model_wrote_the_int8_model_and_its_card():
    assert INT8.exists(), "run `make model`"
    card = json.loads(INT8.with_suffix(".json").read_text())
    assert card["precision"] == "int8" and card["model"] == "efficientnet-lite0-int8"
    assert card["quantization"]["format"] == "QDQ" and "per channel" in card["quantization"]["weights"]
    calibration = card["calibration"]
    assert 200 <= calibration["photos"] <= 300 and calibration["seed"] == model_export.CALIBRATION_SEED
    embedder = OnnxEmbedder(precision="int8")
    assert embedder.name == model_id("int8") == "efficientnet-lite0-int8@1" != MODEL_ID


def test_calibration_photos_are_a_fixed_sample_of_no_offers_main_photo():
    photos = model_export.calibration_photos(LUMA)
    assert photos == model_export.calibration_photos(LUMA) and len(photos) == model_export.CALIBRATION_PHOTOS
    mains = {LUMA.parent / o["img"] for o in luma_offers()}
    assert not mains & set(photos) and all(p.exists() for p in photos)


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.stack([images.pixels(images.decode((LUMA.parent / p).read_bytes()), 0.08) for p in PHOTOS])


def test_int8_vectors_of_luma_photos_are_close_to_float32s(pixels):
    """Measured on these 39 photos: mean cosine 0.993, lowest 0.986 (0.9927 over the 276 catalog
    photos that are neither main nor calibration photos)."""
    float32 = OnnxEmbedder(precision="float32").embed_pixels(pixels)
    int8 = OnnxEmbedder(precision="int8").embed_pixels(pixels)
    assert int8.shape == float32.shape == (len(PHOTOS), 1280) and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cosine = (int8 * float32).sum(axis=1)
    assert cosine.mean() >= 0.985 and cosine.min() >= 0.96, (cosine.mean(), cosine.min())
    # the same photo is still closest to its own float32 vector
    assert ((int8 @ float32.T).argmax(axis=1) == np.arange(len(PHOTOS))).all()


def test_int8_vectors_are_the_same_where_the_cpu_has_no_vnni(pixels, monkeypatch):
    """Without VNNI, uint8 x int8 products added in 16 bits saturate (CI measured a mean cosine of
    0.964 to float32 there): onnxruntime multiplies uint8 x uint8 instead, forced here on any CPU."""
    fast = OnnxEmbedder(precision="int8").embed_pixels(pixels[:8])
    monkeypatch.setattr(embed, "int8_saturates", lambda: True)
    exact = OnnxEmbedder(precision="int8").embed_pixels(pixels[:8])
    float32 = OnnxEmbedder(precision="float32").embed_pixels(pixels[:8])
    assert (exact * float32).sum(axis=1).min() >= 0.96
    if not int8_saturates():  # with VNNI both paths are exact
        np.testing.assert_allclose(exact, fast, atol=1e-4)


@pytest.mark.parametrize(
    ("machine", "cpuinfo", "saturates"),
    [
        ("x86_64", "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 fma avx512f\n", True),  # Skylake-SP, Zen 2/3
        ("x86_64", "flags\t\t: fpu avx2 avx512f avx512_vnni\n", False),  # Cascade Lake on, Zen 4
        ("x86_64", "flags\t\t: fpu avx2 avx_vnni\n", False),  # Alder Lake
        ("x86_64", "", True),  # flags unknown: exact rather than fast
        ("aarch64", "", False),  # ARM's int8 kernels do not saturate
    ],
)
def test_cpus_without_vnni_are_recognised(machine, cpuinfo, saturates):
    assert int8_saturates(machine, cpuinfo) is saturates


@pytest.mark.skipif(PROFILE != "default", reason="the faiss index in the data dir")
@pytest.mark.parametrize(("built", "opened"), [("float32", "int8"), ("int8", "float32")])
def test_an_index_of_one_precision_refuses_the_other(tmp_path, built, opened):
    catalog = write_catalog(tmp_path / "catalog.jsonl", luma_offers()[:2])
    resources = Resources.open(Settings.load(environ={}, data_dir=tmp_path / "data", precision=built))
    try:
        assert ingest(resources, catalog).images_embedded >= 2
    finally:
        resources.close()
    with pytest.raises(IndexMismatch) as refused:
        Resources.open(Settings.load(environ={}, data_dir=tmp_path / "data", precision=opened))
    message = str(refused.value)
    assert model_id(built) in message and model_id(opened) in message and "--rebuild" in message
    assert f"set precision={built} (SNAPSOURCE_PRECISION)" in message  # or search it as it was built


def test_the_precision_setting_is_checked(tmp_path):
    Settings.load(environ={"SNAPSOURCE_PRECISION": "int8"}).check()
    with pytest.raises(ValueError, match="precision is float32 or int8; not 'fp16'"):
        Settings.load(environ={}, precision="fp16").check()
    with pytest.raises(ValueError, match="precision is float32 or int8; not 'int4'"):
        Resources.open(Settings.load(environ={"SNAPSOURCE_PRECISION": "int4"}, data_dir=tmp_path / "data"))
    assert not (tmp_path / "data").exists()  # refused before anything was opened
    with pytest.raises(ValueError, match="CPU only"):
        Settings.load(environ={}, precision="int8", device="cuda:0").check()
    with pytest.raises(ValueError, match="CPU only"):
        open_embedder("cuda", precision="int8")
    assert open_embedder("auto", precision="int8").name == model_id("int8")  # auto: the CPU, the only int8 backend
    with pytest.raises(ValueError, match="holds efficientnet-lite0-int8@1"):
        OnnxEmbedder(INT8, precision="float32")  # model_path and precision disagree
    with pytest.raises(ValueError, match="holds efficientnet-lite0@1"):
        OnnxEmbedder(default_model_path("float32"), precision="int8")
