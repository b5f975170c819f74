"""Does a million-offer catalog serve within 3 GB? `snapsource serve --workers 2` on a data dir
built by `snapsource bench`, inside a memory cgroup with that limit, under a bounded loopback load.

The limit covers everything the server's processes touch: their own memory and the page cache of
the files they read (the SQ8 lists, the float32 rows, the offers database). The index files are
dropped from the page cache first, so their pages are charged to the cgroup as the server reads
them; when the limit is reached the kernel evicts the group's coldest file pages (rows read for
earlier searches), which searches then read from disk again. Needs root and a writable cgroup
memory controller (v1 or v2); prints the throughput, latency, errors and the group's peak usage.

    python benchmarks/memory_limit.py [--data build/bench-data] [--limit 3G] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from snapsource.tools import bench
from snapsource.tools.loopback import serve_workers


def _cgroup(limit: int) -> tuple[Path, str]:
    """A child of this process's memory cgroup with `limit` bytes; its procs file, peak file name."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = next((line.split(":", 2)[2] for line in lines if ":memory:" in line), None)
    if v1 is not None and Path("/sys/fs/cgroup/memory").is_dir():
        group = Path("/sys/fs/cgroup/memory") / v1.lstrip("/") / f"snapsource-bench-{os.getpid()}"
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
        return group, "memory.max_usage_in_bytes"
    v2 = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
    group = Path("/sys/fs/cgroup") / v2.lstrip("/") / f"snapsource-bench-{os.getpid()}"
    group.mkdir()
    (group / "memory.max").write_text(str(limit))
    return group, "memory.peak"


def _drop_from_page_cache(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("build/bench-data"))
    parser.add_argument("--limit", default="3G", help="bytes, or with a K, M or G suffix")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--output", type=Path, default=Path("build/memory-limit.json"))
    parser.add_argument("--no-rescore", action="store_true", help="serve with index_rescore off (SQ8 scores only)")
    parser.add_argument("--lock", action="store_true", help="serve with index_lock on (the lists pinned in memory)")
    args = parser.parse_args()
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    limit = int(float(args.limit[:-1]) * units[args.limit[-1].upper()]) if args.limit[-1].upper() in units else int(args.limit)

    token, shas = bench.token_and_photos(args.data)
    index = args.data / "index"
    _drop_from_page_cache([*index.glob("base-*.ivf"), index / "vectors.f32", args.data / "catalog.db"])
    group, peak = _cgroup(limit)
    enter = ("sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs"))
    env = {
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="snapsource-mem-"),
        "SNAPSOURCE_COMPACT_INTERVAL": "0",
        "SNAPSOURCE_INDEX_RESCORE": "false" if args.no_rescore else "true",
        "SNAPSOURCE_INDEX_LOCK": "true" if args.lock else "false",
    }
    try:
        with open(args.data / "serve-limited.log", "wb") as log, serve_workers(args.data, 2, env, log, 600, enter) as (url, _):
            fresh = bench.loads(url, token, shas, args.seconds, args.concurrency)
            repeated = fresh.pop("repeated")
            peak_bytes = int((group / peak).read_text())
            stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
            usage = {k: int(stat[k]) // 2**20 for k in ("rss", "cache", "mapped_file", "anon", "file") if k in stat}
            failures = (group / "memory.failcnt").read_text().strip() if (group / "memory.failcnt").exists() else "-"
    finally:
        for _ in range(50):  # the processes have left once the server stopped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.2)
    report = {
        "rescore": not args.no_rescore,
        "lock": args.lock,
        "limit_bytes": limit,
        "peak_bytes": peak_bytes,
        "usage_mb": usage,
        "limit_hits": failures,
        "fresh": fresh,
        "repeated": repeated,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    for name, r in (("photos not searched before", fresh), (f"{bench.POPULAR} photos again and again", repeated)):
        print(
            f"{name}: {r['requests_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['errors']} errors {r['statuses']}"
        )
    print(
        f"memory cgroup limit {limit / 2**30:.2f} GiB, peak usage {peak_bytes / 2**30:.2f} GiB (limit reached {failures} times); "
        f"at the end (MB): {usage}"
    )


if __name__ == "__main__":
    main()
