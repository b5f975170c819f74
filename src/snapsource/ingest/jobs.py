"""Import jobs: a catalog file sent to `POST /catalog/imports` (uploaded, or fetched from a URL) is
imported in the background by one server, with its progress in the catalog database.

A job survives its server: each chunk written is a checkpoint (rows done, counts, first problems)
saved with the vectors it promises, and a server beats every few seconds while it runs a job. A
job whose server stopped beating (killed, restarted) is claimed again by any server (the same one
after a restart) and resumes after its last checkpoint; rows are upserts, so the chunk that was in
flight is simply written again. The file itself is kept in the data dir until the job ends.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snapsource.errors import ConcurrencyLimit
from snapsource.ingest import archive
from snapsource.ingest.formats import FormatError, for_api, format_of, load_mapping, open_source
from snapsource.ingest.formats.mapping import read_mapping_text
from snapsource.ingest.pipeline import DeleteMissing, IngestReport, ingest
from snapsource.ingest.rows import Source, clip
from snapsource.resources import Resources
from snapsource.store.jobs import JobRow, JobTable, QueueLimits
from snapsource.vision.fetch import Fetcher, FetchError, FetchPolicy, shorten

log = logging.getLogger("snapsource.jobs")

BEAT_SECONDS = 5.0
STALE_SECONDS = 30.0  # a running job not heard of for this long lost its server
IDLE_SECONDS = 1.0  # how often an idle server looks for a queued job
MAX_PROBLEMS = 1000  # rejected rows kept with a job (the count is exact beyond them)
COUNTS = (
    "rows",
    "added",
    "updated",
    "unchanged",
    "rejected",
    "skipped",
    "left_out",
    "deleted",
    "images_embedded",
    "images_reused",
    "images_failed",
)
IMPORTED = ("added", "updated", "unchanged")  # rows whose offer is in the catalog after the job


@dataclasses.dataclass(frozen=True)
class Job:
    """A job as the API shows it."""

    row: JobRow

    def wire(self) -> dict[str, Any]:
        r = self.row
        # rows of the catalog (offers, or rows that could not be read), the unit of rows_total; the
        # table's rows_done is the file's line to resume after, which is not (a product of a shop
        # export spans several lines)
        done, total = int(r.counts.get("rows", 0)), r.rows_total
        return {
            "id": r.id,
            "status": r.status,
            "source": r.source,
            "format": r.format,
            "rows_done": done,
            "rows_total": total,
            "progress": round(min(1.0, done / total), 4) if total else (1.0 if r.status == "done" else 0.0),
            "counts": {name: int(r.counts.get(name, 0)) for name in COUNTS},
            # a job that read every row and kept none is done, yet a failure for its user
            "imported": sum(int(r.counts.get(name, 0)) for name in IMPORTED),
            "problems": sorted(r.problems, key=lambda p: p.get("row") or 0),
            "delete_missing": bool(r.options.get("delete_missing")),
            "deletion": r.deletion,
            "error": r.error,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        }


def _folder(resources: Resources, job_id: str) -> Path:
    return resources.settings.data_dir / "imports" / job_id


def _safe_name(name: str) -> str:
    """A file name of the client's, made harmless: no folders, no odd characters."""
    base = Path(name.replace("\\", "/")).name
    kept = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".")
    return kept[:100] or "catalog"


def check_mapping(mapping: Any, where: str = "mapping") -> dict[str, Any]:
    """A mapping is checked when the job is asked for, not when it runs: the mapping, else
    FormatError saying why (not a table of settings, a setting that is wrong, a value JSON cannot
    keep with the job)."""
    if not isinstance(mapping, dict):
        raise FormatError(f"{where} must be a JSON object or TOML, as docs/catalog.md shows them")
    load_mapping(mapping)
    try:
        json.dumps(mapping)  # kept with the job as JSON
    except (TypeError, ValueError):
        raise FormatError(f"{where} values are text, numbers, true or false: quote dates and times") from None
    return mapping


SAMPLED_ROWS = 100  # rows read at submit to tell a file that cannot import from one that can


def check_rows(source: Source) -> None:
    """FormatError when the file has no row of offers at all (empty, or a header only), or when,
    sent without its photos, its first rows name photos by file path only: each row would be
    skipped for it, so the upload is refused with what to do."""
    rows = list(itertools.islice(source.rows(), SAMPLED_ROWS))
    if not rows:
        raise FormatError(f"{source.name} has no offers: it is empty, or only a header; nothing to import")
    if source.base_dir is not None:
        return
    refs = [ref for row in rows if isinstance(row.data, dict) for ref in _image_refs(row.data)]
    paths = [ref for ref in refs if not ref.startswith(("http://", "https://", "data:", "/img/"))]
    if refs and len(paths) == len(refs):
        raise FormatError(
            f"{source.name} names its photos by file path ({clip(paths[0], 60)}), and a file sent alone carries no "
            "photos: put it and its photos in one zip and send the zip, or name the photos by http(s) URL"
        )


