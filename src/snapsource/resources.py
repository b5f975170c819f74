"""What a server or a command loads once for a data dir: catalog, tokens, embedder, vector store,
query images, kept rankings, the URL fetcher, the filter columns and the category names. The one
place that picks backends (by the settings' URLs); everything above it uses them through their protocols."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from snapsource.accounts.tokens import Tokens
from snapsource.config import Settings
from snapsource.store.catalog import Catalog
from snapsource.store.category_names import CategoryNames
from snapsource.store.columns import OfferColumns
from snapsource.store.rankings import Rankings
from snapsource.store.uploads import Uploads
from snapsource.store.vectors import VectorStore, open_vectors
from snapsource.vision import hands, models
from snapsource.vision.embed import open_embedder
from snapsource.vision.fetch import Fetcher, FetchPolicy
from snapsource.vision.model import Embedder


@dataclasses.dataclass
class Resources:
    settings: Settings
    catalog: Catalog
    tokens: Tokens
    embedder: Embedder
    index: VectorStore
    uploads: Uploads
    fetcher: Fetcher
    columns: OfferColumns
    rankings: Rankings = dataclasses.field(default_factory=Rankings)
    category_names: CategoryNames = dataclasses.field(default_factory=CategoryNames)

    @classmethod
    def open(cls, settings: Settings) -> Resources:
        settings.check()  # first: settings that cannot work together leave nothing open
        one_thread_per_search()
        hands.use(settings.pixel_threads)
        names = CategoryNames.of(settings.categories)
        path: Path | None = Path(settings.model_path) if settings.model_path else None
        precision = settings.precision
        if settings.model:  # a model `snapsource model add` stored, or a built-in one by its id
            chosen = models.find(settings.data_dir, settings.model)
            path, precision = (None if chosen.built_in else chosen.path), chosen.card.precision
        catalog = Catalog(settings.data_dir, settings.catalog)
        embedder = open_embedder(settings.device, path, settings.threads, precision)
        index = open_vectors(settings, catalog, model_identity(embedder, settings), embedder.dim)
        uploads = Uploads(
            settings.data_dir / "uploads",
            query_pipeline(embedder, settings),
            memory=settings.upload_cache_size,
            keep_days=settings.upload_keep_days,
        )
        fetcher = Fetcher(FetchPolicy.of(settings))
        columns = OfferColumns(catalog)
        return cls(settings, catalog, Tokens(catalog), embedder, index, uploads, fetcher, columns, category_names=names)

    def image_file(self, sha256: str, ext: str) -> Path | None:
        """The file this service serves as /img/<sha256>.<ext>: a catalog photo or a query image."""
        for path in (self.catalog.image_file(sha256, ext), self.uploads.file(sha256, ext)):
            if path.is_file():
                return path
        return None

    def close(self) -> None:
        self.tokens.flush()
        self.catalog.close()
        self.index.close()
        self.uploads.close()
        self.fetcher.close()


def one_thread_per_search() -> None:
    """Searches run side by side, one thread each, beside onnxruntime's own pool: numpy's BLAS and
    faiss's OpenMP stay single-threaded in this process. Their idle threads spin on the cores the
    model needs: a model call right after a search took 8 ms instead of 2.3 (docs/performance.md).
    Compaction takes every core while it runs (store/vectors/faiss_store.py)."""
    import faiss
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    faiss.omp_set_num_threads(1)


def model_identity(embedder: Embedder, settings: Settings) -> str:
    """Everything that changes vectors: the model and the preprocessing settings."""
    return f"{embedder.name};trim={settings.trim_margin:g}"


def query_pipeline(embedder: Embedder, settings: Settings) -> str:
    """Everything that changes what a query photo's analysis holds (kept analyses follow it)."""
    return (
        f"{model_identity(embedder, settings)};crops={int(settings.multi_crop)};localise={int(settings.localise)}"
        f";regions={settings.max_regions};local={int(settings.rerank_k > 0)}"
    )
