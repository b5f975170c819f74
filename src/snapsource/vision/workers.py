"""The threads that run a search's pixel work beside the model.

OpenCV (object boxes, SIFT, RANSAC) and Pillow's resampling release the GIL, and a search spends
most of its time in them: run in these threads, they keep both cores busy while onnxruntime or the
request's own thread computes (docs/performance.md, "A search with a new photo"). Tasks here never
wait on other tasks here, so a full pool only queues.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# two per core: a search's object boxes (the longest task) must not hold back its framings
_pool = ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1), thread_name_prefix="pixels")


def submit(fn: Callable[..., R], /, *args: Any) -> Future[R]:
    return _pool.submit(fn, *args)


def map(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:  # noqa: A001 - the executor's word
    """fn over items in the pool, results in order; one item runs in the caller's thread."""
    items = list(items)
    if len(items) <= 1:
        return (fn(item) for item in items)
    return _pool.map(fn, items)
