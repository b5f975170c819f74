"""Catalog import: JSON Lines of offers -> image files, vectors and offer rows.

Stages, per chunk of offers: read and hash every image (threads), decode and prepare only the
images whose content is new (the same threads, or a pool of decoder processes when a GPU embeds
faster than threads can decode), embed them in batches, then write images, vectors and offers.
The next chunk is read and decoded while the current one is embedded. Bad rows and unreadable images
are reported with their row number and skipped; everything else is imported.

Crash safety comes from ordering: an image row is written before its vector and the index is
saved atomically at checkpoints, so a killed import leaves at worst image rows without vectors,
which the next run embeds again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from pydantic import ValidationError

from snapsource.ingest.formats import open_source
from snapsource.ingest.rows import RawRow, Source, clip
from snapsource.offer import OfferRecord
from snapsource.resources import Resources
from snapsource.store.catalog import IMAGE_PATH, NewImage, StoredImage
from snapsource.store.sqlite import write_file
from snapsource.store.writer import Writer
from snapsource.vision import gpu_images, images, verify
from snapsource.vision.card import Input
from snapsource.vision.embed_torch import TorchEmbedder
from snapsource.vision.fetch import Fetcher, FetchError, FetchPolicy, Unreachable

UNREACHABLE_RUN = 20  # photos in a row that a host did not answer, after which an import stops asking it
CHUNK_OFFERS = 32  # at least; a chunk holds a batch's worth of offers (GPU_CHUNK_BATCHES on a GPU)
GPU_CHUNK_BATCHES = 4  # so that storing one batch overlaps embedding the next
CHECKPOINT_VECTORS = 5000
CPU_BATCH, GPU_BATCH = 32, 256
DELETION_SAMPLE = 10  # offers named when a deletion is shown or refused
log = logging.getLogger("snapsource.ingest")


@dataclasses.dataclass(frozen=True)
class Problem:
    row: int
    item_id: int | None
    reason: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one row: added, updated, unchanged or rejected (with the reason)."""

    row: int
    item_id: int | None
    result: str
    reason: str = ""
    skipped: bool = False  # rejected because none of its images could be read


@dataclasses.dataclass(frozen=True)
class DeleteMissing:
    """How `--delete-missing` may remove the offers a file does not list. It never runs while a
    row of the file was rejected or skipped (that row's offer cannot be told from a missing one);
    above `delete_missing_max_share` of the catalog it needs `confirmed` (`--yes`, the API's
    confirm_delete=true)."""

    confirmed: bool = False
    earlier_failures: int = 0  # rows rejected or skipped by earlier runs of a resumed import job


@dataclasses.dataclass
class Deletion:
    """What `--delete-missing` found, and did: the offers missing from the file, a sample of
    them (item_id, title), how many were deleted, or why none were."""

    missing: int = 0
    catalog: int = 0  # offers in the catalog before deleting
    sample: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    deleted: int = 0
    refused: str = ""
    kept_in: str = ""  # the file holding the deleted offers' documents (JSON Lines, to import again)

    def wire(self) -> dict[str, object]:
        return {
            "missing": self.missing,
            "catalog": self.catalog,
            "deleted": self.deleted,
            "refused": self.refused or None,
            "sample": [{"item_id": item_id, "title": title} for item_id, title in self.sample],
        }


