"""Both cores for a new photo's pixel work.

A new photo's object boxes, SIFT keypoints and six framings' resizing are each single-threaded
(Pillow, OpenCV and numpy release the GIL while they work), and so is RANSAC on each re-ranked
candidate. Done one after the other they left the second core idle for most of a search; here they
run side by side, and beside the model's calls, whose threads sleep between calls instead of
spinning (vision/embed.py), so the two do not fight for the cores (docs/performance.md).

One small pool per process, shared by every request: under load the requests' pixel work queues
for the same cores instead of multiplying threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_threads = 0  # the setting: 0 is one per core
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def use(threads: int) -> None:
    """How many threads do pixel work (the pixel_threads setting: 0 one per core, 1 the caller's thread)."""
    global _threads
    with _lock:
        _threads = threads


def _executor() -> ThreadPoolExecutor | None:
    global _pool, _pool_size
    with _lock:
        size = _threads or os.cpu_count() or 1
        if size <= 1:
            return None
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(max_workers=size, thread_name_prefix="snapsource-pixels"), size
        return _pool


def submit(fn: Callable[..., R], *args: Any) -> Future[R]:
    """Start fn(*args) on the pool; with one thread it runs now, and the future holds its outcome."""
    pool = _executor()
    if pool is not None:
        return pool.submit(fn, *args)
    done: Future[R] = Future()
    try:
        done.set_result(fn(*args))
    except Exception as exc:  # raised by .result(), as from the pool
        done.set_exception(exc)
    return done


def each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """fn of every item, in order, on the pool's threads."""
    pool = _executor()
    if pool is None:
        return [fn(item) for item in items]
    return list(pool.map(fn, items))