def _image_refs(data: dict[str, Any]) -> list[str]:
    listed = data.get("images")
    refs = [data.get("img"), *(listed if isinstance(listed, list) else [])]
    return [ref for ref in refs if isinstance(ref, str) and ref]


ADMIN = "admin"  # a job sent with the admin key; a token's jobs are "token:<id>"


@dataclasses.dataclass(frozen=True)
class Options:
    """What a job does besides upserting: delete the offers its file does not list (docs/catalog.md);
    and who sent it, for the queue's limits."""

    delete_missing: bool = False
    confirm_delete: bool = False  # above delete_missing_max_share of the catalog
    by: str = ADMIN

    def stored(self) -> dict[str, Any]:
        kept: dict[str, Any] = {"by": self.by}
        if self.delete_missing:
            kept.update(delete_missing=True, confirm_delete=self.confirm_delete)
        return kept


RETRY_SECONDS = 30.0  # what a refusal by the queue's limits tells a client to wait
RECEIVING_SECONDS = 3600.0  # an upload not heard of for this long was abandoned (its server is elsewhere)


def _limits(resources: Resources) -> QueueLimits:
    settings = resources.settings
    return QueueLimits(settings.catalog_imports_per_token, settings.catalog_imports_waiting_max_bytes, ADMIN)


def _receiver() -> str:
    """This process, as the owner of the uploads it receives (the runner's owners have the same form)."""
    return f"{socket.gethostname()}:{os.getpid()}:receiving"


def reserve(resources: Resources, by: str) -> str:
    """A new job's id, its place in the queue taken before its upload is read: ConcurrencyLimit
    (503, retry later) when `by` has catalog_imports_per_token jobs queued or running already. The
    check and the reservation are one transaction, so concurrent uploads, to one server or to
    several on the catalog, cannot all pass it."""
    job_id = "imp_" + secrets.token_hex(8)
    refused = JobTable(resources.catalog).reserve(job_id, by, _receiver(), time.time(), _limits(resources))
    if refused:
        raise ConcurrencyLimit(refused, retry_after=RETRY_SECONDS)
    return job_id


def cancel(resources: Resources, job_id: str) -> None:
    """An upload that will not become a job (refused, or its body could not be read)."""
    JobTable(resources.catalog).drop(job_id)
    shutil.rmtree(_folder(resources, job_id), ignore_errors=True)


def _hold(resources: Resources, job_id: str, held: int) -> None:
    """The bytes the upload now holds in the data dir, refused (ConcurrencyLimit) before they are
    written when the queue would hold more than catalog_imports_waiting_max_bytes."""
    refused = JobTable(resources.catalog).grow(job_id, held, time.time(), _limits(resources))
    if refused:
        raise ConcurrencyLimit(refused, retry_after=RETRY_SECONDS)


def submit_file(
    resources: Resources,
    job_id: str,
    name: str,
    data: bytes,
    format: str | None,
    mapping: dict | None,
    options: Options = Options(),
) -> Job:
    """Queue an uploaded catalog file, or a zip of one and its photos (unpacked here, so that a bad
    zip is refused now), under the reservation `reserve` made: written and fsynced before the job
    is queued. On any failure the reservation and the files go."""
    folder = _folder(resources, job_id)
    path = folder / _safe_name(name)
    stored = options.stored()
    try:  # a file that is no catalog at all is refused now, not when the job runs
        _hold(resources, job_id, len(data))
        folder.mkdir(parents=True)
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        stored["bytes"] = len(data)
        if archive.is_zip(path):

            def room(unpacked: int) -> None:
                _hold(resources, job_id, len(data) + unpacked)
                stored["bytes"] = unpacked  # the zip goes once unpacked

            zipped, path = path, _unpack(resources, path, room)
            zipped.unlink()
            stored["photos"] = True
            mapping = mapping if mapping is not None else zipped_mapping(path)
        source = open_source(path, format, mapping, trusted=False, base_dir=path.parent if stored.get("photos") else None)
        check_rows(source)
        table = JobTable(resources.catalog)
        table.queue(job_id, name, str(path), format_of(source) or format, json.dumps(mapping) if mapping else None, stored)
    except BaseException:
        cancel(resources, job_id)
        raise
    return Job(_must(table.get(job_id)))


