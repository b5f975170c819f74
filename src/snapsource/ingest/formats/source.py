"""What every file format shares: the Source's attributes, the error for a file that cannot be
read at all, and the item_id of a product that is keyed by text."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from snapsource.ingest.rows import RawRow

FORMATS = ("jsonl", "csv", "tsv", "shopify", "woocommerce", "tmapi")


class FormatError(ValueError):
    """The file as a whole cannot be read as the format named or found (not one bad row: those
    are RawRows with an error). The message says what to change."""


def for_api(message: str) -> str:
    """A format's message as the catalog API says it: the `format` and `mapping` fields, not the
    CLI's --format and --mapping."""
    message = re.sub(r"--format (\w+)", r'the `format` field "\1"', message)
    message = message.replace("--mapping FILE", "a mapping (the `mapping` field)")
    return message.replace("--format", "the `format` field")


def names() -> str:
    return ", ".join(FORMATS[:-1]) + " or " + FORMATS[-1]


def stable_id(key: str) -> int:
    """An offer's item_id from a text key (a Shopify handle, a SKU): the top 53 bits of the key's
    SHA-256 (UTF-8), the same on every import, never 0. 53 bits: JavaScript clients (the web page
    among them) read JSON numbers as doubles, exact only up to 2^53."""
    value = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 11
    return value or 1


def numeric_id(text: str) -> int | None:
    """A key that is already an item_id: ASCII digits, 1 to 2^63 - 1 (what the stores hold)."""
    value = int(text) if text.isascii() and text.isdigit() else 0
    return value if 0 < value < 1 << 63 else None


class FileSource:
    """A catalog file read by one of the formats: `rows()` is theirs; `count()` reads it once more,
    which costs a parse and never an image, so progress can show a total."""

    format = ""  # its name in FORMATS, set by open_source

    def __init__(self, path: Path, *, base_dir: Path | None = None, trusted: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.base_dir = base_dir if base_dir is not None or not trusted else self.path.parent
        self.trusted = trusted

    def rows(self) -> Iterator[RawRow]:  # pragma: no cover - each format's own
        raise NotImplementedError

    def count(self) -> int | None:
        return sum(1 for _ in self.rows())
