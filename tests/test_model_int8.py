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
from snapsource.vision import images
from snapsource.vision.embed import OnnxEmbedder, open_embedder
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
