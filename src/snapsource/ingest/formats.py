"""The formats catalogs come in, read into rows of the catalog schema (rows.py)."""

from __future__ import annotations

from pathlib import Path

from snapsource.ingest.rows import JsonLines, Source


def open_source(path: Path, format: str | None = None) -> Source:
    """A catalog file as a Source: JSON Lines in the catalog schema."""
    return JsonLines(path)