@dataclasses.dataclass
class IngestReport:
    """What an import did. Every row of the file is one of: added, updated, unchanged (imported),
    rejected (not valid JSON or not a valid offer), skipped (none of its images could be read) or
    left out (a shop's unpublished, hidden or grouped product: not a failure)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    left_out: int = 0  # products a shop export marks unpublished or hidden, and grouped ones: no offers
    deleted: int = 0
    images_embedded: int = 0
    images_reused: int = 0
    images_failed: int = 0
    images_gpu_decoded: int = 0  # of those embedded: decoded by nvJPEG rather than the CPU
    seconds: float = 0.0
    compacted: dict[str, object] | None = None  # what compaction of the index did, if it ran
    problems: list[Problem] = dataclasses.field(default_factory=list)
    outcomes: list[Outcome] | None = None  # each row's result, when asked for (the catalog API)
    deletion: Deletion | None = None  # what --delete-missing found and did, when asked for

    def reject(self, row: int, item_id: int | None, reason: str) -> None:
        """A row that imports nothing because it is invalid."""
        self.rejected += 1
        self.problems.append(Problem(row, item_id, reason))
        self.outcome(row, item_id, "rejected", reason)

    def outcome(self, row: int, item_id: int | None, result: str, reason: str = "", *, skipped: bool = False) -> None:
        if self.outcomes is not None:
            self.outcomes.append(Outcome(row, item_id, result, reason, skipped))

    @property
    def imported(self) -> int:
        return self.added + self.updated + self.unchanged

    @property
    def images_per_second(self) -> float:
        return self.images_embedded / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class _Row:
    number: int
    record: OfferRecord


@dataclasses.dataclass
class _Loaded:
    """One image reference after reading: its bytes and hash, or why it failed."""

    source: str
    sha256: str = ""
    data: bytes = b""
    size: tuple[int, int] = (0, 0)
    pixels: np.ndarray | None = None  # (size, size, 3) uint8, the model card's size: images.pixels
    header: gpu_images.Header | None = None  # a JPEG left for the GPU to decode (pixels None)
    ext: str = ""  # the stored copy's extension, from the bytes
    local: bytes | None = None  # SIFT features, when geometric re-ranking is on
    error: str = ""

    @property
    def fresh(self) -> bool:
        """Read, new, and ready for the model (or for the GPU to decode)."""
        return not self.error and (self.pixels is not None or self.header is not None)


Progress = Callable[[int, int], None]
Checkpoint = Callable[[int, "IngestReport"], None]


@dataclasses.dataclass
class _Scan:
    """What reading the file learns besides the rows: ids seen, ids to keep, rows that failed."""

    seen: dict[int, int] = dataclasses.field(default_factory=dict)
    protected: set[int] = dataclasses.field(default_factory=set)
    failed: int = 0  # rows rejected as they were read: not an offer, or not a valid one


def _validated(raw_row: RawRow, scan: _Scan) -> tuple[OfferRecord | None, int | None, str]:
    """A row's offer, or None with its item_id (when one could be read) and why not."""
    raw = raw_row.data
    if raw_row.error:
        record, item_id, reason = None, raw_row.item_id, raw_row.error
    else:
        item_id = raw.get("item_id") if isinstance(raw, dict) else None
        item_id = item_id if isinstance(item_id, int) and not isinstance(item_id, bool) and 0 < item_id < 1 << 63 else None
        try:
            return OfferRecord.model_validate(raw), item_id, ""
        except ValidationError as exc:
            record, reason = None, _explain(exc)
    scan.failed += 1
    if item_id is not None:
        scan.protected.add(item_id)  # keep what we have for it; --delete-missing must not drop it
    return record, item_id, reason


def iter_rows(
    source: Source, report: IngestReport, scan: _Scan | None = None, start_after: int = 0, *, ids_before: bool = False
) -> Iterator[_Row]:
    """Valid rows after `start_after`, streamed; problems go to the report. A repeated item_id:
    the later row wins. `ids_before`: the rows up to `start_after` (a resumed job's) are still
    read for their item_ids, so that --delete-missing keeps their offers."""
    scan = scan if scan is not None else _Scan()
    for raw_row in source.rows():
        number = raw_row.number
        if number <= start_after:
            if ids_before and not raw_row.left_out:  # its failure, if any, was counted by the run that read it (earlier_failures)
                failed = scan.failed
                earlier, _, _ = _validated(raw_row, scan)
                scan.failed = failed
                if earlier is not None:
                    scan.seen[earlier.item_id] = number
            continue
        report.rows += 1
        if raw_row.left_out:  # no offer by design: neither a failure nor kept by --delete-missing
            report.left_out += 1
            report.problems.append(Problem(number, raw_row.item_id, raw_row.error))
            report.outcome(number, raw_row.item_id, "left_out", raw_row.error)
            continue
        record, item_id, reason = _validated(raw_row, scan)
        if record is None:
            report.reject(number, item_id, reason)
            continue
        if record.item_id in scan.seen:
            report.problems.append(
                Problem(
                    number,
                    record.item_id,
                    f"the same item_id as row {scan.seen[record.item_id]}: this row is imported and row "
                    f"{scan.seen[record.item_id]} is not (a key written twice is often a mistake: check both rows)",
                )
            )
        scan.seen[record.item_id] = number
        yield _Row(number, record)


