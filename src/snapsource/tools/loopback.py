"""The real server on a free 127.0.0.1 port, in a background thread: for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import uvicorn


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread cannot take signals
        pass


@contextlib.contextmanager
def serve(app, timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` with uvicorn until the block ends; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def free_port() -> int:
    """A loopback port free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_workers(
    data_dir,
    workers: int = 2,
    env: dict[str, str] | None = None,
    log=None,
    timeout: float = 60.0,
    prefix: tuple[str, ...] = (),
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`snapsource serve --workers N` as a subprocess on a free loopback port (or `port`, from
    free_port(), when its settings must name it), ready (`/readyz`) when the block starts and
    stopped with SIGTERM when it ends; yields its URL and process. `prefix` runs it through
    another command first (one that ends by exec-ing its arguments)."""
    import os
    import sys

    import httpx

    port = port or free_port()
    server = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "snapsource",
            "serve",
            "--data",
            str(data_dir),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env={**os.environ, **(env or {})},
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield url, server
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(30)
