"""Delimited text read record by record, each with the line it starts on: a quoted cell may hold
line breaks (shop exports put HTML descriptions in them), so a record's number is not its index."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from snapsource.ingest.formats.source import FormatError
from snapsource.ingest.rows import bounded_lines

DELIMITERS = ",;\t|"
# Shop exports carry whole HTML descriptions in one cell: the csv module's 128 KiB cap is too low.
csv.field_size_limit(max(csv.field_size_limit(), 16 << 20))


class TableError(Exception):
    """The csv module gave up at `line`: nothing after it can be read reliably."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line


def open_text(path: Path):
    """The file as text for the csv module: UTF-8 with or without a BOM, bad bytes replaced."""
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def header_line(path: Path, limit: int = 1 << 16) -> str:
    """The first line, once the whole file is known to be UTF-8 (FormatError otherwise)."""
    check_utf8(path)
    with open_text(path) as fh:
        return fh.readline(limit)


def check_utf8(path: Path, chunk: int = 1 << 20) -> None:
    """Refuse a file that is not UTF-8: a spreadsheet's plain "CSV" is often Windows-1252, whose
    accented letters would otherwise be imported as replacement characters, silently."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines, at = 1, 0
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                line = lines + data[: max(0, exc.start)].count(b"\n")
                raise FormatError(
                    f"{path.name}: not UTF-8 text (line {line}, byte {at + exc.start + 1}): save it as "
                    '"CSV UTF-8" (Excel) or convert it, e.g. iconv -f WINDOWS-1252 -t UTF-8'
                ) from None
            if not data:
                return
            lines += data.count(b"\n")
            at += len(data)


def delimiter_of(line: str) -> str:
    """The delimiter that splits the header line into the most columns (comma on a tie)."""
    best, most = ",", 1
    for candidate in DELIMITERS:
        columns = len(next(csv.reader([line], delimiter=candidate), []))
        if columns > most:
            best, most = candidate, columns
    return best


def records(path: Path, delimiter: str, keep: list[int] | None = None) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each record, the header first; blank lines skipped. `keep`: the
    columns a reader uses (`compact`), the only cells kept of each record after the header (a
    reader that holds many records holds no more). Raises TableError where the csv module cannot
    go on."""
    with open_text(path) as fh:
        # strict: an unclosed quote is an error at its line, not the rest of the file read as one cell
        reader = csv.reader(_lines(fh), delimiter=delimiter, strict=True)
        start = 1
        header = True
        try:
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    if keep is not None and not header:
                        cells = [cells[i] if i < len(cells) else "" for i in keep]
                    header = False
                    yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise TableError(start, str(exc)) from None


MAX_LINE_CHARS = 4 << 20  # a line of a table: a long HTML description fits; 150M columns (3 GB parsed) do not
MAX_COLUMNS = 10_000


MAX_RECORD_CHARS = 16 << 20  # a record spread over lines by quoted line breaks


def _lines(fh: TextIO) -> Iterator[str]:
    """The file's lines for the csv module, each at most MAX_LINE_CHARS and each record (its lines
    joined by quoted line breaks, told by the parity of its quotes) at most MAX_RECORD_CHARS: the
    module parses a whole record into cells, so a record of millions of separators is refused
    before it is parsed."""
    record, quoted = 0, False
    for number, line in enumerate(bounded_lines(fh, MAX_LINE_CHARS), start=1):
        if line is None:
            raise csv.Error(f"line {number} is longer than {MAX_LINE_CHARS >> 20} MB: nothing after it was read")
        record = record + len(line) if quoted else len(line)
        if record > MAX_RECORD_CHARS:
            raise csv.Error(
                f"the record that ends on line {number} is longer than {MAX_RECORD_CHARS >> 20} MB: nothing after it was read"
            )
        quoted ^= line.count('"') % 2 == 1
        yield line


def compact(at: dict[str, int | None]) -> tuple[list[int], dict[str, int | None]]:
    """The columns a reader looks up, and its lookups re-pointed at their place among them (the
    cells `records(keep=...)` keeps)."""
    keep = sorted({i for i in at.values() if i is not None})
    return keep, {key: (keep.index(i) if i is not None else None) for key, i in at.items()}


def read_header(path: Path, delimiter: str) -> Header:
    """The first record's columns; FormatError when even that cannot be read."""
    try:
        cells = next(records(path, delimiter), (1, []))[1]
    except TableError as exc:
        fix = "" if "longer than" in str(exc) else ": fix its quoting"
        raise FormatError(f"{path.name}: its header cannot be read ({exc}){fix}") from None
    if len(cells) > MAX_COLUMNS:
        raise FormatError(f"{path.name}: its header has {len(cells):,} columns, more than {MAX_COLUMNS:,}: is it a catalog?")
    return Header(cells)


class Header:
    """A header's columns by name (surrounding spaces ignored; the first of repeated names wins)."""

    def __init__(self, cells: list[str]) -> None:
        self.names = [cell.strip() for cell in cells]
        self.index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self.index.setdefault(name, i)

    def find(self, *names: str) -> int | None:
        """The first of `names` the header has."""
        return next((self.index[n] for n in names if n in self.index), None)

    def __contains__(self, name: str) -> bool:
        return name in self.index


def cell(cells: list[str], index: int | None) -> str:
    """A record's cell, stripped; "" where the column is missing or the record short."""
    return cells[index].strip() if index is not None and index < len(cells) else ""


def broken(error: TableError) -> str:
    return f"the file cannot be read from here on ({error}): fix its quoting; nothing after this line was imported"
