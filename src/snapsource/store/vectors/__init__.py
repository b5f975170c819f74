"""Vector stores behind one protocol (base.VectorStore): faiss in the data dir (`faiss_store`,
its IVF base in `ivf`) or a Milvus collection (`milvus`), chosen by URL in `open_vectors`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from snapsource.store.vectors.base import Compactor, IndexMismatch, Matches, VectorStore

if TYPE_CHECKING:
    from snapsource.config import Settings
    from snapsource.store.catalog import Catalog

__all__ = ["Compactor", "IndexMismatch", "Matches", "VectorStore", "open_vectors"]


def open_vectors(settings: Settings, catalog: Catalog, model: str, dim: int) -> VectorStore:
    """The vector store the `vectors` setting names: faiss in the data dir, or a Milvus collection."""
    if settings.vectors.startswith("milvus://"):
        from snapsource.store.vectors.milvus import MilvusStore  # pymilvus is needed only for Milvus

        return MilvusStore(settings.vectors, catalog, model, dim)
    if settings.vectors and settings.vectors != "faiss://":
        raise ValueError(
            f"vectors {settings.vectors!r}: expected empty (faiss in the data dir) or milvus://host:19530/collection"
        )
    from snapsource.store.vectors.faiss_store import FaissStore

    return FaissStore(settings.data_dir / "index", model, dim, rescore=settings.index_rescore, lock=settings.index_lock)