def zipped_mapping(catalog: Path) -> dict | None:
    """The mapping zipped beside an unpacked catalog file (archive.mapping_beside), checked; None
    when the zip holds none. FormatError says what is wrong with it."""
    beside = archive.mapping_beside(catalog)
    if beside is None:
        return None
    where = f"mapping {beside.name} (in the zip)"
    return check_mapping(read_mapping_text(beside.read_text(encoding="utf-8-sig", errors="replace"), where), where)


def _unpack(resources: Resources, archived: Path, room: Callable[[int], None] | None = None) -> Path:
    """A job's zip unpacked beside it (a name _safe_name never gives); its catalog file. A job's
    photo paths are then read from that file's folder (the job option `photos`). `room` is told
    the unpacked size before a byte is written, and may refuse it."""
    return archive.unpack(archived, archived.parent / ".unpacked", resources.settings.catalog_import_max_bytes, room)


def submit_url(resources: Resources, url: str, format: str | None, mapping: dict | None, options: Options = Options()) -> Job:
    """Queue a catalog file at a URL: the job fetches it (guarded like a user's image URL) when it
    runs, so it holds no disk until then (jobs run one at a time)."""
    job_id = reserve(resources, options.by)
    path = _folder(resources, job_id) / _safe_name(url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "catalog")
    table = JobTable(resources.catalog)
    table.queue(job_id, url, str(path), format, json.dumps(mapping) if mapping else None, options.stored())
    return Job(_must(table.get(job_id)))


def _must(row: JobRow | None) -> JobRow:
    assert row is not None  # written just before
    return row


def get(resources: Resources, job_id: str) -> Job | None:
    row = JobTable(resources.catalog).get(job_id)
    return Job(row) if row else None


def recent(resources: Resources, limit: int = 50) -> list[Job]:
    return [Job(r) for r in JobTable(resources.catalog).recent(limit)]


