"""The export recipes (tools/model_recipes.py) on randomly initialised weights of the real
architectures (no registry ships CLIP or DINOv2 weights): timm's ViT-S/14 (DINOv2) and open_clip's
ViT-B/32, each exported in the export venv with torch, checked there (onnxruntime against torch,
the card's input against the library's own transform on real photos), then added and used here,
in the serving venv without torch's libraries, for imports and searches end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import LUMA, ROOT, luma_offers, open_resources, write_catalog
from snapsource.ingest.pipeline import ingest
from snapsource.vision import models
from snapsource.vision.card import Card
from test_model_card import found_first

pytestmark = pytest.mark.profiles

EXPORT_PYTHON = Path(os.environ.get("SNAPSOURCE_EXPORT_PYTHON", ROOT / ".venv-export" / "bin" / "python"))
PHOTOS = sorted((LUMA.parent / "images").glob("*.jpg"))[:6]
RECIPES = {"timm:vit_small_patch14_dinov2": ["--size", "224"], "open_clip:ViT-B-32": []}


def recipe(spec: str, output: Path, *extra: str) -> dict:
    assert EXPORT_PYTHON.is_file(), f"{EXPORT_PYTHON} is missing: `make export-venv` (make test builds it)"
    command = [str(EXPORT_PYTHON), "-m", "snapsource.tools.model_recipes", spec, "--output", str(output), *extra]
    done = subprocess.run(
        [*command, "--photos", *map(str, PHOTOS)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """spec -> (folder, report) of each recipe's export."""
    found = {}
    for spec, extra in RECIPES.items():
        folder = tmp_path_factory.mktemp(spec.split(":")[0])
        found[spec] = (folder, recipe(spec, folder, *extra))
    return found


@pytest.mark.parametrize("spec", list(RECIPES))
def test_the_export_equals_the_library(exported, spec):
    """onnxruntime's vectors equal torch's; the card prepares photos as the library's own transform
    does, to the value; the int8 model stays near the float32 one."""
    _, report = exported[spec]
    assert report["photos"] == len(PHOTOS)
    assert report["cosine_min_onnx_vs_torch"] >= 0.9999, report
    assert report["input_max_abs_diff_vs_library"] <= 1e-6, report
    assert report["int8"]["cosine_min_int8_vs_float32"] >= 0.95, report


@pytest.mark.parametrize("spec", list(RECIPES))
def test_an_exported_model_imports_and_answers_searches(exported, spec, tmp_path):
    """model add (float32 and int8), then ingest and search over real HTTP with the float32 one:
    each offer's own photo finds that offer first, with the photo's boxes."""
    folder, report = exported[spec]
    data = tmp_path / "data"
    for suffix in ("", "-int8"):
        card = Card.load(folder / f"{report['id']}{suffix}.card.json")
        stored, checked = models.add(data, folder / f"{report['id']}{suffix}.onnx", card, PHOTOS)
        assert checked.ms_per_photo > 0 and stored.path.is_file()
        print(f"{card.id}: {checked.ms_per_photo:.1f} ms a photo, spatial map {checked.spatial}")
    offers = luma_offers()[:6]
    resources = open_resources(data, model=report["id"])
    try:
        assert ingest(resources, write_catalog(tmp_path / "c.jsonl", offers)).added == 6
        first = found_first(resources, offers)
        assert sum(first) >= 5, first
    finally:
        resources.close()


def test_timm_weights_are_read_from_a_file(tmp_path):
    """--weights: a state dict saved by torch is what the export holds (its report names the file)."""
    weights = tmp_path / "weights.pth"
    save = (
        "import timm, torch; torch.manual_seed(5); "
        "m = timm.create_model('vit_small_patch14_dinov2', pretrained=False, num_classes=0, img_size=224); "
        f"torch.save(m.state_dict(), {str(weights)!r})"
    )
    subprocess.run([str(EXPORT_PYTHON), "-c", save], check=True, timeout=300)
    report = recipe("timm:vit_small_patch14_dinov2", tmp_path / "out", "--size", "224", "--weights", str(weights))
    card = Card.load(tmp_path / "out" / f"{report['id']}.card.json")
    assert "weights.pth" in card.source and report["cosine_min_onnx_vs_torch"] >= 0.9999


def test_the_recipe_command_says_how_to_get_its_venv(tmp_path):
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "snapsource", "model", "recipe", "open_clip:ViT-B-32", "--photos", str(LUMA.parent / "images")],
        capture_output=True,
        text=True,
        env={**os.environ, "SNAPSOURCE_EXPORT_PYTHON": str(tmp_path / "none" / "python"), "COLUMNS": "200"},
        timeout=120,
    )
    assert done.returncode == 2 and "make export-venv" in done.stderr, done.stderr
