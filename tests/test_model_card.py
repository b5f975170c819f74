"""Model cards (vision/card.py): the built-in model's card reproduces its preprocessing bit for bit,
a card that contradicts itself says what to fix, and a model other than the built-in one (a small
ViT-shaped network with random weights, exported to ONNX here) imports and answers searches end to
end from its card alone: its input size, its tokens, its pooling and its dims."""

from __future__ import annotations

import json
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import LUMA, luma_offers, open_resources, write_catalog
from snapsource.api.app import create_app
from snapsource.ingest.pipeline import ingest
from snapsource.tools.loopback import serve
from snapsource.vision import images
from snapsource.vision.card import Card, CardError
from snapsource.vision.embed import OnnxEmbedder
from snapsource.vision.model import lite0, normalise

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
        token = resources.tokens.create("vit")
        first = []
        with serve(create_app(resources=resources)) as url, httpx.Client(base_url=url, timeout=60) as client:
            for offer in offers:
                photo = (LUMA.parent / offer["img"]).read_bytes()
                answer = client.post("/1688/search/image", params={"apiToken": token}, files={"file": ("p.jpg", photo)}).json()
                assert answer["code"] == 200, answer
                first.append(answer["data"]["items"][0]["item_id"] == offer["item_id"])
        assert sum(first) >= 11, first
    finally:
        resources.close()
