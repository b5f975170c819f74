"""Named numpy arrays as bytes (numpy's npz), read safely from many threads at once.

numpy reads each array's header with `ast.literal_eval`, and CPython 3.11's AST constructor keeps
its recursion depth per interpreter, not per thread: two threads reading at once can fail with
"SystemError: AST constructor recursion depth mismatch" (python/cpython#106905 and its kin). A
serve worker's threads did, reading kept analyses under load. Reads take one lock: microseconds.
"""

from __future__ import annotations

import io
import threading

import numpy as np

_READING = threading.Lock()


def pack(**arrays: np.ndarray) -> bytes:
    """Arrays of numbers (no pickles) as one npz blob."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def unpack(data: bytes) -> dict[str, np.ndarray]:
    """Every array of an npz blob, read under the lock (the headers are parsed as they are read)."""
    with _READING, np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
