"""The GPU ingest path, run on the CPU: torch gives the ONNX vectors, `--device` is chosen or refused
clearly, and decoder processes prepare exactly what the threads prepare.

The CUDA-only parts (fp16 on the card, nvJPEG, throughput) are measured by benchmarks/gpu_ingest.py
on a GPU machine; everything here runs the same code with torch on the CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import LUMA, luma_offers, open_resources, write_catalog
from snapsource.ingest.pipeline import Plan, ingest
from snapsource.vision import gpu_images, images
from snapsource.vision.embed import OnnxEmbedder, open_embedder
from snapsource.vision.embed_torch import TorchEmbedder, cuda_problem

PHOTOS = sorted({o["img"] for o in luma_offers()})[::5]  # 39 main photos


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.stack([images.pixels(images.decode((LUMA.parent / p).read_bytes()), 0.08) for p in PHOTOS])


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    """The float32 model: the one torch runs (the int8 one is another identity, CPU only)."""
    return OnnxEmbedder(precision="float32")


@pytest.fixture(scope="module")
def onnx_vectors(onnx, pixels) -> np.ndarray:
    return onnx.embed_pixels(pixels)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_gives_the_onnx_vectors_of_the_luma_photos(pixels, onnx_vectors, precision):
    """fp16 is what a GPU runs (autocast); the CPU's fp16 autocast takes the same code path."""
    embedder = TorchEmbedder("cpu", precision=precision)
    vectors = embedder.embed_pixels(pixels)
    assert vectors.shape == (len(PHOTOS), 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * onnx_vectors).sum(axis=1)
    assert cosine.min() >= (0.99999 if precision == "fp32" else 0.999), cosine.min()
    # the float32 entry point (queries, doctor) agrees with the uint8 one
    np.testing.assert_allclose(embedder.embed(images.scale(pixels[:4])), vectors[:4], atol=2e-3)


def test_torch_feature_maps_match_the_onnx_ones(onnx, pixels):
    batch = images.scale(pixels[:3])
    maps = TorchEmbedder("cpu").feature_maps(batch)
    expected = onnx.feature_maps(batch)
    assert maps.shape == expected.shape == (3, 1280, 7, 7)
    assert np.abs(maps - expected).max() < 1e-3 * np.abs(expected).max()


def test_empty_batches_and_unknown_precisions():
    embedder = TorchEmbedder("cpu")
    assert embedder.embed_pixels(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)
    assert embedder.gpu is False and embedder.name == OnnxEmbedder.name
    with pytest.raises(ValueError, match="precision 'fp8': expected one of fp16, bf16, fp32"):
        TorchEmbedder("cpu", precision="fp8")


@pytest.mark.skipif(cuda_problem() is None, reason="this machine has a GPU")
def test_devices_without_a_gpu():
    assert isinstance(open_embedder("auto"), OnnxEmbedder)  # auto falls back to the CPU
    assert isinstance(open_embedder("cpu"), OnnxEmbedder)
    with pytest.raises(ValueError, match=r"device 'cuda': torch .* sees no CUDA device"):
        open_embedder("cuda")
    with pytest.raises(ValueError, match="device 'cuda:1'"):
        open_embedder("cuda:1")
    with pytest.raises(ValueError, match="device 'gpu': expected cpu, cuda, cuda:N or auto"):
        open_embedder("gpu")


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_cli_refuses_a_missing_gpu_in_one_line(tmp_path, precision):
    """float32: no GPU here; int8 (the default): the GPU path runs float32 only, refused either way."""
    if cuda_problem() is None and precision == "float32":
        pytest.skip("this machine has a GPU")
    run = subprocess.run(
        [sys.executable, "-m", "snapsource", "ingest", str(LUMA), "--data", str(tmp_path / "d"), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "SNAPSOURCE_PRECISION": precision},
    )
    assert run.returncode == 2, run.stderr
    if precision == "float32":
        assert "error: device 'cuda': torch" in run.stderr and "sees no CUDA device" in run.stderr
    else:
        assert "error: precision=int8 runs on the CPU only (onnxruntime), not on device=cuda" in " ".join(run.stderr.split())
    assert "Traceback" not in run.stderr


