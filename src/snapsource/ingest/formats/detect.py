"""Which format a catalog file is in, from its first bytes: JSON or delimited text, then the
keys of its first object or the names in its header."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from snapsource import jsontext
from snapsource.ingest.formats import shopify, table
from snapsource.ingest.formats.source import FormatError, names
from snapsource.ingest.formats.tmapi import ENVELOPE_KEYS

HEAD = 1 << 16
WOOCOMMERCE = {"Type", "SKU", "Images"}


def detect(path: Path, *, shops: bool = True) -> str:
    """The format's name; `shops=False` reads a delimited file as plain csv/tsv (a mapping's columns
    say so). FormatError when no format fits."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD)
    if not head.strip():
        return "jsonl"  # nothing to import; the reader says so
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise FormatError(f"{path.name} is UTF-32 text: save it as UTF-8 (CSV UTF-8 in Excel)")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FormatError(f"{path.name} is UTF-16 text (Excel's Unicode Text): save it as CSV UTF-8, or as UTF-8 text")
    if b"\x00" in head or head.startswith(b"PK\x03\x04"):
        raise FormatError(f"{path.name} is not text (a spreadsheet workbook?): save it as CSV; the formats are {names()}")
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    if not text:
        return "jsonl"  # a byte order mark and blank space: nothing to import; the reader says so
    if text.startswith(("{", "[")):
        return _json(text.splitlines()[0].strip())
    line = text.splitlines()[0]
    delimiter = table.delimiter_of(line)
    header = {name.strip() for name in next(csv.reader([line], delimiter=delimiter), [])}
    if shops and header & set(shopify.HANDLES):
        return "shopify"
    if shops and WOOCOMMERCE <= header:
        return "woocommerce"
    if len(header) < 2:
        raise FormatError(
            f"cannot tell the format of {path.name}: its first line is neither JSON nor a header of columns; "
            f"the formats are {names()} (name one with --format)"
        )
    return "tsv" if delimiter == "\t" else "csv"


JSON_FORMATS = ("jsonl", "tmapi")


def is_empty(path: Path) -> bool:
    """Nothing but white space in the file's first bytes (and nothing after them)."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD)
        return not head.removeprefix(b"\xef\xbb\xbf").strip() and not fh.read(1)


def check_named(path: Path, name: str) -> None:
    """FormatError when a format named by the user cannot be this file's: JSON named for a table,
    or a table for JSON. Every row would be rejected for the same reason; one error says it."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD).decode("utf-8-sig", errors="replace").lstrip()
    if not head:
        return
    is_json = head.startswith(("{", "["))
    if name == "tsv" and not is_json and "\t" not in head.splitlines()[0]:
        raise FormatError(
            f"{path.name} was named tsv, but its first line has no tab: leave the format as auto (found from the "
            f"content) or name csv, which reads ; , | and tab"
        )
    if (name in JSON_FORMATS) != is_json:
        found = detect(path)  # a file that is neither says so itself
        raise FormatError(
            f"{path.name} was named {name}, but it reads as {found}: leave the format as auto (found from the content) "
            f"or name {found}"
        )


def _json(first: str) -> str:
    """jsonl (offers, one a line) or tmapi (saved answers, or any JSON document of items), by the
    first line: a whole object decides by its keys; else (a pretty-printed document, a line longer
    than the head read, or no JSON at all) its first key does, and a line that is no JSON at all
    is left to the JSON Lines reader to report."""
    try:
        value = jsontext.loads(first)
    except ValueError:  # a syntax error, or a number past 4,300 digits
        key = re.match(r'\{\s*"((?:[^"\\]|\\.)*)"', first)
        if first in ("{", "[") or first.startswith("[") or (key and key.group(1) in ENVELOPE_KEYS | {"items"}):
            return "tmapi"
        return "jsonl"
    if isinstance(value, dict) and "item_id" not in value and value.keys() & (ENVELOPE_KEYS | {"items"}):
        return "tmapi"
    return "jsonl" if isinstance(value, dict) else "tmapi"
