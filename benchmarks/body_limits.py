"""Issue 30, items 1 and 6, measured: what oversized bodies and slow headers cost a real `serve`.

Sends 400 MB of zero bytes as `application/json` (chunked, no credentials) to POST /admin/tokens and
to convert_url, reads the server's peak RSS (VmHWM) and the seconds until it answered, then holds
`--slow` connections that send half a request line and times how soon the server closes them,
while a search runs. `PYTHONPATH=<an older tree>/src` measures that tree's server the same way.

    python benchmarks/body_limits.py --data data [--megabytes 400] [--slow 300]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import httpx

from snapsource.tools import loopback


def status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def flood(url: str, path: str, megabytes: int) -> tuple[float, str]:
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"%x\r\n%s\r\n" % (1_000_000, b"\0" * 1_000_000)
        try:
            for _ in range(megabytes):
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        try:
            answer = sock.recv(4096)
        except OSError:
            answer = b""
    return time.monotonic() - started, answer.split(b"\r\n")[0].decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--megabytes", type=int, default=400)
    parser.add_argument("--slow", type=int, default=300)
    args = parser.parse_args()
    env = {"SNAPSOURCE_ADMIN_KEY": "bench-admin-key"}
    report: dict[str, object] = {"code": os.environ.get("PYTHONPATH", "this tree")}
    with loopback.serve_workers(args.data, 1, env) as (url, proc):
        report["rss_start_mb"] = round(status(proc.pid, "VmRSS"))
        for name, path in (("admin_tokens", "/admin/tokens"), ("convert_url", "/1688/tools/image/convert_url?apiToken=x")):
            seconds, line = flood(url, path, args.megabytes)
            report[name] = {"seconds": round(seconds, 2), "answer": line, "peak_rss_mb": round(status(proc.pid, "VmHWM"))}
        host, port = url.removeprefix("http://").split(":")
        socks = []
        for _ in range(args.slow):
            sock = socket.create_connection((host, int(port)), timeout=60)
            sock.sendall(b"GET /healthz HT")
            socks.append(sock)
        started = time.monotonic()
        health = httpx.get(url + "/healthz", timeout=30)
        report["healthz_during_slow_ms"] = round((time.monotonic() - started) * 1000)
        held = 0
        for sock in socks:
            sock.settimeout(max(0.1, 30 - (time.monotonic() - started)))
            try:
                sock.recv(1)  # b"" or a 408: closed by the server
            except TimeoutError:
                held += 1
            except OSError:
                pass
            sock.close()
        report["slow_connections"] = {"opened": args.slow, "still_open_after_30s": held, "healthz": health.status_code}
        report["rss_end_mb"] = round(status(proc.pid, "VmRSS"))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
