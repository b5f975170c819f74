"""The `snapsource` command (typer)."""

from snapsource.cli.main import app, main

__all__ = ["app", "main"]
