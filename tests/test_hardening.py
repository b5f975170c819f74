"""Limits an attacker meets before the work they would cost (issue 30), against a real
`snapsource serve`: bodies capped while they stream, credentials before a body, nested JSON, the
header deadline, masked tokens in its log, and the same security headers on every answer.
Every loop is bounded; the server's RSS is read from /proc and must stay near where it started."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import SHARED
from snapsource.api.app import create_app
from snapsource.tools import loopback

ADMIN = "hardening-admin-key"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
PHOTO = SHARED / "catalogs" / "luma" / "images"
DEEP = b"[" * 100_000


@pytest.fixture(scope="module")
def server(resources, tmp_path_factory) -> Iterator[tuple[str, int, Path]]:
    """The test catalog behind `serve` (one worker process), with a short header deadline."""
    work = tmp_path_factory.mktemp("hardening")
    env = {"SNAPSOURCE_ADMIN_KEY": ADMIN, "SNAPSOURCE_HEADER_TIMEOUT": "1", "SNAPSOURCE_BODY_TIMEOUT": "2"}
    with open(work / "serve.log", "wb") as log, loopback.serve_workers(resources.settings.data_dir, 1, env, log) as (url, proc):
        yield url, proc.pid, work / "serve.log"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raw(url: str, head: bytes, body_chunks: Iterator[bytes] = iter(()), timeout: float = 10) -> bytes:
    """Send a request by hand (a declared length it never sends, a body it streams) and read
    what the server answers until it closes or `timeout`; a server that closes mid-body is fine."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:  # the server answered and closed while we were still sending
            pass
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
                if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                    break
        except OSError:
            pass
        return answer


def zeros(megabytes: int) -> Iterator[bytes]:
    """A chunked body of zeros, a megabyte a chunk."""
    chunk = b"\0" * 1_000_000
    for _ in range(megabytes):
        yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
    yield b"0\r\n\r\n"


def post_head(path: str, extra: str = "", length: int | None = None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}{framing}\r\n\r\n".encode()


def test_a_huge_body_is_refused_before_it_is_read(server, token):
    url, pid, _ = server
    before = rss_mb(pid)
    started = time.monotonic()
    cases = [
        # a declared 400 MB: answered at once, nothing read
        (post_head("/admin/tokens", length=400_000_000), iter(()), b" 413 ", b"max_body_bytes"),
        (post_head(f"/1688/tools/image/convert_url?apiToken={token}", length=400_000_000), iter(()), b" 413 ", b"262,144"),
        # streamed without a length and without credentials: refused for the key or token, not read
        (post_head("/admin/tokens"), zeros(50), b" 401 ", b"admin key"),
        (post_head("/1688/tools/image/convert_url?apiToken=wrong"), zeros(50), b" 401 ", b"apiToken"),
        (post_head("/catalog/offers"), zeros(50), b" 401 ", b"catalog"),
        # with credentials: cut off at the limit
        (post_head("/admin/tokens", f"authorization: Bearer {ADMIN}\r\n"), zeros(50), b" 413 ", b"at most 262,144 bytes"),
        (post_head(f"/1688/tools/image/convert_url?apiToken={token}"), zeros(50), b" 413 ", b"at most 262,144 bytes"),
    ]
    for head, body, status, words in cases:
        answer = raw(url, head, body)
        assert status in answer.split(b"\r\n")[0] and words in answer, (head, answer[:400])
    seconds = time.monotonic() - started
    grown = rss_mb(pid) - before
    print(f"7 oversized bodies (up to 400 MB declared, 50 MB streamed): {seconds:.1f} s, RSS {before:.0f} -> +{grown:.0f} MB")
    assert grown < 60, f"RSS grew {grown:.0f} MB"
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_no_route_parses_a_body_before_its_credentials(resources):
    """FastAPI reads and parses a body parameter before any dependency runs: no route has one."""
    app = create_app(resources=resources)
    parsed = [route.path for route in app.routes if getattr(route, "dependant", None) and route.dependant.body_params]
    assert parsed == []


def test_a_slow_body_is_answered_408(server):
    url, _, _ = server

    def trickle() -> Iterator[bytes]:
        yield b'5\r\n{"nam\r\n'
        time.sleep(3.5)  # body_timeout is 2 s here
        yield b"0\r\n\r\n"

    answer = raw(url, post_head("/admin/tokens", f"authorization: Bearer {ADMIN}\r\n"), trickle())
    assert b" 408 " in answer.split(b"\r\n")[0] and b"body_timeout" in answer


@pytest.mark.parametrize(
    "path, auth",
    [
        ("/catalog/offers", "admin"),
        ("/catalog/offers/delete", "admin"),
        ("/catalog/imports", "admin"),
        ("/admin/tokens", "admin"),
        ("/1688/tools/image/upload", "token"),
        ("/1688/tools/image/convert_url", "token"),
        ("/1688/search/image", "token"),
    ],
)
def test_deeply_nested_json_is_a_422(server, token, path, auth):
    url, _, _ = server
    params = {"apiToken": token} if auth == "token" else {}
    for body in (DEEP, b'{"a":' * 40_000):
        answer = httpx.post(f"{url}{path}", params=params, headers=HEADERS, content=body, timeout=30)
        assert answer.status_code == 422 and answer.json()["code"] == 422, answer.text[:300]
        assert "Error" not in answer.json()["msg"]


