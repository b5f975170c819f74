"""Settings: one table of name, default and help, read once and passed down.

Every setting can be given as an environment variable ``SNAPSOURCE_<NAME>`` (upper case);
command-line options override the environment. docs/settings.md documents each one, and
a test fails when a setting is missing there.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "./data", "Directory holding one catalog: offers database, vector index, images."),
    Setting(
        "catalog",
        "",
        "The catalog database (offers, images, tokens, usage): empty for `catalog.db` in the data dir, "
        "`sqlite:///path/catalog.db`, or `postgresql://user@host:5432/database` for servers sharing one "
        "(docs/scale-out.md).",
    ),
    Setting(
        "vectors",
        "",
        "Where image vectors are searched: empty for the faiss index in the data dir, or "
        "`milvus://host:19530/collection` (needs a PostgreSQL catalog; docs/scale-out.md).",
    ),
    Setting("public_url", "", "Base URL used to build absolute `img` URLs; empty means the request's own."),
    Setting(
        "categories",
        "",
        'JSON file of category names, `{"id": {"name": ..., "path": ...}}` (luma\'s categories.json), '
        "so that the search page names the category ids of offers' `category_path`; empty: ids only.",
    ),
    Setting(
        "similarity_threshold",
        0.28,
        "Minimum cosine similarity between the query and an offer's best image for the offer to be a "
        "candidate. Calibrated on ../shared data: see docs/search.md.",
    ),
    Setting(
        "similarity_margin",
        0.3,
        "A candidate must also be within this much (cosine) of the query's best match in the whole "
        "catalog: a close photo leaves out offers that only share a style, a hard shop photo keeps "
        "its weak matches. 0 turns it off; `score_threshold` in a request replaces both. See docs/search.md.",
    ),
    Setting("candidate_cap", 1000, "At most this many candidate offers (the most similar that pass the filters) per search."),
    Setting("new_arrival_days", 30, "An offer without a `new_arrival` flag is new when `created_at` is this recent."),
    Setting(
        "trim_margin",
        0.08,
        "Trim a uniform border (padding) before embedding when it is at least this fraction of the "
        "image's width or height on some side; 0 disables trimming.",
    ),
    Setting("max_image_pixels", 40_000_000, "Images with more pixels are refused (decompression bombs)."),
    Setting("max_image_bytes", 10_000_000, "Images larger than this many bytes are refused."),
    Setting("min_image_side", 32, "Images narrower or shorter than this many pixels are refused."),
    Setting(
        "strict_img_url",
        False,
        "TMAPI's behaviour: `img_url` must be an image this service holds (convert other URLs first); "
        "false: any http(s) image URL is fetched and converted on the fly.",
    ),
    Setting(
        "fetch_allow",
        "",
        "Comma-separated networks (CIDR) that image URLs may point at although they are not public, "
        "e.g. `10.20.0.0/16` for an intranet image server. Empty: only public addresses.",
    ),
    Setting("fetch_timeout", 15.0, "Seconds a user's image URL may take in all: DNS, connect, redirects, body."),
    Setting("fetch_connect_timeout", 5.0, "Seconds to resolve and connect to an image URL's host."),
    Setting(
        "multi_crop",
        True,
        "Search with the query photo's centre and four corners at 70% as well as the whole, averaged: "
        "shop photos rarely frame a product as catalog photos do. See docs/quality.md.",
    ),
    Setting("localise", True, "Find the products in the query photo and search the main one's box."),
    Setting("max_regions", 5, "At most this many product boxes reported in `data.regions`."),
    Setting(
        "rerank_k",
        10,
        "Check the best this many candidates with local features (SIFT, RANSAC) and raise those "
        "that show the same printed object; 0 turns geometric re-ranking off.",
    ),
    Setting("rerank_weight", 0.002, "Score added per geometric inlier (at most 60 inliers count)."),
    Setting("rerank_min_inliers", 10, "Fewer inliers than this count as no geometric match."),
    Setting(
        "same_min_inliers",
        40,
        "A candidate with at least this many geometric inliers with the query is the same product "
        "(`match: same`); calibrated on ../shared's eval protocols, docs/search.md.",
    ),
    Setting(
        "same_similarity",
        0.96,
        "A candidate whose photo is at least this similar (cosine) to the query is a near-copy: the "
        "same product (`match: same`); calibrated in docs/search.md.",
    ),
    Setting(
        "twin_similarity",
        0.97,
        "`group_same=true` folds offers whose main photos are at least this similar (cosine) into "
        "the best of them: the same product relisted by other shops.",
    ),
    Setting(
        "category_vote_floor",
        0.35,
        "The query's category (`data.cat_id`) is voted by its best matches, each with its similarity "
        "above this much (cosine): what the best match of a photo the catalog does not carry reaches; "
        "calibrated in docs/search.md.",
    ),
    Setting(
        "category_min_evidence",
        0.3,
        "A predicted category's matches must add up to at least this much similarity above "
        "`category_vote_floor` (one match at 0.65, two at 0.5); less: no prediction (null).",
    ),
    Setting("admin_key", "", "Key of the admin API (/admin/...); empty: the admin API is off."),
    Setting(
        "max_body_bytes",
        262_144,
        "Bytes of a request body at most on the routes that take JSON fields (tokens, convert_url); uploads and "
        "the catalog API have their own limits (max_image_bytes, catalog_max_bytes).",
    ),
    Setting("body_timeout", 60.0, "Seconds a request body may take to arrive once the route reads it, before a 408."),
    Setting("header_timeout", 10.0, "Seconds a connection may take to send a request's headers, before it is closed."),
    Setting("max_header_bytes", 65_536, "Bytes of a request's line and headers at most; more are answered 431."),
    Setting("keep_alive_timeout", 5.0, "Seconds an idle keep-alive connection is kept open between requests."),
    Setting(
        "max_connections",
        1000,
        "Connections (and requests in progress) per worker process at most; more are answered 503 at once.",
    ),
    Setting("backlog", 2048, "Connections waiting to be accepted, at most (the listen socket's backlog)."),
    Setting(
        "upstream",
        "",
        "Base URL of a TMAPI-compatible service behind this one (https://api.tmapi.io), asked for what the "
        "local catalog cannot answer; its offers are kept locally (docs/upstream.md). Empty: none.",
    ),
    Setting("upstream_token", "", "The upstream's apiToken: never logged, never shown in an error, /metrics or the console."),
    Setting(
        "upstream_mode",
        "off",
        "off: search the local catalog only; fallback: answer locally when the local answer is good enough "
        "(upstream_min_similarity), else ask the upstream; always: every search asks the upstream (cached), "
        "the local catalog still grows. Needs `public_url` (the upstream fetches query photos there).",
    ),
    Setting(
        "upstream_min_similarity",
        0.7,
        "fallback: the local answer is good enough with a `same` match on its first page, or when its whole "
        "first page (page_size offers) is at least this similar (cosine) to the photo; docs/upstream.md.",
    ),
    Setting(
        "upstream_cache_days", 7, "The same photo and parameters within this many days: the upstream's stored page, no call."
    ),
    Setting("upstream_timeout", 30.0, "Seconds an upstream call may take (TMAPI asks clients to allow 60)."),
    Setting(
        "upstream_concurrency",
        8,
        "Upstream calls in flight at most per server process; a search beyond them gets the local answer "
        "(or 503) at once, so a slow upstream never ties up the threads that answer local searches.",
    ),
    Setting("upstream_retries", 2, "Times an upstream 503 (too many requests) is asked again, with backoff."),
    Setting(
        "upstream_breaker",
        5,
        "Upstream failures in a row that open the circuit breaker: no calls for `upstream_breaker_seconds`.",
    ),
    Setting("upstream_breaker_seconds", 30.0, "Seconds the open breaker keeps the upstream uncalled, before one trial call."),
    Setting(
        "upstream_price_per_call",
        0.0,
        "What one upstream call costs you (any currency): the console estimates the saving of calls not made.",
    ),
    Setting("catalog_max_offers", 1000, "Offers in one `POST /catalog/offers` batch at most (docs/catalog.md)."),
    Setting(
        "catalog_max_bytes",
        64_000_000,
        "Bytes of one catalog API request body at most: a batch (inline photos included) or an import file "
        "upload; larger catalogs go as an import job from a URL.",
    ),
    Setting(
        "catalog_import_max_bytes",
        500_000_000,
        "Bytes of a catalog file that `POST /catalog/imports` fetches from a URL at most.",
    ),
    Setting(
        "catalog_imports_waiting_max_bytes",
        2_000_000_000,
        "Bytes that uploaded import files and their unpacked zips hold in the data dir while their jobs wait or "
        "run, all jobs together; an upload past it is refused (503, retry) until a job is done.",
    ),
    Setting(
        "catalog_imports_per_token",
        2,
        "Import jobs that one catalog token may have queued or running at once (the admin key has no such limit).",
    ),
    Setting(
        "catalog_write_wait",
        30.0,
        "Seconds a catalog API write waits while another import writes, before answering 503 (retry).",
    ),
    Setting(
        "delete_missing_max_share",
        0.1,
        "Share of the catalog (0-1) that `--delete-missing` removes without `--yes` (the API's confirm_delete).",
    ),
    Setting("import_jobs", True, "Run queued import jobs in this server (each server claims jobs in turn)."),
    Setting("upload_cache_size", 4096, "Query images whose vectors are kept in memory (about 5 KB each)."),
    Setting("upload_keep_days", 30, "Uploaded and fetched query images unused for this many days are deleted."),
    Setting(
        "currency",
        "CNY",
        "The currency of the catalog's prices, as an ISO 4217 code (EUR, USD): the search page shows its sign. "
        "The API's prices are numbers, as TMAPI's are.",
    ),
    Setting(
        "model",
        "",
        "The id of the model to embed with, one `snapsource model list` shows; empty: the built-in model of `precision`.",
    ),
    Setting(
        "model_path",
        "",
        "ONNX file of the embedding model, read as the card beside it says (docs/models.md); empty: the built-in model.",
    ),
    Setting(
        "precision",
        "int8",
        "The embedding model's precision: `int8` (quantized, twice as fast; onnxruntime on the CPU only) "
        "or `float32` (the weights as published; CPU or GPU). `make model` builds both. Their vectors never "
        "share an index: changing it means re-ingesting (docs/performance.md, int8 model).",
    ),
    Setting("threads", 0, "Threads for model inference; 0 means one per CPU core."),
    Setting(
        "pixel_threads",
        0,
        "Threads sharing a new photo's pixel work (object boxes, keypoints, resizing its framings, "
        "RANSAC) between the model's calls; 0 means one per CPU core, 1 keeps it in the request's thread.",
    ),
    Setting(
        "device",
        "cpu",
        "Where images are embedded: `cpu` (onnxruntime), `cuda` or `cuda:N` (torch on an NVIDIA GPU, "
        "for bulk ingest; `pip install 'snapsource[gpu]'`), or `auto` (a GPU when torch sees one). "
        "The vectors are the same, so one index takes both (docs/gpu-ingest.md).",
    ),
    Setting("ingest_workers", 4, "Threads reading and decoding images during ingest."),
    Setting(
        "decoders",
        -1,
        "Processes decoding and preparing images during ingest, beside the reading threads; -1: one "
        "per CPU core when embedding on a GPU, none on the CPU (where inference takes the cores).",
    ),
    Setting(
        "gpu_decode",
        True,
        "When embedding on a GPU, decode baseline JPEGs there too (nvJPEG through torchvision, where "
        "it is installed); false: the decoder processes decode everything, as on the CPU.",
    ),
    Setting("batch_size", 0, "Images per inference batch during ingest; 0: 32 on the CPU, 256 on a GPU."),
    Setting(
        "index_rescore",
        True,
        "Score the IVF base's best matches again on the float32 vectors (on disk, memory-mapped). "
        "Off: rank by the 8-bit scores (within 0.001) and never read those rows, so a large catalog "
        "needs a quarter of the memory.",
    ),
    Setting(
        "index_lock",
        False,
        "Pin the IVF base's lists in memory (mlock), so that reading the offers database never "
        "evicts them from the page cache; needs a high enough `ulimit -l` (root has none).",
    ),
    Setting(
        "compact_interval",
        60.0,
        "Seconds between a server's checks whether the vector index needs compacting (folding new "
        "vectors into its IVF base, dropping deleted ones); 0 turns background compaction off.",
    ),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(_DEFAULTS["data_dir"])
    catalog: str = _DEFAULTS["catalog"]
    vectors: str = _DEFAULTS["vectors"]
    public_url: str = _DEFAULTS["public_url"]
    categories: str = _DEFAULTS["categories"]
    similarity_threshold: float = _DEFAULTS["similarity_threshold"]
    similarity_margin: float = _DEFAULTS["similarity_margin"]
    candidate_cap: int = _DEFAULTS["candidate_cap"]
    new_arrival_days: int = _DEFAULTS["new_arrival_days"]
    trim_margin: float = _DEFAULTS["trim_margin"]
    max_image_pixels: int = _DEFAULTS["max_image_pixels"]
    max_image_bytes: int = _DEFAULTS["max_image_bytes"]
    model: str = _DEFAULTS["model"]
    model_path: str = _DEFAULTS["model_path"]
    precision: str = _DEFAULTS["precision"]
    threads: int = _DEFAULTS["threads"]
    pixel_threads: int = _DEFAULTS["pixel_threads"]
    device: str = _DEFAULTS["device"]
    ingest_workers: int = _DEFAULTS["ingest_workers"]
    decoders: int = _DEFAULTS["decoders"]
    gpu_decode: bool = _DEFAULTS["gpu_decode"]
    batch_size: int = _DEFAULTS["batch_size"]
    compact_interval: float = _DEFAULTS["compact_interval"]
    index_rescore: bool = _DEFAULTS["index_rescore"]
    index_lock: bool = _DEFAULTS["index_lock"]
    min_image_side: int = _DEFAULTS["min_image_side"]
    strict_img_url: bool = _DEFAULTS["strict_img_url"]
    fetch_allow: str = _DEFAULTS["fetch_allow"]
    fetch_timeout: float = _DEFAULTS["fetch_timeout"]
    fetch_connect_timeout: float = _DEFAULTS["fetch_connect_timeout"]
    multi_crop: bool = _DEFAULTS["multi_crop"]
    localise: bool = _DEFAULTS["localise"]
    max_regions: int = _DEFAULTS["max_regions"]
    rerank_k: int = _DEFAULTS["rerank_k"]
    rerank_weight: float = _DEFAULTS["rerank_weight"]
    rerank_min_inliers: int = _DEFAULTS["rerank_min_inliers"]
    same_min_inliers: int = _DEFAULTS["same_min_inliers"]
    same_similarity: float = _DEFAULTS["same_similarity"]
    twin_similarity: float = _DEFAULTS["twin_similarity"]
    category_vote_floor: float = _DEFAULTS["category_vote_floor"]
    category_min_evidence: float = _DEFAULTS["category_min_evidence"]
    admin_key: str = _DEFAULTS["admin_key"]
    max_body_bytes: int = _DEFAULTS["max_body_bytes"]
    body_timeout: float = _DEFAULTS["body_timeout"]
    header_timeout: float = _DEFAULTS["header_timeout"]
    max_header_bytes: int = _DEFAULTS["max_header_bytes"]
    keep_alive_timeout: float = _DEFAULTS["keep_alive_timeout"]
    max_connections: int = _DEFAULTS["max_connections"]
    backlog: int = _DEFAULTS["backlog"]
    upstream: str = _DEFAULTS["upstream"]
    upstream_token: str = _DEFAULTS["upstream_token"]
    upstream_mode: str = _DEFAULTS["upstream_mode"]
    upstream_min_similarity: float = _DEFAULTS["upstream_min_similarity"]
    upstream_cache_days: int = _DEFAULTS["upstream_cache_days"]
    upstream_timeout: float = _DEFAULTS["upstream_timeout"]
    upstream_concurrency: int = _DEFAULTS["upstream_concurrency"]
    upstream_retries: int = _DEFAULTS["upstream_retries"]
    upstream_breaker: int = _DEFAULTS["upstream_breaker"]
    upstream_breaker_seconds: float = _DEFAULTS["upstream_breaker_seconds"]
    upstream_price_per_call: float = _DEFAULTS["upstream_price_per_call"]
    catalog_max_offers: int = _DEFAULTS["catalog_max_offers"]
    catalog_max_bytes: int = _DEFAULTS["catalog_max_bytes"]
    catalog_import_max_bytes: int = _DEFAULTS["catalog_import_max_bytes"]
    catalog_imports_waiting_max_bytes: int = _DEFAULTS["catalog_imports_waiting_max_bytes"]
    catalog_imports_per_token: int = _DEFAULTS["catalog_imports_per_token"]
    catalog_write_wait: float = _DEFAULTS["catalog_write_wait"]
    delete_missing_max_share: float = _DEFAULTS["delete_missing_max_share"]
    import_jobs: bool = _DEFAULTS["import_jobs"]
    upload_cache_size: int = _DEFAULTS["upload_cache_size"]
    upload_keep_days: int = _DEFAULTS["upload_keep_days"]
    currency: str = _DEFAULTS["currency"]

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

    def check(self) -> None:
        """Settings that cannot work together: ValueError saying which and what to set."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision is {' or '.join(PRECISIONS)}; not {self.precision!r}")
        if self.precision == "int8" and self.device.startswith("cuda"):
            raise ValueError(
                f"precision=int8 runs on the CPU only (onnxruntime), not on device={self.device}: the GPU path "
                "(torch) is float32. Set device=cpu, or precision=float32 (SNAPSOURCE_PRECISION=float32) for an index "
                "built on a GPU."
            )
        for name in ("threads", "pixel_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} (SNAPSOURCE_{name.upper()}) is 0 (one per CPU core) or more; not {getattr(self, name)}")
        if self.model and self.model_path:
            raise ValueError("model and model_path name a model each: set one (model: an id from `snapsource model list`)")
        if not re.fullmatch("[A-Z]{3}", self.currency):
            raise ValueError(
                f"currency (SNAPSOURCE_CURRENCY) is an ISO 4217 code of 3 capitals, such as EUR or USD; not {self.currency!r}"
            )
        if self.upstream_mode not in UPSTREAM_MODES:
            raise ValueError(f"upstream_mode (SNAPSOURCE_UPSTREAM_MODE) is off, fallback or always; not {self.upstream_mode!r}")
        for name in ("upstream", "public_url"):
            value = getattr(self, name)
            url = urlsplit(value)
            if value and (url.scheme not in ("http", "https") or not url.hostname):
                raise ValueError(
                    f"{name} (SNAPSOURCE_{name.upper()}) must be an http(s) URL such as https://host:port; not {value!r}"
                )
        if self.upstream_mode == "off":
            return
        needs = [
            f"{name} (SNAPSOURCE_{name.upper()}: {why})"
            for name, value, why in (
                ("upstream", self.upstream, "the base URL of TMAPI or a service like it"),
                ("upstream_token", self.upstream_token, "its apiToken"),
                (
                    "public_url",
                    self.public_url,
                    "this server's address as the upstream reaches it, which fetches query photos there; or serve --public-url",
                ),
            )
            if not value
        ]
        if needs:
            raise ValueError(f"upstream_mode={self.upstream_mode} needs " + "; ".join(needs) + " (docs/upstream.md)")


UPSTREAM_MODES = ("off", "fallback", "always")
# the embedding model's precisions (vision/model.py): float32, the weights as published; int8, quantized
PRECISIONS = ("float32", "int8")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _coerce(setting: Setting, raw: str) -> Any:
    kind = type(setting.default)
    if kind is bool:
        if raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"SNAPSOURCE_{setting.name.upper()}={raw!r}: expected true or false")
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"SNAPSOURCE_{setting.name.upper()}={raw!r}: expected {kind.__name__}") from exc
