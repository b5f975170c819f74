"""A model card: everything about an image encoder that the code would otherwise hard-code.

A model is an ONNX file and its card (JSON or TOML): its identity (recorded in the index, so that
vectors of two models never mix), how a photo becomes its input (size, resize and crop, mean and
std, colour order), what its output is (a feature map, tokens, or a pooled vector) and how that
becomes one vector, whether it gives a spatial map for the product boxes, and the search settings
calibrated for it. Nothing outside vision/ reads a model's dims or preprocessing: it asks the
card (through the embedder).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MAX_CARD_BYTES = 100_000
ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
CALIBRATED = ("similarity_threshold", "similarity_margin", "same_similarity", "twin_similarity", "category_vote_floor")


class CardError(ValueError):
    """A card that cannot be read or contradicts itself (or its file): the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Input(_Strict):
    """How a photo (decoded, upright, its margins trimmed) becomes the model's input."""

    size: int = Field(default=224, ge=32, le=1024)  # the square side the model takes
    # squash: resize to size x size (aspect not kept); shorter: the shorter side to `size`, then a
    # centre crop of size x size (torchvision's Resize(size) + CenterCrop(size), as CLIP and timm do)
    resize: Literal["squash", "shorter"] = "shorter"
    # shorter: the side it is resized to is floor(size / crop_fraction) before the crop (timm's crop_pct)
    crop_fraction: float = Field(default=1.0, gt=0.3, le=1.0)
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    # per channel, in units of `range`: 1 (torchvision: x / 255, then (x - mean) / std) or 255
    range: Literal[1, 255] = 1
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    colour: Literal["RGB", "BGR"] = "RGB"

    @model_validator(mode="after")
    def _positive_std(self) -> Input:
        if min(self.std) <= 0:
            raise ValueError("std values must be positive")
        return self


class Output(_Strict):
    """What the ONNX file's first output is, and how it becomes the photo's vector."""

    # feature_map: (N, dims, h, w); tokens: (N, prefix + h*w, dims), a ViT's; pooled: (N, dims)
    kind: Literal["feature_map", "tokens", "pooled"]
    pooling: Literal["mean", "cls", "gem", "none"] = "mean"  # none: the output is the vector already
    dims: int = Field(ge=8, le=8192)
    prefix_tokens: int = Field(default=0, ge=0, le=16)  # tokens: CLS and register tokens before the patches
    gem_p: float = Field(default=3.0, gt=0, le=16)

    @model_validator(mode="after")
    def _consistent(self) -> Output:
        if self.kind == "pooled" and self.pooling != "none":
            raise ValueError("a pooled output takes pooling = none: it is the vector already")
        if self.kind != "pooled" and self.pooling == "none":
            raise ValueError(f"a {self.kind} output needs a pooling: mean, cls or gem")
        if self.pooling == "cls" and (self.kind != "tokens" or self.prefix_tokens < 1):
            raise ValueError("pooling = cls needs a tokens output with prefix_tokens >= 1 (the CLS token)")
        return self

    @property
    def spatial(self) -> bool:
        """Whether a map of where the model looks can be read from the output (the boxes use it)."""
        return self.kind != "pooled"


# the built-in model's input: a squashed 224 x 224, TF-style scaling (x - 127) / 128
LITE0_INPUT = Input(size=224, resize="squash", interpolation="bicubic", range=255, mean=(127, 127, 127), std=(128, 128, 128))


class Card(_Strict):
    id: str
    version: str = Field(default="1", min_length=1, max_length=40)
    family: str = Field(default="", max_length=80)  # efficientnet, open_clip, timm, siglip: for people
    precision: Literal["float32", "int8"] = "float32"
    input: Input = Field(default_factory=Input)
    output: Output
    # search settings found for this model, with how: its similarity scale differs from another's
    calibration: dict[str, float] = Field(default_factory=dict)
    calibration_how: str = Field(default="", max_length=2000)
    licence: str = Field(default="", max_length=200)
    source: str = Field(default="", max_length=500)  # where the weights came from

    @model_validator(mode="after")
    def _valid(self) -> Card:
        if not ID.fullmatch(self.id):
            raise ValueError("id is lower-case letters, digits, . _ - (at most 80), starting with a letter or digit")
        unknown = sorted(set(self.calibration) - set(CALIBRATED))
        if unknown:
            raise ValueError(f"calibration names {', '.join(unknown)}: the calibrated settings are {', '.join(CALIBRATED)}")
        return self

    @property
    def identity(self) -> str:
        """What an index records of the model: vectors of another identity are not comparable."""
        return f"{self.id}@{self.version}"

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.wire(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Card:
        """A card file, JSON or TOML (by its content): CardError says what is wrong, in its words."""
        where = f"card {path}"
        try:
            if path.stat().st_size > MAX_CARD_BYTES:
                raise CardError(f"{where}: over {MAX_CARD_BYTES:,} bytes: a card is a short JSON or TOML text")
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CardError(f"{where}: cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CardError(f"{where}: not UTF-8 text: save it as UTF-8") from None
        try:
            raw = json.loads(text) if text.lstrip().startswith(("{", "[", '"')) else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CardError(f"{where}: neither valid JSON nor valid TOML: {exc}") from None
        except RecursionError:
            raise CardError(f"{where}: nests too deeply to be a card") from None
        return cls.of(raw, where)

    @classmethod
    def of(cls, raw: Any, where: str = "card") -> Card:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
            ]
            raise CardError(f"{where}: " + "; ".join(problems)) from None
