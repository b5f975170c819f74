"""The formats catalogs come in, each read into rows of the catalog schema (ingest/rows.py), so
that validation, photos and writes stay the pipeline's, the same for every format.

    open_source(Path("catalog.jsonl"))                     # the format found from the content
    open_source(Path("products_export.csv"), "shopify")
    open_source(Path("feed.csv"), mapping=Path("feed.toml"))

jsonl (the catalog schema, one offer a line), csv / tsv (columns named as catalog fields, or
mapped by a mapping file), shopify and woocommerce (their product exports), tmapi (saved search
answers). docs/catalog.md, "Formats", shows each.
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from pathlib import Path
from typing import Any

from snapsource.ingest.formats.delimited import Delimited
from snapsource.ingest.formats.detect import check_named, detect, is_empty
from snapsource.ingest.formats.mapping import Mapping, load_mapping
from snapsource.ingest.formats.shopify import ShopifyProducts
from snapsource.ingest.formats.source import FORMATS, FileSource, FormatError, for_api, names, stable_id
from snapsource.ingest.formats.tmapi import TmapiAnswers
from snapsource.ingest.formats.woocommerce import WooCommerceProducts
from snapsource.ingest.rows import JsonLines, Source

__all__ = ["FORMATS", "FormatError", "Mapping", "detect", "for_api", "format_of", "load_mapping", "open_source", "stable_id"]

MAPPED = ("csv", "tsv", "shopify", "woocommerce")  # the formats a mapping applies to


def open_source(
    path: Path,
    format: str | None = None,
    mapping: Path | Mapping | AnyMapping[str, Any] | None = None,
    *,
    trusted: bool = True,
    base_dir: Path | None = None,
) -> Source:
    """A catalog file as a Source. `format`: one of FORMATS, or None / "auto" to find it from the
    content. `mapping` (csv/tsv; its constants and prices for shop exports): a JSON or TOML file, a dict
    or a Mapping. `trusted`: the operator's own file (relative image paths from its folder, or
    `base_dir`); an uploaded one (`trusted=False`) reads no image from the server's disk.
    FormatError when the file cannot be read as that format at all."""
    path = Path(path)
    name = (format or "auto").strip().lower()
    if name not in (*FORMATS, "auto"):
        raise FormatError(f"unknown format {format!r}: use auto (found from the content), {names()}")
    rules = load_mapping(mapping) if mapping is not None else None
    if rules is not None and is_empty(path):
        raise FormatError(f"{path.name} is empty: there is nothing to import")
    if name == "auto":
        name = detect(path, shops=not (rules and rules.columns))
    else:
        check_named(path, name)
    if rules is not None and name not in MAPPED:
        raise FormatError(f"{path.name} is read as {name}: a mapping applies to {', '.join(MAPPED)} files only")
    if rules is not None and rules.columns and name in ("shopify", "woocommerce"):
        raise FormatError(
            f"a {name} export has its own columns: its mapping takes only constants and prices (or read it with --format csv)"
        )
    where: dict[str, Any] = {"base_dir": base_dir, "trusted": trusted}
    source: JsonLines | FileSource
    if name == "jsonl":
        source = JsonLines(path, **where)
    elif name in ("csv", "tsv"):
        source = Delimited(path, tab=name == "tsv", mapping=rules, **where)
    elif name == "shopify":
        source = ShopifyProducts(path, mapping=rules, **where)
    elif name == "woocommerce":
        source = WooCommerceProducts(path, mapping=rules, **where)
    else:
        source = TmapiAnswers(path, **where)
    source.format = name  # the format named, or the one found
    return source


def format_of(source: Source) -> str | None:
    """The format a Source of open_source reads (found from the content when not named)."""
    return getattr(source, "format", None) or None
