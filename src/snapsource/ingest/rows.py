"""Where an import's offers come from: a Source yields raw rows, each an offer in the catalog
schema (a dict, not validated yet) or the reason it could not be read.

A file's format (JSON Lines today; CSV, shop exports and saved TMAPI answers in formats.py) only
changes how rows are read; validation, images and writes are the pipeline's, the same for
`snapsource ingest` and the catalog API. A Source also says where its images may come from: a
file on the server's own disk resolves relative paths from its folder and fetches any address (the
operator's own catalog); offers sent over HTTP give http(s) URLs (fetched with the guarded fetcher,
so `fetch_allow` decides which private networks), `data:` URIs, or `/img/...` of stored photos.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

from snapsource import jsontext


@dataclasses.dataclass(frozen=True)
class RawRow:
    """One offer as read: `data` in the catalog schema, or None and `error` saying why not."""

    number: int  # 1-based: the line, or the first line of a product spread over several
    data: Any = None
    error: str = ""
    item_id: int | None = None  # of a row with an error, when it could be read: its problem names it
    left_out: bool = False  # no error: a product the shop does not show (a draft, hidden) or no offer (grouped)


MAX_ROW_CHARS = 32 << 20  # a JSON row: two inline photos of max_image_bytes fit, a 450 MB title does not


def bounded_lines(lines: TextIO, limit: int = MAX_ROW_CHARS) -> Iterator[str | None]:
    """The lines of a text file, each read up to `limit` characters: None stands for a longer
    one, read past in steps and never held whole (one line of 450 MB took 1.5 GB to parse)."""
    while True:
        line = lines.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith("\n"):
            while (rest := lines.readline(1 << 20)) and not rest.endswith("\n"):
                pass
            yield None
            continue
        yield line


MAX_ROW_CONTAINERS = 20_000  # objects and arrays in one JSON row: an answer page of 200 items has ~6,000


def too_nested(text: str, limit: int = MAX_ROW_CONTAINERS) -> str | None:
    """Why a JSON text is not parsed: more objects and arrays than `limit` (counted as { and [,
    before parsing: parsed, an empty {} costs about 24 times its 3 bytes); None to parse it."""
    count = text.count("{") + text.count("[")
    return f"{count:,} JSON objects and arrays, more than {limit:,} in one row: is it a catalog?" if count > limit else None


def too_long(limit: int = MAX_ROW_CHARS) -> str:
    return f"a row longer than {limit >> 20} MB: give its photos as URLs, not inline (data:)"


def clip(text: str, limit: int = 80) -> str:
    """A value for a message: long ones (a whole base64 photo, an HTML description) cut short."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Source(Protocol):
    """Rows of offers, and where their image references may point."""

    name: str  # for messages: a file name, "request"
    base_dir: Path | None  # relative image paths resolve here; None: none are read from disk
    trusted: bool  # True: the operator's own file (any address); False: guarded like a user's URL

    def rows(self) -> Iterator[RawRow]: ...

    def count(self) -> int | None:
        """The number of rows, when it is cheap to know (for progress)."""
        ...


class JsonLines:
    """A JSON Lines file, one offer per line (blank lines skipped)."""

    format = "jsonl"

    def __init__(self, path: Path, *, base_dir: Path | None = None, trusted: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.base_dir = base_dir if base_dir is not None or not trusted else self.path.parent
        self.trusted = trusted

    def rows(self) -> Iterator[RawRow]:
        with open(self.path, encoding="utf-8-sig", errors="replace") as fh:
            yield from parse_lines(bounded_lines(fh))

    def count(self) -> int | None:
        with open(self.path, encoding="utf-8-sig", errors="replace") as fh:
            return sum(1 for line in bounded_lines(fh) if line is None or line.strip())


def json_problem(exc: ValueError) -> str:
    """Why a line is not JSON that can be read, in plain words: its syntax error, or a number too
    long for Python to read (more than 4,300 digits), which json.loads refuses with a plain ValueError."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at column {exc.colno}"
    return "not valid JSON here: a number of more than 4,300 digits"


def parse_lines(lines: Iterable[str | None]) -> Iterator[RawRow]:
    """Rows of JSON Lines text, numbered by line (None: a line too long to read, bounded_lines)."""
    for number, line in enumerate(lines, start=1):
        if line is None:
            yield RawRow(number, None, too_long())
            continue
        if not line.strip():
            continue
        if (nested := too_nested(line)) is not None:
            yield RawRow(number, None, nested)
            continue
        try:
            yield RawRow(number, jsontext.loads(line))
        except ValueError as exc:
            yield RawRow(number, None, json_problem(exc))


class Records:
    """Offers already parsed (a catalog API batch): numbered from 1 in the order given."""

    def __init__(
        self,
        records: list[Any],
        *,
        name: str = "request",
        base_dir: Path | None = None,
        trusted: bool = False,
        errors: dict[int, str] | None = None,
    ):
        self.records = records
        self.name = name
        self.base_dir = base_dir
        self.trusted = trusted
        self.errors = errors or {}  # by number: rows that could not be read (rejected with the reason)

    def rows(self) -> Iterator[RawRow]:
        for number, data in enumerate(self.records, start=1):
            error = self.errors.get(number)
            yield RawRow(number, None, error) if error else RawRow(number, data)

    def count(self) -> int | None:
        return len(self.records)
