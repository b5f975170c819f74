"""Model cards (vision/card.py): the built-in model's card reproduces its preprocessing bit for bit,
a card that contradicts itself says what to fix, and a model other than the built-in one (a small
ViT-shaped network with random weights, exported to ONNX here) imports and answers searches end to
end from its card alone: its input size, its tokens, its pooling and its dims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import LUMA, luma_offers, open_resources, write_catalog
from snapsource.api.app import create_app
from snapsource.ingest.pipeline import ingest
from snapsource.tools.loopback import serve
from snapsource.vision import images, models
from snapsource.vision.card import Card, CardError
from snapsource.vision.embed import OnnxEmbedder
from snapsource.vision.model import lite0, normalise

pytestmark = pytest.mark.profiles  # the tiny ViT's vectors in faiss, and in Milvus

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def test_the_built_in_card_prepares_photos_as_before():
    photo = Image.open(LUMA.parent / luma_offers()[0]["img"]).convert("RGB")
    old = images.pixels(photo, 0.0)  # no card: the built-in model's
    assert old.shape == (224, 224, 3)
    assert np.array_equal(images.pixels(photo, 0.0, lite0().input), old)
    assert np.array_equal(
        images.scale(old[None], lite0().input), ((old[None].astype(np.float32) - 127) / 128).transpose(0, 3, 1, 2)
    )
    assert lite0("int8").identity == "efficientnet-lite0-int8@1" and lite0().output.dims == 1280


def test_shorter_side_resize_then_centre_crop():
    """torchvision's Resize(size) + CenterCrop(size): a 300 x 200 photo keeps its middle 200 x 200."""
    strip = np.zeros((200, 300, 3), np.uint8)
    strip[:, 30:270] = 255  # white beyond the middle 200 columns: all that the crop keeps
    card = Card.of(
        {"id": "t", "input": {"size": 64, "resize": "shorter"}, "output": {"kind": "pooled", "pooling": "none", "dims": 8}}
    )
    cut = images.pixels(Image.fromarray(strip), 0.0, card.input)
    assert cut.shape == (64, 64, 3) and cut.min() == 255
    scaled = images.scale(cut[None], card.input)
    assert np.allclose(scaled[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), atol=1e-6)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"id": "Bad Id", "output": {"kind": "pooled", "pooling": "none", "dims": 8}}, "id is lower-case"),
        ({"id": "m", "output": {"kind": "pooled", "pooling": "mean", "dims": 8}}, "pooling = none"),
        ({"id": "m", "output": {"kind": "tokens", "pooling": "cls", "dims": 8}}, "prefix_tokens >= 1"),
        ({"id": "m", "output": {"kind": "feature_map", "dims": 8}, "calibration": {"threshold": 0.5}}, "calibrated settings are"),
        ({"id": "m", "output": {"kind": "feature_map", "dims": 8}, "input": {"std": [0, 1, 1]}}, "std values must be positive"),
        ({"id": "m", "output": {"kind": "feature_map", "dims": 8}, "colour": "RGB"}, "colour: Extra"),
    ],
)
def test_a_card_that_contradicts_itself_says_what_to_fix(raw, words):
    with pytest.raises(CardError, match=words):
        Card.of(raw)


class TinyViT(torch.nn.Module):
    """A ViT's shape at a tenth of its size: 16 x 16 patches of a 112 x 112 input, a CLS token, two
    encoder layers; its output is every token (what a ViT export gives before its head)."""

    def __init__(self, dims: int = 48) -> None:
        super().__init__()
        self.patches = torch.nn.Conv2d(3, dims, 16, 16)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, dims) * 0.02)
        self.position = torch.nn.Parameter(torch.randn(1, 50, dims) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(dims, 4, dims * 2, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        cls = self.cls + torch.zeros_like(tokens[:, :1])  # one per photo, traced for any batch size
        tokens = torch.cat([cls, tokens], dim=1) + self.position
        return self.encoder(tokens)


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """The tiny ViT as ONNX with its card beside it (CLS pooling, CLIP's mean and std)."""
    torch.manual_seed(31)
    net = TinyViT().eval()
    folder = tmp_path_factory.mktemp("tiny-vit")
    path = folder / "tiny-vit.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter (the dynamo one needs onnxscript), as tools/model_export
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, 112, 112),),
            str(path),
            input_names=["pixels"],
            dynamic_axes={"pixels": {0: "n"}},
            dynamo=False,
        )
    card = {
        "id": "tiny-vit",
        "version": "1",
        "family": "test",
        "input": {"size": 112, "resize": "shorter", "mean": [0.4815, 0.4578, 0.4082], "std": [0.2686, 0.2613, 0.2758]},
        "output": {"kind": "tokens", "pooling": "cls", "prefix_tokens": 1, "dims": 48},
    }
    (folder / "tiny-vit.card.json").write_text(json.dumps(card))
    return net, path


def test_onnxruntime_reads_the_tokens_as_the_card_says(tiny_vit):
    net, path = tiny_vit
    embedder = OnnxEmbedder(path)
    assert (embedder.name, embedder.dim) == ("tiny-vit@1", 48)
    photos = [Image.open(LUMA.parent / o["img"]).convert("RGB") for o in luma_offers()[:4]]
    batch = np.stack([images.prepare(p, 0.0, embedder.card.input) for p in photos])
    assert batch.shape == (4, 3, 112, 112)
    with torch.no_grad():
        expected = normalise(net(torch.from_numpy(batch))[:, 0, :].numpy())
    vectors, maps = embedder.look(batch)
    assert np.min(np.sum(vectors * expected, axis=1)) >= 0.9999
    assert maps is not None and maps.shape == (4, 48, 7, 7)  # the 49 patch tokens on their grid
    assert np.allclose(embedder.embed(batch), vectors, atol=1e-6)


