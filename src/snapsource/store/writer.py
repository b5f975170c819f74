"""The catalog's writer lock: one writer at a time, across threads, processes and servers, taken
in turns so that a long import never shuts out a catalog API batch for long.

Why one writer: the faiss files are written by one process at a time (each save replaces the
state that says which vectors exist), and two imports of the same new photo would race for its
row. The lock is a lock file in the data dir (servers that share a data dir share it) and, on
PostgreSQL, an advisory lock held by one connection (servers that share only the database).

Turns: a writer that waits touches `write.waiting`; the writer that holds the lock checks it
between chunks (`wanted`) and, when someone waits, saves, lets go for a moment and queues again
(`pass_turn`), so an API batch waits about one chunk of a running import, not the whole import.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

WRITER_LOCK = 0x77726974  # PostgreSQL advisory lock of imports: "writ"
POLL = 0.02  # seconds between attempts of a waiting writer
WANTED = 0.5  # a waiting marker touched this recently means someone waits
GAP = 0.15  # how long a writer that passes its turn stays away: several polls of a waiter


class LockingDatabase(Protocol):
    def writer_lock(self, key: int, wait: Callable[[Callable[[], bool]], None]) -> contextlib.AbstractContextManager[None]: ...


class Writer:
    """`with Writer(...)`: the lock held; `timeout` seconds to get it, else TimeoutError."""

    def __init__(self, data_dir: Path, database: LockingDatabase, timeout: float | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.database = database
        self.timeout = timeout
        self.marker = self.data_dir / "write.waiting"
        self._file: IO[bytes] | None = None
        self._held = contextlib.ExitStack()
        self._touched = 0.0

    def __enter__(self) -> Writer:
        self._acquire(None if self.timeout is None else time.monotonic() + self.timeout)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release()

    def wanted(self) -> bool:
        """Another writer waits for the lock."""
        try:
            return time.time() - self.marker.stat().st_mtime < WANTED
        except FileNotFoundError:
            return False

    def pass_turn(self) -> None:
        """Let a waiting writer in, then queue for the lock again (the caller saved first)."""
        self._release()
        time.sleep(GAP)
        self._acquire(None)

    def _acquire(self, deadline: float | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.data_dir / "write.lock", "a+b")  # noqa: SIM115 - held until _release
        try:
            self._wait(lambda: _try_flock(fh), deadline)
            self._file = fh
            self._held.enter_context(self.database.writer_lock(WRITER_LOCK, lambda attempt: self._wait(attempt, deadline)))
        except BaseException:
            self._release()
            fh.close()
            raise

    def _release(self) -> None:
        try:
            self._held.close()
        finally:
            if self._file is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
                self._file.close()
                self._file = None

    def _wait(self, attempt: Callable[[], bool], deadline: float | None) -> None:
        while not attempt():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("another import is writing the catalog")
            now = time.time()
            if now - self._touched > WANTED / 3:  # say that someone waits
                self.marker.touch()
                os.utime(self.marker, (now, now))
                self._touched = now
            time.sleep(POLL)


def _try_flock(fh: IO[bytes]) -> bool:
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