class Runner:
    """Runs queued jobs one at a time in a thread of this process."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.table = JobTable(resources.catalog)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._swept = 0.0

    def start(self) -> Runner:
        self._thread = threading.Thread(target=self._loop, name="snapsource-imports", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """A job was queued here: look now rather than at the next idle tick."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_one()
            except Exception:  # noqa: BLE001 - a broken job must not end the loop
                log.exception("import job runner")
                ran = False
            if not ran:
                self._wake.wait(IDLE_SECONDS)
                self._wake.clear()

    def run_one(self) -> bool:
        """Claim and run one job; False when none was waiting."""
        self._release_orphans()
        if time.monotonic() - self._swept > 60:
            self._swept = time.monotonic()
            self.sweep()
        now = time.time()
        job = self.table.claim(self.owner, now, now - STALE_SECONDS)
        if job is None:
            return False
        beating = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job.id, beating), daemon=True)
        beat.start()
        try:
            self._run(job)
        except _Stopped:  # the server stops: the job waits, from its last checkpoint, for the next one
            self.table.release(job.id, self.owner)
        except Exception as exc:  # noqa: BLE001 - the job fails with the reason; the server goes on
            log.exception("import job %s failed", job.id)
            self.table.finish(job.id, self.owner, "failed", f"{type(exc).__name__}: {exc}")
            shutil.rmtree(_folder(self.resources, job.id), ignore_errors=True)
        finally:
            beating.set()
            beat.join()
        return True

    def _release_orphans(self) -> None:
        """Jobs of a process of this machine that is gone (killed, restarted) are free after two
        missed beats, rather than after STALE_SECONDS (a live owner elsewhere with this host name
        and pid would still be beating)."""
        for job_id, owner in self.table.owners(time.time() - 2 * BEAT_SECONDS):
            if _gone_here(owner):
                self.table.release(job_id, owner)

    def sweep(self) -> None:
        """Uploads whose server died while receiving them (killed mid-unpack, say) are dropped with
        their files; so are folders in data/imports that no job names, left by a crash (an hour
        old at least: an upload may be between its reservation and its first byte)."""
        now = time.time()
        for job_id, owner, heartbeat in self.table.receiving():
            if _gone_here(owner) or heartbeat < now - RECEIVING_SECONDS:
                log.info("dropping upload %s: its server stopped receiving it", job_id)
                cancel(self.resources, job_id)
        folder = self.resources.settings.data_dir / "imports"
        if not folder.is_dir():
            return
        known = self.table.ids()
        for entry in folder.iterdir():
            if entry.name not in known and entry.stat().st_mtime < now - RECEIVING_SECONDS:
                log.info("removing %s: no import job names it", entry)
                shutil.rmtree(entry, ignore_errors=True)

    def _beat(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(BEAT_SECONDS):
            if not self.table.beat(job_id, self.owner, time.time()):
                return

    def _run(self, job: JobRow) -> None:
        resources = self.resources
        path = Path(job.path)
        if not path.exists():
            if not job.source.startswith(("http://", "https://")):
                self.table.finish(job.id, self.owner, "failed", "the uploaded file is gone from the data dir")
                return
            try:
                self._download(job.source, path)
            except FetchError as exc:
                self.table.finish(job.id, self.owner, "failed", f"could not fetch {shorten(job.source)}: {exc.msg}")
                return
        mapping = json.loads(job.mapping) if job.mapping else None
        photos = bool(job.options.get("photos"))
        try:
            if archive.is_zip(path):  # fetched from a URL (an upload's zip was unpacked when it came)
                path, photos = _unpack(resources, path), True
                mapping = mapping if mapping is not None else zipped_mapping(path)
            source = open_source(path, job.format, mapping, trusted=False, base_dir=path.parent if photos else None)
        except ValueError as exc:
            self.table.finish(job.id, self.owner, "failed", for_api(str(exc)))
            shutil.rmtree(_folder(resources, job.id), ignore_errors=True)
            return
        if job.format is None and (found := format_of(source)):
            self.table.set_format(job.id, found)
        total = source.count()
        tally = _Tally(job)

        def checkpoint(row: int, report: IngestReport) -> None:
            tally.take(report, row)
            self.table.progress(job.id, self.owner, row, total, tally.counts, tally.problems)
            if self._stop.is_set():
                raise _Stopped

        deleting: DeleteMissing | bool = False
        if job.options.get("delete_missing"):
            earlier = int(job.counts.get("rejected", 0)) + int(job.counts.get("skipped", 0))  # before a restart
            deleting = DeleteMissing(confirmed=bool(job.options.get("confirm_delete")), earlier_failures=earlier)
        report = ingest(
            resources, source, outcomes=True, start_after=job.rows_done, checkpoint=checkpoint, delete_missing=deleting
        )
        tally.take(report, None)
        if report.deletion is not None:
            self.table.set_deletion(job.id, self.owner, report.deletion.wire())
        self.table.progress(job.id, self.owner, max(job.rows_done, tally.last_row), total, tally.counts, tally.problems)
        self.table.finish(job.id, self.owner, "done")
        shutil.rmtree(_folder(resources, job.id), ignore_errors=True)
        log.info("import job %s done: %s", job.id, tally.counts)

    def _download(self, url: str, path: Path) -> None:
        settings = self.resources.settings
        policy = dataclasses.replace(FetchPolicy.of(settings), max_bytes=settings.catalog_import_max_bytes, timeout=600.0)
        fetcher = Fetcher(policy)
        try:
            data = fetcher.fetch(url)
        finally:
            fetcher.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)


def _gone_here(owner: str) -> bool:
    """An owner ("host:pid:...") that is another process of this machine, no longer running."""
    name, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return name == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class _Stopped(Exception):
    """The server is stopping: leave the job at its last checkpoint."""


class _Tally:
    """A job's counts across runs: each checkpoint adds the rows it covers, once."""

    def __init__(self, job: JobRow) -> None:
        self.counts = {name: int(job.counts.get(name, 0)) for name in COUNTS}
        self.problems = list(job.problems)
        self.last_row = job.rows_done
        self._written = {"images_embedded": 0, "images_reused": 0, "images_failed": 0, "deleted": 0}  # this run's, counted so far

    def take(self, report: IngestReport, up_to: int | None) -> None:
        """Count the outcomes of rows up to `up_to` (all when None) not counted yet."""
        assert report.outcomes is not None
        keep = []
        for outcome in sorted(report.outcomes, key=lambda o: o.row):  # problems in row order
            if up_to is not None and outcome.row > up_to:
                keep.append(outcome)
                continue
            self.counts["rows"] += 1
            key = "skipped" if outcome.skipped else outcome.result
            self.counts[key] += 1
            if outcome.result == "rejected" and len(self.problems) < MAX_PROBLEMS:
                self.problems.append(
                    {"row": outcome.row, "item_id": outcome.item_id, "reason": outcome.reason, "skipped": outcome.skipped}
                )
            self.last_row = max(self.last_row, outcome.row)
        report.outcomes[:] = keep
        for name in self._written:  # written with the chunks before this checkpoint
            value = getattr(report, name)
            self.counts[name] += value - self._written[name]
            self._written[name] = value
