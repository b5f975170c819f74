"""Search answers saved by a TMAPI (or snapsource) client, imported as a catalog.

Reads, one per line or as a whole document (pretty-printed): answers in TMAPI's envelope
(`{"code":200,"msg":"success","data":{"items":[...]}}`), their `data` alone, bare items (what
`snapsource client search --json` writes) and arrays of any of these. Items already have the
catalog's schema; nothing is added to them. Saved searches overlap: an offer met again (the same
item_id) is read once, where it first appears.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from snapsource import jsontext
from snapsource.ingest.formats.source import FileSource
from snapsource.ingest.rows import RawRow, bounded_lines, json_problem, too_long, too_nested

ENVELOPE_KEYS = frozenset({"code", "msg", "data"})
_decoder = json.JSONDecoder()
MAX_DOCUMENT_BYTES = 64 << 20  # a document that is not JSON Lines (pretty-printed answers)
MAX_DOCUMENT_CONTAINERS = 200_000  # its objects and arrays: about a hundred saved answer pages
_space = re.compile(r"[ \t\n\r]*")


def _skip(text: str, at: int) -> int:
    match = _space.match(text, at)
    return match.end() if match else at


def _members(text: str, at: int) -> dict[str, int]:
    """The object at `at` (parsed once already, so well-formed): each key's value offset."""
    found: dict[str, int] = {}
    at = _skip(text, at + 1)
    while text[at] != "}":
        key, at = _decoder.raw_decode(text, at)
        at = _skip(text, _skip(text, at) + 1)  # past the colon
        found[key] = at
        _, at = _decoder.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] == ",":
            at = _skip(text, at + 1)
    return found


def _elements(text: str, at: int) -> list[int]:
    """The array at `at`: each element's offset."""
    found: list[int] = []
    at = _skip(text, at + 1)
    while text[at] != "]":
        found.append(at)
        _, at = _decoder.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] == ",":
            at = _skip(text, at + 1)
    return found


class TmapiAnswers(FileSource):
    """Items of saved search answers; each row is numbered by the line its item starts on."""

    def rows(self) -> Iterator[RawRow]:
        seen: set[int] = set()
        for row in self._items():
            item_id = row.data.get("item_id") if isinstance(row.data, dict) else None
            if isinstance(item_id, int):
                if item_id in seen:
                    continue
                seen.add(item_id)
            yield row

    def _items(self) -> Iterator[RawRow]:
        with open(self.path, encoding="utf-8-sig", errors="replace") as fh:
            first = next((line for line in bounded_lines(fh) if line is None or line.strip()), "")
        if first is not None and (too_nested(first) is not None or _parses(first)):  # lines; a huge one rejects itself
            with open(self.path, encoding="utf-8-sig", errors="replace") as fh:
                for number, line in enumerate(bounded_lines(fh), start=1):
                    if line is None:
                        yield RawRow(number, None, too_long())
                        continue
                    if not line.strip():
                        continue
                    if (nested := too_nested(line)) is not None:
                        yield RawRow(number, None, nested)
                        continue
                    try:
                        value = jsontext.loads(line)
                    except ValueError as exc:
                        yield RawRow(number, None, json_problem(exc))
                        continue
                    yield from _rows(value, _fixed(number))
            return
        if self.path.stat().st_size > MAX_DOCUMENT_BYTES:  # parsed whole: about ten times its size in memory
            yield RawRow(
                1,
                None,
                f"a JSON document over {MAX_DOCUMENT_BYTES >> 20} MB is read whole: write it as JSON Lines "
                "(one answer or offer a line), which is read a line at a time",
            )
            return
        text = self.path.read_text(encoding="utf-8-sig", errors="replace")
        if (nested := too_nested(text, MAX_DOCUMENT_CONTAINERS)) is not None:
            yield RawRow(1, None, f"{nested.replace('in one row', 'in one JSON document')}; write it as JSON Lines")
            return
        breaks = [m.start() for m in re.finditer("\n", text)]

        def line_of(offset: int) -> int:
            return bisect.bisect_left(breaks, offset) + 1

        at = _skip(text, 0)
        while at < len(text):
            try:
                value, end = jsontext.raw_decode(_decoder, text, at)
            except json.JSONDecodeError as exc:
                yield RawRow(exc.lineno, None, f"not valid JSON: {exc.msg} at column {exc.colno}; nothing after it was read")
                return
            except ValueError as exc:
                yield RawRow(line_of(at), None, f"{json_problem(exc)}; nothing after it was read")
                return
            yield from _rows(value, line_of, text, at)
            at = _skip(text, end)


def _fixed(number: int) -> Callable[[int], int]:
    """One line for every item of a JSON Lines line."""
    return lambda _: number


def _parses(line: str) -> bool:
    try:
        jsontext.loads(line)
    except ValueError:
        return False
    return True


def _rows(value: Any, line_of: Callable[[int], int], text: str | None = None, at: int = 0) -> Iterator[RawRow]:
    """The items in one JSON value; `text` and `at` (a whole document) place each on its line."""
    if isinstance(value, list):
        offsets = _elements(text, at) if text is not None else [at] * len(value)
        for element, offset in zip(value, offsets):
            yield from _rows(element, line_of, text, offset)
        return
    if not isinstance(value, dict):
        yield RawRow(line_of(at), None, "not a TMAPI answer or item: a JSON object was expected")
        return
    if "item_id" in value:
        yield RawRow(line_of(at), value)
        return
    if value.keys() & ENVELOPE_KEYS:
        code = value.get("code")
        if code not in (None, 200):
            yield RawRow(line_of(at), None, f"a failed answer (code {code}: {value.get('msg', '')}): it holds no items")
            return
        data = value.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            yield RawRow(line_of(at), None, 'an answer without data.items: expected {"code":200,"data":{"items":[...]}}')
            return
        at = _members(text, at)["data"] if text is not None else at
        value = data
    if isinstance(value.get("items"), list):
        at = _members(text, at)["items"] if text is not None else at
        yield from _rows(value["items"], line_of, text, at)
        return
    yield RawRow(line_of(at), None, 'neither a TMAPI answer ({"code":200,"data":{"items":[...]}}) nor an item (no item_id)')
