"""Kept analyses and local features are npz blobs, read by many request threads at once."""

from __future__ import annotations

import gc
import io
import sys
import threading

import numpy as np
import pytest

from snapsource.arrays import pack, unpack


class _Cycle:
    """Garbage with a finalizer: the collector runs Python code (and may switch threads) wherever
    an allocation triggers it, as a server's sockets and generators do."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        sum(range(100))


def _read_in_threads(read, data: bytes, threads: int = 8, rounds: int = 1500) -> list[str]:
    errors: list[str] = []

    def work() -> None:
        for _ in range(rounds):
            _Cycle()
            try:
                arrays = read(data)
                assert arrays["descriptors"].shape == (5, 128)
            except Exception as exc:  # noqa: BLE001 - collected, then asserted on
                errors.append(repr(exc))
                return

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 5, 5)
    try:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    return errors


BLOB = pack(points=np.zeros((5, 2), np.float16), descriptors=np.zeros((5, 128), np.uint8), size=np.arange(2))


def test_round_trip_keeps_names_dtypes_and_values():
    arrays = {"points": np.arange(6, dtype=np.float16).reshape(3, 2), "n": np.int64(7), "v": np.ones(4, np.float32)}
    back = unpack(pack(**arrays))
    assert set(back) == set(arrays)
    for name, value in arrays.items():
        assert back[name].dtype == np.asarray(value).dtype
        np.testing.assert_array_equal(back[name], value)


def test_pickles_are_neither_written_nor_read():
    with pytest.raises(ValueError):
        pack(objects=np.array([{"a": 1}], dtype=object))
    buf = io.BytesIO()
    np.savez(buf, objects=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        unpack(buf.getvalue())


def test_many_threads_read_at_once_without_errors():
    # numpy alone, np.load in threads, fails here on CPython 3.11 with "SystemError: AST constructor
    # recursion depth mismatch" (what a serve worker answered HTTP 500 for under load)
    assert _read_in_threads(unpack, BLOB) == []
