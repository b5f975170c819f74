"""Safe fetching of users' image URLs, against a real HTTP server on loopback."""

from __future__ import annotations

import ipaddress
import socket
import time

import httpx
import pytest

from imageserver import ImageServer, encode, grocery_photo
from snapsource.vision.fetch import Fetcher, FetchError, FetchPolicy, address_problem, parse_networks

LOOPBACK = parse_networks("127.0.0.0/8")


@pytest.fixture(scope="module")
def images():
    photo = grocery_photo(0).read_bytes()
    import io

    from PIL import Image

    server = ImageServer(photo, encode(Image.open(io.BytesIO(photo)), "PNG"))
    with server.running() as url:
        yield server, url


@pytest.fixture()
def fetcher():
    """fetcher(**policy): a Fetcher allowed loopback with a 2 s deadline; closed after the test."""
    made: list[Fetcher] = []

    def make(**policy) -> Fetcher:
        made.append(Fetcher(FetchPolicy(**{"allow": LOOPBACK, "timeout": 2.0, "connect_timeout": 1.0, **policy})))
        return made[-1]

    yield make
    for f in made:
        f.close()


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("::ffff:10.0.0.5", "private"),
        ("64:ff9b::a00:5", "private"),
        ("2002:a00:5::1", "private"),
    ],
)
def test_non_public_addresses_are_refused(address, kind):
    ip = ipaddress.ip_address(address)
    problem = address_problem(ip)
    assert problem is not None and kind in problem and str(ip) in problem


@pytest.mark.parametrize("address", ["8.8.8.8", "203.0.114.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert address_problem(ipaddress.ip_address(address)) is None


def test_allow_list_opens_only_its_networks():
    allow = parse_networks("10.20.0.0/16, 127.0.0.1")
    assert address_problem(ipaddress.ip_address("10.20.3.4"), allow) is None
    assert address_problem(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert "private" in address_problem(ipaddress.ip_address("10.21.0.1"), allow)
    assert "loopback" in address_problem(ipaddress.ip_address("127.0.0.2"), allow)
    with pytest.raises(ValueError, match="fetch_allow"):
        parse_networks("intranet")


def test_loopback_is_refused_without_the_allow_list(images, fetcher):
    server, url = images
    before = server.hits["/photo.jpg"]
    with pytest.raises(FetchError, match="address 127.0.0.1 is loopback"):
        fetcher(allow=()).fetch(url + "/photo.jpg")
    with pytest.raises(FetchError, match=r"address 127.0.0.1 is loopback \(localhost resolves to it\)"):
        fetcher(allow=()).fetch(url.replace("127.0.0.1", "localhost") + "/photo.jpg")
    assert server.hits["/photo.jpg"] == before  # refused before connecting


def test_allowed_loopback_is_fetched_whole(images, fetcher):
    server, url = images
    assert fetcher().fetch(url + "/photo.jpg") == server.photo


def test_name_resolved_once_and_connection_goes_to_the_checked_address(images, monkeypatch, fetcher):
    """No DNS rebinding: the name is resolved by us once; httpx never resolves it again."""
    server, url = images
    port = int(url.rsplit(":", 1)[1])
    calls = []
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        calls.append(host)
        if host == "images.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert fetcher().fetch(f"http://images.example:{port}/photo.jpg") == server.photo
    # the only name looked up is ours; the socket layer then sees the checked address literally
    assert calls == ["images.example", "127.0.0.1"]
    assert server.hosts[-1] == f"images.example:{port}"


def test_https_connects_to_the_address_with_the_name_in_sni_and_host(monkeypatch):
    """The TLS name (SNI, certificate check) stays the host name while the socket goes to the address."""
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(url=str(request.url), host=request.headers["Host"], sni=request.extensions.get("sni_hostname"))
        return httpx.Response(200, content=b"image bytes")

    monkeypatch.setattr(
        socket, "getaddrinfo", lambda host, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
    )
    f = Fetcher(FetchPolicy())
    f.http.close()
    f.http = httpx.Client(transport=httpx.MockTransport(handler))
    assert f.fetch("https://cdn.example.com/a.jpg") == b"image bytes"
    f.close()
    assert seen == {"url": "https://93.184.215.14/a.jpg", "host": "cdn.example.com", "sni": "cdn.example.com"}


@pytest.mark.parametrize(
    "path, needle",
    [
        ("/to-private", "redirected to http://10.0.0.5/photo.jpg: address 10.0.0.5 is private"),
        ("/to-metadata", "address 169.254.169.254 is link-local"),
        ("/to-ipv6-loopback", "address ::1 is loopback"),
        ("/to-ftp", "only http and https"),
        ("/hop4", "more than 3 redirects"),
        ("/missing.jpg", "HTTP 404"),
        ("/huge-declared.jpg", "image too large: 50,000,000 bytes > 10,000,000 bytes"),
        ("/endless.jpg", "image too large: more than 10,000,000 bytes"),
        ("/slow.jpg", "longer than 2 s"),
        ("/stall.jpg", "longer than 2 s"),
    ],
)
def test_refusals(images, path, needle, fetcher):
    _, url = images
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetcher().fetch(url + path)
    assert needle in caught.value.msg
    assert time.monotonic() - started < 8  # the deadline holds, whatever the server does


def test_three_redirects_are_followed(images, fetcher):
    server, url = images
    assert fetcher().fetch(url + "/hop3") == server.photo


def test_unresolvable_host_and_bad_urls(fetcher):
    with pytest.raises(FetchError, match="cannot resolve|longer than"):
        fetcher().fetch("http://no-such-host.invalid/a.jpg")
    with pytest.raises(FetchError, match="only http and https"):
        fetcher().fetch("file:///etc/passwd")
    with pytest.raises(FetchError, match="no host"):
        fetcher().fetch("http:///a.jpg")
