"""A CSV or TSV catalog, one offer a record: its columns named as catalog fields, or mapped to
them by a mapping file (mapping.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from snapsource.ingest.formats import table
from snapsource.ingest.formats.mapping import FIELDS, REQUIRED, Mapping, add_constants, cell_value, complete_prices, put
from snapsource.ingest.formats.source import FileSource, FormatError
from snapsource.ingest.rows import RawRow, clip


class Delimited(FileSource):
    """Each record an offer; the columns the mapping names (or that name catalog fields) fill it."""

    def __init__(
        self,
        path: Path,
        *,
        tab: bool = False,
        mapping: Mapping | None = None,
        base_dir: Path | None = None,
        trusted: bool = True,
    ) -> None:
        super().__init__(path, base_dir=base_dir, trusted=trusted)
        line = table.header_line(self.path)
        self.delimiter = "\t" if tab else (mapping.delimiter if mapping and mapping.delimiter else table.delimiter_of(line))
        self.rules = mapping or Mapping()
        self.plan = self._plan(table.read_header(self.path, self.delimiter), mapping)

    def _plan(self, header: table.Header, mapping: Mapping | None) -> list[tuple[int, str, list[str]]]:
        """(column index, column name, field paths) of each column read; FormatError when the file
        cannot give offers (a mapped column missing, a required field without a column)."""
        plan: list[tuple[int, str, list[str]]] = []
        if mapping is not None:
            missing = [column for column in mapping.columns if column not in header]
            if missing:
                raise FormatError(
                    f"{self.name}: the mapping names columns the file lacks: {', '.join(missing)} "
                    f"(its header: {', '.join(header.names)})"
                )
            plan = [(header.index[column], column, mapping.targets(column)) for column in mapping.columns]
        else:
            fields = {path.lower(): path for path in FIELDS}
            plan = [(i, name, [fields[name.lower()]]) for i, name in enumerate(header.names) if name.lower() in fields]
        given = {path for _, _, paths in plan for path in paths} | set(self.rules.constants)
        lacking = [" or ".join(options) for options in REQUIRED if not given & set(options)]
        if lacking:
            how = "map columns to them with --mapping FILE" if mapping is None else "add them to the mapping's columns"
            raise FormatError(
                f"{self.name}: no column for {', '.join(lacking)}: name the columns as catalog fields or {how} "
                f"(docs/catalog.md, Formats); a shop export is read with --format shopify or woocommerce"
            )
        return plan

    def rows(self) -> Iterator[RawRow]:
        reading = table.records(self.path, self.delimiter)
        try:
            next(reading, None)  # the header
            for number, cells in reading:
                yield self._row(number, cells)
        except table.TableError as exc:
            yield RawRow(exc.line, None, table.broken(exc))

    def _row(self, number: int, cells: list[str]) -> RawRow:
        data: dict[str, Any] = {}
        problems: list[str] = []
        for index, column, paths in self.plan:
            text = table.cell(cells, index)
            if not text:
                continue
            for path in paths:
                try:
                    put(data, path, cell_value(path, text, self.rules))
                except ValueError as exc:
                    problems.append(f"column {column!r} = {clip(text)!r}: {exc}")
        if problems:
            item_id = data.get("item_id")
            item_id = item_id if isinstance(item_id, int) and not isinstance(item_id, bool) else None
            return RawRow(number, None, "; ".join(problems), item_id)
        return RawRow(number, complete_prices(add_constants(data, self.rules.constants)))