def _batched(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    batch: list[_Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "row"
        parts.append(f"{clip(where)}: {clip(err['msg'].removeprefix('Value error, '), 200)}")
    return "invalid offer: " + "; ".join(parts)


def inline_image(uri: str, max_bytes: int) -> bytes:
    """The bytes of a `data:[<type>];base64,<data>` image, within the image size cap."""
    head, comma, payload = uri.partition(",")
    if not comma or not head.endswith(";base64"):
        raise images.ImageError("a data: URI image must be base64: data:image/jpeg;base64,<data>")
    if len(payload) * 3 // 4 > max_bytes:
        raise images.ImageError(f"larger than {max_bytes:,} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise images.ImageError(f"the data: URI is not valid base64: {exc}") from None


def local_path(source: str, base_dir: Path) -> Path:
    """A catalog's image path: absolute, or relative to the catalog file's folder. A relative path
    not found there whose tail is (`shop/photos/a.jpg`, written from a zip's top folder, for the
    file's `photos/a.jpg`) is that file: the longest such tail is taken."""
    path = Path(source.replace("\\", "/"))
    if path.is_absolute():
        return path
    found = base_dir / path
    if found.exists():
        return found
    for start in range(len(path.parts)):
        tail = path.parts[start:]
        exact = base_dir.joinpath(*tail)
        if exact.is_file():
            return exact
        folded = _folded(base_dir, tail)  # `fotos/a.JPG` for Fotos/a.jpg, as Windows and macOS read it
        if folded is not None:
            return folded
    return found


def _folded(base_dir: Path, parts: tuple[str, ...]) -> Path | None:
    """The one file under base_dir whose path is `parts` but for letter case; None when none or several."""
    at = base_dir
    for part in parts:
        if part in (".", ".."):
            return None
        names = _names(str(at), _mtime(at)).get(part.casefold(), [])
        if len(names) != 1:
            return None
        at = at / names[0]
    return at if at.is_file() else None


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return -1


@functools.lru_cache(maxsize=64)
def _names(folder: str, mtime: int) -> dict[str, list[str]]:
    """A folder's entries by their case-folded name (read once per change of the folder)."""
    by_fold: dict[str, list[str]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                by_fold.setdefault(entry.name.casefold(), []).append(entry.name)
    except OSError:
        pass
    return by_fold


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A new image made ready for the model, in a reading thread or a decoder process."""

    size: tuple[int, int]  # upright size of the file
    pixels: np.ndarray
    local: bytes | None


def _local_features(gray: np.ndarray) -> bytes:
    return verify.extract_gray(gray).to_bytes()


def decode_for_model(
    data: bytes, limits: images.ImageLimits, trim_margin: float, local: bool, shape: Input | None = None
) -> Decoded | str:
    """Decode, trim and resize one image (and its SIFT features), to the model card's `shape`:
    the CPU work of ingest.

    Module-level and returning the error's text, so that a decoder process can run it.
    """
    try:
        img = images.decode(data, limits)
        features = verify.extract(img).to_bytes() if local else None
        return Decoded(images.source_size(img), images.pixels(img, trim_margin, shape), features)
    except (OSError, images.ImageError) as exc:
        return str(exc)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How an ingest uses this machine: batch size, decoder processes, reading threads, and
    whether JPEGs are decoded on the GPU (nvJPEG) rather than by the decoders."""

    batch_size: int
    decoders: int
    threads: int
    gpu_decode: bool = False
    chunk_offers: int = CHUNK_OFFERS  # read ahead while a chunk is embedded

    @classmethod
    def of(cls, resources: Resources) -> Plan:
        settings, gpu = resources.settings, resources.embedder.gpu
        batch = settings.batch_size if settings.batch_size > 0 else (GPU_BATCH if gpu else CPU_BATCH)
        decoders = settings.decoders if settings.decoders >= 0 else ((os.cpu_count() or 1) if gpu else 0)
        gpu_decode = gpu and settings.gpu_decode and gpu_images.nvjpeg_problem(str(resources.embedder.device)) is None
        # a thread waits on each decoder process's result, and a few more fetch meanwhile
        threads = max(1, settings.ingest_workers, decoders + 2 if decoders else 0)
        # on the CPU a small chunk starts embedding soonest; a GPU wants several batches a chunk
        chunk = max(CHUNK_OFFERS, batch * (GPU_CHUNK_BATCHES if gpu else 1))
        return cls(batch, decoders, threads, gpu_decode, chunk)

    def describe(self) -> str:
        where = f"{self.decoders} processes" if self.decoders else f"{self.threads} threads"
        return f"batches of {self.batch_size}; decoding JPEGs {'on the GPU (nvJPEG), the rest ' if self.gpu_decode else ''}in {where}"


class _Reader:
    """Reads image references (catalog-relative paths or http(s) URLs) and prepares new ones."""

    def __init__(self, resources: Resources, source: Source, known: Callable[[str], bool], plan: Plan) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.catalog = resources.catalog
        self.gpu_decode = plan.gpu_decode
        self.base_dir = source.base_dir
        self.trusted = source.trusted
        self.known = known
        self.limits = images.ImageLimits.of(self.settings)
        # A file's URLs are the operator's own (often an intranet image server): any address.
        # Offers sent over HTTP are fetched like a user's URL: public addresses and fetch_allow.
        # Both with the same caps, timeouts and redirect limit as user URLs.
        self.fetcher = Fetcher(FetchPolicy.of(self.settings, guard=not source.trusted))
        self._unreachable: dict[str, int] = {}  # host -> photos in a row it did not answer
        self._hosts_lock = threading.Lock()
        # spawned, not forked: the parent holds threads, onnxruntime's pools and perhaps a CUDA context
        self.decoders: Executor | None = (
            ProcessPoolExecutor(plan.decoders, mp_context=multiprocessing.get_context("spawn")) if plan.decoders else None
        )

    def fetch(self, source: str) -> bytes:
        if source.startswith(("http://", "https://", "/img/")):
            stored = self.stored(source)  # an offer read back from the catalog API, or a result's `img`
            if stored is not None:
                return self.read(stored)
            if source.startswith("/img/"):
                raise images.ImageError(f"{shorten_ref(source)} is not a photo this server holds")
            return self.download(source)
        if source.startswith("data:"):
            return inline_image(source, self.limits.max_bytes)
        if self.base_dir is None:
            raise images.ImageError(
                "a path on the server is read only from a catalog file given to `snapsource ingest` or "
                "zipped with its photos; send an http(s) URL, a data: URI (base64) or /img/<name> of a stored photo"
            )
        try:
            path = local_path(source, self.base_dir)
            if not self.trusted and not path.resolve().is_relative_to(self.base_dir.resolve()):
                # a zip's photos (ingest/archive.py): inside the catalog file's folder only
                raise images.ImageError(f"{shorten_ref(source)} is outside the catalog file's folder in the zip")
            return self.read(path)
        except ValueError:  # the OS takes no NUL byte in a path
            raise images.ImageError(f"not a file name: {shorten_ref(source)}") from None

    def download(self, url: str) -> bytes:
        """A photo's URL fetched, unless its host failed to answer the last UNREACHABLE_RUN times
        in this import: a file of 58,000 photos on a host that does not resolve took 3.5 hours
        (each waits for DNS or a connection), holding the one import queue."""
        host = urlsplit(url).hostname or ""
        with self._hosts_lock:
            failed = self._unreachable.get(host, 0)
        if failed >= UNREACHABLE_RUN:
            raise FetchError(
                f"{host} did not answer the last {UNREACHABLE_RUN} photos asked of it; its others are skipped in this import"
            )
        try:
            data = self.fetcher.fetch(url)
        except Unreachable:
            with self._hosts_lock:
                self._unreachable[host] = self._unreachable.get(host, 0) + 1
            raise
        if failed:
            with self._hosts_lock:
                self._unreachable[host] = 0
        return data

    def stored(self, url: str) -> Path | None:
        """The file of a photo this server holds, named by its `/img/<sha256>.<ext>` path or a URL
        of that path (the `img` of a result, what upload and convert_url answer) whatever host the
        URL names: the name is the content's hash, so the bytes are the ones the URL would give,
        and the guarded fetcher would refuse this server's own loopback address."""
        match = IMAGE_PATH.match(urlsplit(url).path)
        return self.resources.image_file(match["sha"], match["ext"]) if match else None

    def read(self, path: Path) -> bytes:
        if path.stat().st_size > self.limits.max_bytes:
            raise images.ImageError(f"larger than {self.limits.max_bytes:,} bytes")
        return path.read_bytes()

    def load(self, source: str) -> _Loaded:
        item = _Loaded(source)
        try:
            item.data = self.fetch(source)
            item.sha256 = hashlib.sha256(item.data).hexdigest()
        except (OSError, images.ImageError) as exc:
            item.error = str(exc) if not isinstance(exc, OSError) else f"{exc.strerror or exc}: {shorten_ref(source)}"
            return item
        if self.known(item.sha256):
            item.data = b""  # stored already; only its hash is needed
            return item
        try:
            item.ext = images.sniff_extension(item.data)
        except (OSError, images.ImageError, ValueError):
            item.ext = "img"  # decoding says what is wrong with it
        if self.gpu_decode:
            try:
                item.header = gpu_images.header(item.data, self.limits)
            except images.ImageError as exc:
                item.error = str(exc)
                return item
            if item.header is not None:
                item.size = item.header.size
                self.store(item)
                return item
        done = self.decode(item.data)
        if isinstance(done, str):
            item.error = done
        else:
            item.size, item.pixels, item.local = done.size, done.pixels, done.local
            self.store(item)
        return item

    def store(self, item: _Loaded) -> None:
        """The image's file, written here rather than by the thread that embeds (a file without a
        row is harmless: the row, and then the vector, follow it)."""
        write_file(self.catalog.image_file(item.sha256, item.ext), item.data)

    def discard(self, item: _Loaded) -> None:
        """The file of an image that turned out unreadable after it was stored."""
        if self.catalog.image_by_sha(item.sha256) is None:
            self.catalog.image_file(item.sha256, item.ext).unlink(missing_ok=True)

    def decode(self, data: bytes) -> Decoded | str:
        """decode_for_model, in a decoder process when there are some."""
        args = (data, self.limits, self.settings.trim_margin, self.settings.rerank_k > 0, self.resources.embedder.card.input)
        return self.decoders.submit(decode_for_model, *args).result() if self.decoders else decode_for_model(*args)

    def local_features(self, grays: list[np.ndarray]) -> list[bytes]:
        """SIFT features of grey photos the GPU prepared, in the decoder processes when there are some."""
        if self.decoders:
            return list(self.decoders.map(_local_features, grays, chunksize=16))
        return [_local_features(gray) for gray in grays]

    def close(self) -> None:
        self.fetcher.close()
        if self.decoders:
            self.decoders.shutdown(cancel_futures=True)


def ingest(
    resources: Resources,
    source: Path | Source,
    *,
    delete_missing: bool | DeleteMissing = False,
    rebuild: bool = False,
    progress: Progress | None = None,
    plan: Plan | None = None,
    outcomes: bool = False,
    wait: float | None = None,
    start_after: int = 0,
    checkpoint: Checkpoint | None = None,
) -> IngestReport:
    """Import a catalog file (its format detected) or a Source's rows, one import at a time
    (`wait`: seconds to wait for another, else TimeoutError). `outcomes`: keep each row's result;
    `start_after`: skip rows up to this number (a resumed job); `checkpoint(row, report)` is told
    after each chunk is written, with its last row. `delete_missing` (True, or DeleteMissing with
    its confirmation): remove the offers the file does not list, when that is safe (DeleteMissing)."""
    deleting = DeleteMissing() if delete_missing is True else (delete_missing or None)
    with resources.catalog.writer(timeout=wait) as turn:
        resources.index.refresh()  # what the import before this one saved
        return _ingest(resources, source, deleting, rebuild, progress, plan, outcomes, start_after, checkpoint, turn)


def _ingest(
    resources: Resources,
    source: Path | Source,
    delete_missing: DeleteMissing | None,
    rebuild: bool,
    progress: Progress | None,
    plan: Plan | None,
    outcomes: bool,
    start_after: int,
    checkpoint: Checkpoint | None,
    turn: Writer,
) -> IngestReport:
    started = time.perf_counter()
    catalog, index = resources.catalog, resources.index
    report = IngestReport(outcomes=[] if outcomes else None)
    scan = _Scan()
    plan = plan or Plan.of(resources)
    if isinstance(source, Path):
        source = open_source(source)
    chunks = _batched(iter_rows(source, report, scan, start_after, ids_before=delete_missing is not None), plan.chunk_offers)

    if rebuild:
        index.reset()
    indexed = set(index.ids().tolist())

    def known(sha: str) -> bool:
        image = catalog.image_by_sha(sha)
        return image is not None and image.id in indexed

    pending_vectors = 0
    reader = _Reader(resources, source, known, plan)
    embedding = _Embedding(resources, reader, plan)
    with contextlib.closing(reader), contextlib.closing(embedding), ThreadPoolExecutor(max_workers=plan.threads) as pool:

        def submit(chunk: list[_Row] | None) -> tuple[list[_Row], list[list[Future[_Loaded]]]] | None:
            if chunk is None:
                return None
            return chunk, [[pool.submit(reader.load, ref) for ref in row.record.image_refs()] for row in chunk]

        upcoming = submit(next(chunks, None))
        while upcoming is not None:
            chunk, futures = upcoming
            loaded = [[f.result() for f in row_futures] for row_futures in futures]
            upcoming = submit(next(chunks, None))  # read the next chunk while this one is embedded
            pending_vectors += _write_chunk(resources, chunk, loaded, indexed, report, embedding)
            if pending_vectors >= CHECKPOINT_VECTORS or checkpoint:
                index.save()  # a checkpoint promises the rows before it: their vectors are durable
                pending_vectors = 0
            if checkpoint:
                checkpoint(chunk[-1].number, report)
            if turn.wanted() and not rebuild:  # a catalog API batch waits: let it in between chunks
                index.save()
                pending_vectors = 0
                turn.pass_turn()
                index.refresh()  # what it wrote, and which vectors exist now
                indexed.clear()
                indexed.update(index.ids().tolist())
            if progress:  # rows read so far: at most one chunk ahead of the rows written
                progress(report.rows, report.images_embedded)
    if progress:
        progress(report.rows, report.images_embedded)

    if delete_missing is not None:
        report.deletion = _delete_missing(resources, scan, report, delete_missing)
    drop_unused_images(resources)
    index.save()
    if index.due():  # a catalog grown past its first IVF base, or a large delta: fold it in now
        report.compacted = index.compact()
    report.seconds = time.perf_counter() - started
    return report


def _deletion_plan(resources: Resources, scan: _Scan, failed: int, how: DeleteMissing) -> tuple[Deletion, list[int]]:
    """The offers the file does not list, a sample of them, and why deleting them is refused
    (any row failed; more than delete_missing_max_share of the catalog, unconfirmed), if it is."""
    catalog = resources.catalog
    ids = catalog.offer_ids()
    gone = sorted(ids - set(scan.seen) - scan.protected)
    deletion = Deletion(missing=len(gone), catalog=len(ids))
    docs = catalog.documents(gone[:DELETION_SAMPLE])
    deletion.sample = [(i, str(json.loads(docs[i][0]).get("title", ""))) for i in gone[:DELETION_SAMPLE] if i in docs]
    share = resources.settings.delete_missing_max_share
    if failed:
        deletion.refused = (
            f"{failed} row(s) of the file were rejected or skipped, so their offers cannot be told apart from missing "
            f"ones: nothing deleted ({len(gone):,} offer(s) are not in the file); fix those rows and run again"
        )
    elif gone and len(gone) > share * len(ids) and not how.confirmed:
        deletion.refused = (
            f"it would delete {len(gone):,} of the catalog's {len(ids):,} offers, more than "
            f"delete_missing_max_share ({share:.0%}): nothing deleted; check the file, then confirm "
            "(--yes; confirm_delete=true in the API)"
        )
    return deletion, gone


def _delete_missing(resources: Resources, scan: _Scan, report: IngestReport, how: DeleteMissing) -> Deletion:
    """Remove the offers the file does not list, when _deletion_plan allows it. Their documents
    are kept in the data dir (deleted/<time>.jsonl) and the deletion is logged."""
    deletion, gone = _deletion_plan(resources, scan, scan.failed + report.skipped + how.earlier_failures, how)
    if deletion.refused or not gone:
        return deletion
    deletion.kept_in = str(_keep_deleted(resources, gone))
    deletion.deleted = report.deleted = resources.catalog.delete_offers(gone)
    resources.index.offers_changed(gone)
    log.warning(
        "--delete-missing deleted %d offer(s) missing from the file (of %d), their documents kept in %s: %s%s",
        deletion.deleted,
        deletion.catalog,
        deletion.kept_in,
        ", ".join(str(i) for i in gone[:100]),
        " ..." if len(gone) > 100 else "",
    )
    return deletion


def dry_run(resources: Resources, source: Path | Source, delete_missing: DeleteMissing | None = None) -> IngestReport:
    """What an import would do, writing nothing and reading no photo: the rows rejected, the
    valid ones new (`added`) or in the catalog already (`updated`: changed or not), and what
    --delete-missing would delete or why it would refuse (photos that fail are not known yet)."""
    report = IngestReport()
    scan = _Scan()
    if isinstance(source, Path):
        source = open_source(source)
    for _ in iter_rows(source, report, scan):
        pass
    present = resources.catalog.existing(list(scan.seen))
    report.added, report.updated = len(scan.seen) - len(present), len(present)
    if delete_missing is not None:
        report.deletion, _ = _deletion_plan(resources, scan, scan.failed, delete_missing)
    return report


def _keep_deleted(resources: Resources, item_ids: list[int]) -> Path:
    """The documents of offers about to be deleted, as JSON Lines in the data dir: what was
    deleted, and a catalog file to import them again."""
    folder = resources.settings.data_dir / "deleted"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S.%fZ')}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, len(item_ids), 1000):
            for _, (doc, _) in sorted(resources.catalog.documents(item_ids[start : start + 1000]).items()):
                fh.write(doc + "\n")
    return path


class _Embedding:
    """Batches of new images -> vectors: pixels prepared on the CPU go to the embedder as they
    are; JPEGs left for the GPU are decoded and prepared there first, and those it cannot decode
    go back to the CPU's decoder."""

    def __init__(self, resources: Resources, reader: _Reader, plan: Plan) -> None:
        self.embedder, self.reader, self.plan = resources.embedder, reader, plan
        # one thread embeds batch after batch while the caller stores the ones done (the GIL is
        # free while the GPU or onnxruntime computes)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self.none = np.zeros((0, self.embedder.dim), np.float32)  # the vectors of no images
        settings = resources.settings
        # JPEGs decoded on the device, and the embedder that takes the pixels prepared there
        self.gpu: tuple[gpu_images.GpuImages, TorchEmbedder] | None = None
        if plan.gpu_decode:
            embedder = resources.embedder
            assert isinstance(embedder, TorchEmbedder)  # only torch embeds pixels prepared on the device
            self.gpu = gpu_images.GpuImages(embedder.device, settings.trim_margin, settings.rerank_k > 0), embedder

    def vectors(self, batch: list[_Loaded]) -> tuple[list[_Loaded], np.ndarray]:
        """The images of the batch that could be prepared, and their vectors; the others get an error."""
        on_gpu, gpu_vectors = self._prepared_on_gpu([item for item in batch if item.pixels is None])
        on_cpu = [item for item in batch if item.pixels is not None]  # with the GPU's failures, decoded again
        pixels = [item.pixels for item in batch if item.pixels is not None]  # theirs, in the same order
        cpu_vectors = self.embedder.embed_pixels(np.stack(pixels)) if on_cpu else self.none
        return on_cpu + on_gpu, np.concatenate([cpu_vectors, gpu_vectors])

    def _prepared_on_gpu(self, items: list[_Loaded]) -> tuple[list[_Loaded], np.ndarray]:
        if not items or self.gpu is None:
            return [], self.none
        gpu, embedder = self.gpu
        headers: list[gpu_images.Header] = []
        for item in items:
            assert item.header is not None  # a fresh image without pixels is a JPEG left for the GPU
            headers.append(item.header)
        prepared = gpu.prepare([i.data for i in items], headers)
        for position in prepared.failed:  # nvJPEG could not: the CPU's decoder tries, and says why
            item = items[position]
            decoded = self.reader.decode(item.data)
            if isinstance(decoded, str):
                item.error = decoded
                self.reader.discard(item)
            else:
                item.pixels, item.local = decoded.pixels, decoded.local
        done = [items[p] for p in prepared.done]
        if prepared.gray is not None:
            for item, local in zip(done, self.reader.local_features(prepared.gray)):
                item.local = local
        return done, embedder.embed_pixels(prepared.pixels)  # none done: no rows, no vectors

    def each(self, batches: list[list[_Loaded]]) -> Iterator[tuple[list[_Loaded], np.ndarray]]:
        """vectors() of each batch, in order, computed ahead in the embedding thread."""
        return self.worker.map(self.vectors, batches)

    def close(self) -> None:
        self.worker.shutdown(cancel_futures=True)


def _write_chunk(
    resources: Resources,
    chunk: list[_Row],
    loaded: list[list[_Loaded]],
    indexed: set[int],
    report: IngestReport,
    embedding: _Embedding,
) -> int:
    """Embed the chunk's new images once each, store them, then upsert the chunk's offers."""
    fresh = _fresh_images(resources, loaded, indexed)
    stored, failed = _embed_and_store(resources, list(fresh.values()), indexed, report, embedding)
    shown = {item.sha256 for items in loaded for item in items if item.sha256 and item.sha256 not in stored}
    stored.update(resources.catalog.images_by_sha(list(shown)))  # stored before this chunk
    upserts = _changed_offers(resources, chunk, loaded, fresh, stored, failed, report)
    resources.catalog.upsert_offers(upserts)  # one transaction for the chunk
    resources.index.offers_changed([record.item_id for record, _ in upserts])  # a store that filters by itself learns the facts
    return len(fresh) - len(failed)


def _fresh_images(resources: Resources, loaded: list[list[_Loaded]], indexed: set[int]) -> dict[str, _Loaded]:
    """The chunk's images to embed, once each: new ones, less those an earlier chunk of this run
    embedded (a relisted twin's photo)."""
    fresh: dict[str, _Loaded] = {}
    for items in loaded:
        for item in items:
            if item.fresh and item.sha256 not in fresh:
                fresh[item.sha256] = item
    for sha, known in resources.catalog.images_by_sha(list(fresh)).items():
        if known.id in indexed:
            del fresh[sha]
    return fresh


def _embed_and_store(
    resources: Resources, fresh: list[_Loaded], indexed: set[int], report: IngestReport, embedding: _Embedding
) -> tuple[dict[str, StoredImage], dict[str, str]]:
    """Batch by batch: embed, store the image rows and local features, then their vectors. Returns
    the stored images by hash, and the images the GPU and then the CPU could not decode."""
    catalog, index = resources.catalog, resources.index
    stored: dict[str, StoredImage] = {}
    failed: dict[str, str] = {}
    size = embedding.plan.batch_size
    batches = [fresh[start : start + size] for start in range(0, len(fresh), size)]
    for ready, (batch, vectors) in zip(batches, embedding.each(batches)):
        failed.update((item.sha256, item.error) for item in ready if item.error)
        added = catalog.add_images([NewImage(i.sha256, i.ext, *i.size, i.data) for i in batch])  # files: stored by the reader
        stored.update(added)
        image_ids = [added[item.sha256].id for item in batch]
        local = {added[item.sha256].id: item.local for item in batch if item.local is not None}
        if local:
            catalog.put_local_features(local)
        stale = [i for i in image_ids if i in indexed]  # --rebuild, or a vector of an interrupted run
        index.remove(np.asarray(stale, dtype=np.int64))
        index.add(np.asarray(image_ids, dtype=np.int64), vectors)
        indexed.update(image_ids)
        report.images_embedded += len(batch)
        report.images_gpu_decoded += sum(1 for item in batch if item.pixels is None)
    return stored, failed


def _changed_offers(
    resources: Resources,
    chunk: list[_Row],
    loaded: list[list[_Loaded]],
    fresh: dict[str, _Loaded],
    stored: dict[str, StoredImage],
    failed: dict[str, str],
    report: IngestReport,
) -> list[tuple[OfferRecord, list[tuple[str, StoredImage]]]]:
    """The chunk's offers that are new or differ from the catalog, with their readable images;
    every image that failed and every offer left without one goes to the report. A row repeated
    within the chunk: the later one is written, the earlier is reported as replaced."""
    first_use: set[str] = set()
    upserts: dict[int, tuple[int, OfferRecord, list[tuple[str, StoredImage]], str]] = {}
    for row, items in zip(chunk, loaded):
        item_id = row.record.item_id
        good: list[tuple[str, StoredImage]] = []
        errors: list[str] = []
        for item in items:
            error = item.error or failed.get(item.sha256, "")
            if error:
                report.images_failed += 1
                errors.append(f"image {shorten_ref(item.source)}: {error}")
                report.problems.append(Problem(row.number, item_id, errors[-1]))
                continue
            image = stored.get(item.sha256)
            if image is None:  # pragma: no cover - an image known at read time was deleted meanwhile
                report.problems.append(Problem(row.number, item_id, f"image {shorten_ref(item.source)} vanished"))
                continue
            if item.sha256 in fresh and item.sha256 not in first_use:
                first_use.add(item.sha256)
            else:
                report.images_reused += 1
            good.append((item.source, image))
        if not good:
            report.skipped += 1
            reason = "skipped: none of its images could be read"
            report.problems.append(Problem(row.number, item_id, reason))
            report.outcome(row.number, item_id, "rejected", f"{reason} ({'; '.join(errors)})", skipped=True)
            continue
        record = _stored_refs(row.record, good)
        good = [(_stored_ref(source, image), image) for source, image in good]
        earlier = upserts.pop(item_id, None)
        if earlier is not None:  # the same item_id earlier in this chunk: this row replaces it
            setattr(report, earlier[3], getattr(report, earlier[3]) - 1)
            report.rejected += 1
            report.outcome(
                earlier[0], item_id, "rejected", f"not imported: row {row.number} has the same item_id and is imported instead"
            )
        before = resources.catalog.offer_state(item_id)
        if before == (record.model_dump_json(), [image.id for _, image in good]):
            report.unchanged += 1
            report.outcome(row.number, item_id, "unchanged")
            continue
        result = "added" if before is None else "updated"
        setattr(report, result, getattr(report, result) + 1)
        upserts[item_id] = (row.number, record, good, result)
    for number, record, _, result in upserts.values():
        report.outcome(number, record.item_id, result)
    return [(record, good) for _, record, good, _ in upserts.values()]


def shorten_ref(source: str) -> str:
    """An image reference for a message: a data: URI by its start only, a long one cut short."""
    return clip(source) if not source.startswith("data:") else clip(source[: source.find(",") + 1], 40) + "..."


def _stored_ref(source: str, image: StoredImage) -> str:
    """The reference kept for an image: as given, but a data: URI becomes the stored photo's path."""
    return f"/img/{image.name}" if source.startswith("data:") else source


def _on_server(source: str) -> bool:
    """An inline photo, or a path on the server's disk: references the catalog API cannot take back."""
    return not source.startswith(("http://", "https://", "/img/"))


def _stored_refs(record: OfferRecord, good: list[tuple[str, StoredImage]]) -> OfferRecord:
    """The record with its inline (data:) photos and its paths on the server's disk replaced by
    their stored `/img/` paths (inline ones that could not be read left out): the offer's document stays small, and sending it back unchanged
    over the catalog API finds the same photos."""
    names = {source: f"/img/{image.name}" for source, image in good if _on_server(source)}
    # an inline photo that could not be read is dropped: its megabytes would go out with every answer
    unread = {ref for ref in record.image_refs() if ref.startswith("data:") and ref not in names}
    if not names and not unread:
        return record
    img = record.img if record.img not in unread else good[0][0]
    return record.model_copy(
        update={
            "img": names.get(img, img),
            "images": [names.get(ref, ref) for ref in record.images if ref not in unread],
        }
    )


def drop_unused_images(resources: Resources) -> None:
    """Images no offer shows any more: vectors first (saved), then rows and files."""
    unused = resources.catalog.unused_images()
    if not unused:
        return
    resources.index.remove(np.asarray([i.id for i in unused], dtype=np.int64))
    resources.index.save()
    resources.catalog.delete_images(unused)