def test_the_plan_follows_the_device(resources):
    cpu = Plan.of(resources)
    assert (cpu.batch_size, cpu.decoders, cpu.threads, cpu.chunk_offers) == (32, 0, 4, 32)
    as_gpu = types.SimpleNamespace(gpu=True, device="cuda")  # what Plan reads of TorchEmbedder("cuda")
    gpu = Plan.of(dataclasses.replace(resources, embedder=as_gpu))
    assert gpu.batch_size == 256 and gpu.decoders == (os.cpu_count() or 1) and gpu.threads == gpu.decoders + 2
    assert gpu.chunk_offers == 4 * 256  # storing one batch overlaps embedding the next
    assert gpu.gpu_decode is (gpu_images.nvjpeg_problem("cuda") is None)  # no torchvision here: the decoders decode
    fixed = dataclasses.replace(resources, settings=dataclasses.replace(resources.settings, batch_size=64, decoders=3))
    assert (Plan.of(fixed).batch_size, Plan.of(fixed).decoders, Plan.of(fixed).threads) == (64, 3, 5)


def _vectors_by_photo(resources) -> dict[str, np.ndarray]:
    out = {}
    for offer in luma_offers():
        for ref in [offer["img"], *offer["images"]]:
            image = resources.catalog.image_by_sha(hashlib.sha256((LUMA.parent / ref).read_bytes()).hexdigest())
            if image is not None:
                out[ref] = resources.index.vectors(np.asarray([image.id]))[0]
    return out


def test_decoder_processes_prepare_what_threads_prepare_and_report_bad_images(tmp_path):
    offers = luma_offers()[:12]
    broken = dict(offers[0], item_id=990001, img=str(tmp_path / "broken.jpg"), images=[str(tmp_path / "broken.jpg")])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    catalog = write_catalog(tmp_path / "c.jsonl", [*offers, broken])
    reports, vectors = [], []
    for decoders in (0, 2):
        resources = open_resources(tmp_path / f"d{decoders}", decoders=decoders)
        reports.append(ingest(resources, catalog))
        vectors.append(_vectors_by_photo(resources))
        resources.close()
    threads, processes = reports
    assert processes.added == threads.added == 12 and processes.skipped == threads.skipped == 1
    assert processes.images_embedded == threads.images_embedded > 0
    assert [p.reason for p in processes.problems] == [p.reason for p in threads.problems]
    assert any("broken.jpg" in p.reason for p in processes.problems)
    assert vectors[0].keys() == vectors[1].keys()
    for ref, vector in vectors[0].items():
        np.testing.assert_array_equal(vector, vectors[1][ref])


def test_an_index_built_by_torch_is_searched_by_onnx(tmp_path):
    """What a GPU ingest leaves behind serves on CPU-only servers: the same model name, vectors
    within cosine 0.999, and each offer's main photo, embedded by onnxruntime, finds that offer."""
    offers = luma_offers()[:20]
    catalog = write_catalog(tmp_path / "c.jsonl", offers)
    built = open_resources(tmp_path / "d", precision="float32")  # what a GPU ingest runs
    built = dataclasses.replace(built, embedder=TorchEmbedder("cpu", precision="fp16"))
    report = ingest(built, catalog)
    assert report.added == 20 and report.problems == [] and report.images_embedded > 20
    built.close()

    served = open_resources(tmp_path / "d", precision="float32")  # onnxruntime; the index's model matches
    assert isinstance(served.embedder, OnnxEmbedder)
    stored = _vectors_by_photo(served)
    refs = sorted(stored)
    onnx = served.embedder.embed_pixels(
        np.stack([images.pixels(images.decode((LUMA.parent / r).read_bytes()), 0.08) for r in refs])
    )
    assert (np.stack([stored[r] for r in refs]) * onnx).sum(axis=1).min() >= 0.999
    for offer in offers:
        scores, ids = served.index.search_images(onnx[refs.index(offer["img"])], 1)
        assert scores[0] >= 0.999
        assert offer["item_id"] in {item for _, item in served.catalog.offers_for_images([int(ids[0])])}
    served.close()


def test_compiled_shapes_pad_a_batch_and_keep_its_vectors(pixels):
    """torch.compile gets batches padded to a power of two (a few shapes, not one compilation per
    size); the padding must not change the vectors of the images in the batch. The padding is
    tested here without compiling (that takes minutes on a CPU; benchmarks/gpu_ingest.py compiles)."""
    embedder = TorchEmbedder("cpu")
    plain = embedder.embed_pixels(pixels[:5])
    embedder.compiled = True  # the shape policy a compiled embedder follows
    padded = embedder.embed_pixels(pixels[:5])
    assert padded.shape == (5, 1280)
    np.testing.assert_allclose(padded, plain, atol=1e-5)
