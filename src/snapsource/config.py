"""Settings: one table of name, default and help, read once and passed down.

Every setting can be given as an environment variable ``SNAPSOURCE_<NAME>`` (upper case);
command-line options override the environment. docs/settings.md documents each one, and
a test fails when a setting is missing there.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "./data", "Directory holding one catalog: offers database, vector index, images."),
    Setting("public_url", "", "Base URL used to build absolute `img` URLs; empty means the request's own."),
    Setting(
        "similarity_threshold",
        0.28,
        "Minimum cosine similarity between the query and an offer's best image for the offer to be a "
        "candidate. Calibrated on ../shared data: see docs/search.md.",
    ),
    Setting("candidate_cap", 1000, "At most this many candidate offers per search, before filters."),
    Setting("new_arrival_days", 30, "An offer without a `new_arrival` flag is new when `created_at` is this recent."),
    Setting(
        "trim_margin",
        0.08,
        "Trim a uniform border (padding) before embedding when it is at least this fraction of the "
        "image's width or height on some side; 0 disables trimming.",
    ),
    Setting("max_image_pixels", 40_000_000, "Images with more pixels are refused (decompression bombs)."),
    Setting("max_image_bytes", 10_000_000, "Images larger than this many bytes are refused."),
    Setting("model_path", "", "ONNX file of the embedding model; empty means the one `snapsource model export` wrote."),
    Setting("threads", 0, "Threads for model inference; 0 means one per CPU core."),
    Setting("ingest_workers", 4, "Threads reading and decoding images during ingest."),
    Setting("batch_size", 32, "Images per inference batch during ingest."),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(_DEFAULTS["data_dir"])
    public_url: str = _DEFAULTS["public_url"]
    similarity_threshold: float = _DEFAULTS["similarity_threshold"]
    candidate_cap: int = _DEFAULTS["candidate_cap"]
    new_arrival_days: int = _DEFAULTS["new_arrival_days"]
    trim_margin: float = _DEFAULTS["trim_margin"]
    max_image_pixels: int = _DEFAULTS["max_image_pixels"]
    max_image_bytes: int = _DEFAULTS["max_image_bytes"]
    model_path: str = _DEFAULTS["model_path"]
    threads: int = _DEFAULTS["threads"]
    ingest_workers: int = _DEFAULTS["ingest_workers"]
    batch_size: int = _DEFAULTS["batch_size"]

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then SNAPSOURCE_* variables, then explicit overrides that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(f"SNAPSOURCE_{setting.name.upper()}")
            if raw is not None:
                values[setting.name] = _coerce(setting, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)


def _coerce(setting: Setting, raw: str) -> Any:
    kind = type(setting.default)
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"SNAPSOURCE_{setting.name.upper()}={raw!r}: expected {kind.__name__}") from exc
