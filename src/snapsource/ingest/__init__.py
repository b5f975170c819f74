"""Catalog intake: read offers, fetch and embed their photos, write offers, images and vectors;
`doctor` repairs what an interrupted import left behind."""

from snapsource.ingest.pipeline import IngestReport, Plan, decode_for_model, ingest, iter_rows, local_path

__all__ = ["IngestReport", "Plan", "decode_for_model", "ingest", "iter_rows", "local_path"]
