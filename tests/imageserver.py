"""A real HTTP server on loopback that serves good and bad images the way the web does.

Images are generated here (nothing binary is committed) or read from ../shared. The server
counts requests per path, so tests can tell whether a page 2 fetched the image again.
"""

from __future__ import annotations

import collections
import http.server
import io
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (400 MP by default)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\x00" * (1 + width // 8) * 16)  # a few rows; the header is what counts
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def cmyk_jpeg(photo: bytes) -> bytes:
    return encode(Image.open(io.BytesIO(photo)).convert("CMYK"), "JPEG", quality=90)


def one_pixel_gif() -> bytes:
    return encode(Image.new("P", (1, 1)), "GIF")


class ImageServer:
    """Routes by path; `hits[path]` counts requests."""

    def __init__(self, photo: bytes, png_photo: bytes) -> None:
        self.photo = photo
        self.hits: collections.Counter[str] = collections.Counter()
        self.hosts: list[str] = []
        self.routes: dict[str, Route] = {
            "/photo.jpg": self._bytes(photo, "image/jpeg"),
            "/photo.png": self._bytes(png_photo, "image/png"),
            "/photo-as-octets": self._bytes(photo, "application/octet-stream"),
            "/cmyk.jpg": self._bytes(cmyk_jpeg(photo), "image/jpeg"),
            "/truncated.jpg": self._bytes(photo[: len(photo) // 3], "image/jpeg"),
            "/page.jpg": self._bytes(b"<!doctype html><html><body>Not found</body></html>", "image/jpeg"),
            "/drawing.svg": self._bytes(
                b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><rect width="200" height="200"/></svg>',
                "image/svg+xml",
            ),
            "/pixel.gif": self._bytes(one_pixel_gif(), "image/gif"),
            "/bomb.png": self._bytes(png_bomb(), "image/png"),
            "/missing.jpg": self._status(404),
            "/huge-declared.jpg": self._declared(50_000_000),
            "/endless.jpg": self._endless,
            "/slow.jpg": self._slow,
            "/stall.jpg": self._stall,
            "/to-private": self._redirect("http://10.0.0.5/photo.jpg"),
            "/to-metadata": self._redirect("http://169.254.169.254/latest/meta-data/"),
            "/to-ipv6-loopback": self._redirect("http://[::1]/photo.jpg"),
            "/to-ftp": self._redirect("ftp://127.0.0.1/photo.jpg"),
            "/hop3": self._redirect("/hop2"),
            "/hop2": self._redirect("/hop1"),
            "/hop1": self._redirect("/photo.jpg"),
            "/hop4": self._redirect("/hop3"),
        }

    # routes -------------------------------------------------------------------------------------
    @staticmethod
    def _bytes(body: bytes, kind: str) -> Route:
        def route(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", kind)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        return route

    @staticmethod
    def _status(code: int) -> Route:
        def route(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(code)
            h.send_header("Content-Length", "0")
            h.end_headers()

        return route

    @staticmethod
    def _redirect(location: str) -> Route:
        def route(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(302)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()

        return route

    @staticmethod
    def _declared(size: int) -> Route:
        def route(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(size))
            h.end_headers()
            h.wfile.write(b"\xff\xd8\xff" + b"\0" * 65_536)  # then nothing: the client must not wait for it

        return route

    def _endless(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """A body with no length that would never end (bounded here at 200 MB)."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()
        block = self.photo[:65_536].ljust(65_536, b"\0")
        for _ in range(3_200):
            h.wfile.write(block)

    @staticmethod
    def _slow(h: http.server.BaseHTTPRequestHandler) -> None:
        """A byte every 0.2 s: each read is quick, the whole never arrives (bounded at 60 s)."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(300):
            h.wfile.write(b"\0")
            h.wfile.flush()
            time.sleep(0.2)

    @staticmethod
    def _stall(h: http.server.BaseHTTPRequestHandler) -> None:
        """Headers, then silence (bounded at 30 s)."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        h.wfile.flush()
        time.sleep(30)

    # server -------------------------------------------------------------------------------------
    @contextmanager
    def running(self) -> Iterator[str]:
        routes, hits, hosts = self.routes, self.hits, self.hosts

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                hits[path] += 1
                hosts.append(self.headers.get("Host", ""))
                route = routes.get(path, ImageServer._status(404))
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # clients hanging up on slow or endless bodies is what the tests do

        httpd = Server(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            httpd.server_close()


def grocery_photo(index: int = 0) -> Path:
    from conftest import GROCERY

    return sorted((GROCERY / "queries").glob("*.jpg"))[index]
