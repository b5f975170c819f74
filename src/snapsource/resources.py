"""What a server or a command loads once for a data dir: catalog, tokens, embedder, index."""

from __future__ import annotations

import dataclasses

from .catalog import Catalog
from .config import Settings
from .embed import Embedder, OnnxEmbedder
from .index import FaissIndex, VectorIndex
from .tokens import Tokens


@dataclasses.dataclass
class Resources:
    settings: Settings
    catalog: Catalog
    tokens: Tokens
    embedder: Embedder
    index: VectorIndex

    @classmethod
    def open(cls, settings: Settings) -> Resources:
        catalog = Catalog(settings.data_dir)
        embedder = OnnxEmbedder(settings.model_path or None, threads=settings.threads)
        index = FaissIndex(settings.data_dir / "index", model=model_identity(embedder, settings), dim=embedder.dim)
        return cls(settings, catalog, Tokens(catalog), embedder, index)

    def close(self) -> None:
        self.catalog.close()


def model_identity(embedder: Embedder, settings: Settings) -> str:
    """Everything that changes vectors: the model and the preprocessing settings."""
    return f"{embedder.name};trim={settings.trim_margin:g}"