def found_first(resources, offers: list[dict]) -> list[bool]:
    """Over real HTTP, whether each offer's own main photo finds that offer first (with the photo's boxes)."""
    token = resources.tokens.create("found-first")
    first = []
    with serve(create_app(resources=resources)) as url, httpx.Client(base_url=url, timeout=120) as client:
        for offer in offers:
            photo = (LUMA.parent / offer["img"]).read_bytes()
            answer = client.post("/1688/search/image", params={"apiToken": token}, files={"file": ("p.jpg", photo)}).json()
            assert answer["code"] == 200 and answer["data"]["regions"], answer
            first.append(answer["data"]["items"][0]["item_id"] == offer["item_id"])
    return first


def test_a_model_from_its_card_imports_and_finds_its_offers(tiny_vit, tmp_path):
    """ingest and search over real HTTP with the tiny ViT (model_path): the index records its
    identity and dims, and each offer's own photo finds that offer first."""
    _, path = tiny_vit
    offers = luma_offers()[:12]
    catalog = write_catalog(tmp_path / "c.jsonl", offers)
    resources = open_resources(tmp_path / "data", model_path=str(path), precision="float32")
    try:
        assert resources.embedder.dim == 48 and resources.embedder.name == "tiny-vit@1"
        report = ingest(resources, catalog)
        assert report.added == 12 and report.images_failed == 0
        first = found_first(resources, offers)
        assert sum(first) >= 11, first
    finally:
        resources.close()


def test_model_add_checks_the_file_on_photos_then_serve_and_ingest_find_it(tiny_vit, tmp_path):
    """`snapsource model add` refuses a card that contradicts the file, with what to fix; a good one
    is stored in the data dir, listed, chosen by the `model` setting, and removed only when asked."""
    _, path = tiny_vit
    data = tmp_path / "data"
    good = json.loads(path.with_name("tiny-vit.card.json").read_text())
    env = {**os.environ, "COLUMNS": "200"}

    def cli(*args: str, answer: str = "") -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "snapsource", "model", *args, "--data", str(data)]
        return subprocess.run(command, capture_output=True, text=True, env=env, input=answer, timeout=120)

    photos = ["--photos", str(LUMA.parent / "images")]
    wrong = {
        "dims": ({**good, "output": {**good["output"], "dims": 64}}, "answers 48 dims, not the card's output.dims = 64"),
        "kind": ({**good, "output": {"kind": "pooled", "pooling": "none", "dims": 48}}, "its kind is tokens"),
        "size": ({**good, "input": {**good["input"], "size": 224}}, "(N, 3, 224, 224)"),
        "id": ({**good, "id": "efficientnet-lite0"}, "a built-in model's id"),
    }
    for name, (card, words) in wrong.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
        done = cli("add", str(path), "--card", str(tmp_path / f"{name}.json"), *photos)
        assert done.returncode == 2 and words in done.stderr, (name, done.stderr)
    assert not (data / "models").exists()
    (tmp_path / "good.json").write_text(json.dumps(good))
    added = cli("add", str(path), "--card", str(tmp_path / "good.json"), *photos)
    assert added.returncode == 0 and "tiny-vit@1 added: 48 dims, spatial map 48x7x7" in added.stderr, added.stderr
    listed = cli("list")
    assert "tiny-vit" in listed.stdout and "efficientnet-lite0-int8" in listed.stdout, listed.stdout
    resources = open_resources(data, model="tiny-vit")
    try:
        assert (resources.embedder.name, resources.embedder.dim) == ("tiny-vit@1", 48)
    finally:
        resources.close()
    kept = cli("remove", "tiny-vit", answer="n\n")
    assert kept.returncode == 1 and "nothing removed" in kept.stderr and (data / "models" / "tiny-vit").is_dir()
    gone = cli("remove", "tiny-vit", "--yes")
    assert gone.returncode == 0 and not (data / "models" / "tiny-vit").exists(), gone.stderr
    with pytest.raises(CardError, match="no model 'tiny-vit'"):
        open_resources(data, model="tiny-vit")


def test_model_add_refuses_what_the_probe_sent_in_plain_words(tiny_vit, tmp_path):
    """A photo that is no photo is named, a card nested too deeply or too large is refused, a stored
    card that is broken is named by its folder, and other weights under a stored id@version are
    refused (the index records id@version only: they would mix two models' vectors)."""
    _, path = tiny_vit
    data = tmp_path / "data"
    card = Card.load(path.with_name("tiny-vit.card.json"))
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    with pytest.raises(CardError, match="photo .*bad.jpg: not an image"):
        models.add(data, path, card, [bad])
    (tmp_path / "deep.toml").write_text("a = " + "[" * 50_000)
    (tmp_path / "big.json").write_text('{"id": "x", "calibration_how": "' + "x" * 200_000 + '"}')
    for name, words in (("deep.toml", "nests too deeply|not valid|neither valid"), ("big.json", "over 100,000 bytes")):
        with pytest.raises(CardError, match=words):
            Card.load(tmp_path / name)
    photos = sorted((LUMA.parent / "images").glob("*.jpg"))[:4]
    models.add(data, path, card, photos)
    other = tmp_path / "other.onnx"
    other.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(CardError, match="stored with another file: give the card a new version"):
        models.add(data, other, card, photos, replace=True)
    models.add(data, path, card, photos, replace=True)  # the same file again is fine
    (data / "models" / "broken").mkdir()
    (data / "models" / "broken" / "model.card.json").write_text('{"id": "broken"')
    (data / "models" / "broken" / "model.onnx").write_bytes(b"x")
    with pytest.raises(CardError, match="models/broken/model.card.json"):
        models.stored(data)
