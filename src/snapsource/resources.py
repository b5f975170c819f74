"""What a server or a command loads once for a data dir: catalog, tokens, embedder, index,
query images, the URL fetcher and the filter columns."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from snapsource.store.catalog import Catalog
from snapsource.store.columns import OfferColumns
from snapsource.config import Settings
from snapsource.vision.embed import Embedder, open_embedder
from snapsource.vision.fetch import Fetcher, FetchPolicy
from snapsource.store.vectors.faiss_store import VectorStore
from snapsource.accounts.tokens import Tokens
from snapsource.store.uploads import Uploads

if TYPE_CHECKING:
    from snapsource.store.vectors.milvus import MilvusStore


@dataclasses.dataclass
class Resources:
    settings: Settings
    catalog: Catalog
    tokens: Tokens
    embedder: Embedder
    index: VectorStore | MilvusStore
    uploads: Uploads
    fetcher: Fetcher
    columns: OfferColumns

    @classmethod
    def open(cls, settings: Settings) -> Resources:
        catalog = Catalog(settings.data_dir, settings.catalog)
        embedder = open_embedder(settings.device, settings.model_path or None, threads=settings.threads)
        index = open_vectors(settings, catalog, model_identity(embedder, settings), embedder.dim)
        uploads = Uploads(
            settings.data_dir / "uploads",
            query_pipeline(embedder, settings),
            memory=settings.upload_cache_size,
            keep_days=settings.upload_keep_days,
        )
        fetcher = Fetcher(FetchPolicy.of(settings))
        return cls(settings, catalog, Tokens(catalog), embedder, index, uploads, fetcher, OfferColumns(catalog))

    def close(self) -> None:
        self.tokens.flush()
        self.catalog.close()
        self.index.close()
        self.uploads.close()
        self.fetcher.close()


def open_vectors(settings: Settings, catalog: Catalog, model: str, dim: int) -> VectorStore | MilvusStore:
    """The vector store the `vectors` setting names: faiss in the data dir, or a Milvus collection."""
    if settings.vectors.startswith("milvus://"):
        from snapsource.store.vectors.milvus import MilvusStore  # pymilvus is needed only for Milvus

        return MilvusStore(settings.vectors, catalog, model, dim)
    if settings.vectors and settings.vectors != "faiss://":
        raise ValueError(f"vectors {settings.vectors!r}: expected empty (faiss in the data dir) or milvus://host:19530/collection")
    return VectorStore(settings.data_dir / "index", model, dim, rescore=settings.index_rescore, lock=settings.index_lock)


def model_identity(embedder: Embedder, settings: Settings) -> str:
    """Everything that changes vectors: the model and the preprocessing settings."""
    return f"{embedder.name};trim={settings.trim_margin:g}"


def query_pipeline(embedder: Embedder, settings: Settings) -> str:
    """Everything that changes what a query photo's analysis holds (kept analyses follow it)."""
    return (
        f"{model_identity(embedder, settings)};crops={int(settings.multi_crop)};localise={int(settings.localise)}"
        f";regions={settings.max_regions};local={int(settings.rerank_k > 0)}"
    )