def test_a_nested_import_mapping_leaves_no_file(server, resources):
    url, _, _ = server
    imports = resources.settings.data_dir / "imports"
    before = set(imports.iterdir()) if imports.exists() else set()
    answer = httpx.post(
        f"{url}/catalog/imports",
        headers=HEADERS,
        files={"file": ("c.jsonl", b'{"item_id": 1}\n')},
        data={"mapping": DEEP.decode()},
    )
    assert answer.status_code == 422
    assert (set(imports.iterdir()) if imports.exists() else set()) == before


def test_slow_headers_are_cut_off_and_searches_go_on(server, token):
    """50 connections that send half a request line and stop, and 50 that send nothing: the
    server closes each after header_timeout (1 s here) while it answers searches at once."""
    url, pid, _ = server
    host, port = url.removeprefix("http://").split(":")
    before = rss_mb(pid)
    slow = []
    for i in range(100):
        sock = socket.create_connection((host, int(port)), timeout=10)
        if i % 2:
            sock.sendall(b"GET /healthz HT")
        slow.append(sock)
    started = time.monotonic()
    photo = sorted(PHOTO.glob("*.jpg"))[0].read_bytes()
    search = httpx.post(f"{url}/1688/search/image", params={"apiToken": token}, files={"file": ("p.jpg", photo)}, timeout=30)
    assert search.status_code == 200 and search.json()["data"]["items"]
    closed = 0
    for sock in slow:
        try:
            data = sock.recv(1024)
            closed += data == b"" or b" 408 " in data
        except OSError:
            closed += 1
        sock.close()
    seconds = time.monotonic() - started
    print(f"100 slow connections: all closed within {seconds:.1f} s; RSS +{rss_mb(pid) - before:.0f} MB")
    assert closed == 100 and seconds < 8


def test_oversized_headers_are_refused(server):
    url, _, _ = server
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * 100_000 + b"\r\n\r\n"
    answer = raw(url, head)
    assert b" 431 " in answer.split(b"\r\n")[0]


@pytest.mark.parametrize(
    "query",
    [
        "apiToken={t}",
        "api%54oken={t}",
        "api%2554oken={t}",
        "APITOKEN={t}",
        "img_url=http%3A%2F%2Fx.example%2Fa.jpg%3FapiToken%3D{t}",
        "img_url=/img/{t}.jpg",
    ],
)
def test_the_log_never_shows_a_token(server, token, query):
    url, _, log = server
    httpx.get(f"{url}/1688/search/image?{query.format(t=token)}&page=1")
    time.sleep(0.3)
    text = log.read_text(errors="replace")
    assert "/1688/search/image" in text and token not in text and token[3:] not in text


@pytest.mark.parametrize(
    "path", ["/", "/console", "/static/index.html", "/static/console.html", "/docs", "/healthz", "/nowhere", "/img/x.jpg"]
)
def test_every_answer_has_the_security_headers(server, path):
    url, _, _ = server
    answer = httpx.get(f"{url}{path}")
    headers = answer.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    if path.endswith(".html") or path in ("/", "/console"):
        assert "default-src 'self'" in headers["content-security-policy"]
    if path == "/docs":
        assert "script-src 'self' 'sha256-" in headers["content-security-policy"]


def test_databases_and_the_token_secret_are_the_owners_alone(tmp_path):
    """Item 13: a catalog.db created mode 644 let every local user read the tokens' hashes and the offers."""
    import stat

    from snapsource.accounts.tokens import _pepper
    from snapsource.store.sqlite import Database

    database = Database(tmp_path / "data" / "catalog.db")
    with database.write() as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    _pepper(tmp_path / "data")
    made = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert {"catalog.db", "catalog.db-wal", "secret.key"} <= set(made)
    for name in made:
        assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600, name


def big_png(seed: int) -> bytes:
    """A 39.7 MP PNG of about 120 KB (flat colour compresses), a byte appended so no cache knows it."""
    import io

    from PIL import Image

    image = Image.new("RGB", (7300, 5440), (200, 60, 30))
    image.paste((30, 60, 200), (2000, 1500, 5000, 4000))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue() + bytes([seed])


def test_concurrent_huge_decodes_keep_to_the_pixel_budget(server, token):
    """Item 3: 8 concurrent 39.7 MP PNGs took 3.8 GB and kept 3.2 GB; decodes now share a
    50 MP budget and return their memory, and the server answers searches after them."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    url, pid, _ = server
    pngs = [big_png(i) for i in range(8)]
    before = peak = rss_mb(pid)
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, rss_mb(pid))

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()

    def upload(png: bytes) -> int:
        answer = httpx.post(f"{url}/1688/search/image", params={"apiToken": token}, files={"file": ("big.png", png)}, timeout=120)
        return answer.status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(upload, pngs))
    finally:
        done.set()
        watcher.join()
    seconds = time.monotonic() - started
    after = rss_mb(pid)
    photo = sorted(PHOTO.glob("*.jpg"))[3].read_bytes()
    search = httpx.post(f"{url}/1688/search/image", params={"apiToken": token}, files={"file": ("p.jpg", photo)}, timeout=30)
    print(f"8 concurrent 39.7 MP PNGs: {statuses}, {seconds:.1f} s, RSS {before:.0f} / peak {peak:.0f} / after {after:.0f} MB")
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1
    assert peak - before < 1200 and after - before < 400, (before, peak, after)
    assert search.status_code == 200 and search.json()["data"]["items"]
