"""Fetching image URLs that users give us, without letting them reach what they should not.

A URL from an API user may point anywhere: at the cloud's metadata service, at an admin page on
the intranet, at a body that never ends. Every hop (the URL and each redirect, at most three) is
checked before connecting: http or https only; the host resolved once and every address judged
(loopback, private, link-local, multicast, reserved and their IPv6 forms are refused unless a
network of `fetch_allow` holds them); the connection then goes to that checked address, with the
original name in the Host header and in TLS SNI, so a second DNS answer cannot redirect it (DNS
rebinding). Bodies are read as a stream against a byte cap and a deadline.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urljoin

import httpx

from snapsource.config import Settings
from snapsource.vision.images import ImageError

MAX_REDIRECTS = 3
USER_AGENT = "snapsource (image search; +https://github.com/snapsource)"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_KINDS = (
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("unspecified", "is_unspecified"),
    ("reserved", "is_reserved"),
    ("private", "is_private"),
)


class FetchError(ImageError):
    """An image URL that could not or may not be fetched (422, naming the reason)."""


class Unreachable(FetchError):
    """The URL's host did not answer: no such name, no address, or no connection in time. An
    import stops asking a host after a run of these (ingest/pipeline.py)."""


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


def parse_networks(text: str) -> tuple[Network, ...]:
    """`fetch_allow`: comma-separated networks such as "10.20.0.0/16, 127.0.0.1"."""
    networks = []
    for part in text.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"fetch_allow: {part.strip()!r} is not a network such as 10.20.0.0/16") from None
    return tuple(networks)


def address_problem(ip: IPAddress, allow: tuple[Network, ...] = ()) -> str | None:
    """Why an address may not be fetched from ("address 10.0.0.5 is private"), or None."""
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            problem = address_problem(embedded, allow)
            return f"address {ip} ({problem})" if problem else None
    for kind, attribute in _KINDS:
        if getattr(ip, attribute):
            return f"address {ip} is {kind}"
    if not ip.is_global:
        return f"address {ip} is not a public address"
    return None


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    allow: tuple[Network, ...] = ()
    guard: bool = True  # False: any address (catalog imports, whose URLs are the operator's own)
    timeout: float = 15.0
    connect_timeout: float = 5.0
    max_bytes: int = 10_000_000

    @classmethod
    def of(cls, settings: Settings, guard: bool = True) -> FetchPolicy:
        return cls(
            allow=parse_networks(settings.fetch_allow),
            guard=guard,
            timeout=settings.fetch_timeout,
            connect_timeout=settings.fetch_connect_timeout,
            max_bytes=settings.max_image_bytes,
        )


def shorten(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."


class Fetcher:
    """GET image URLs by the rules above. Thread-safe; one per process is enough."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        # trust_env=False: a proxy from the environment would connect on our behalf, unchecked.
        self.http = httpx.Client(trust_env=False, follow_redirects=False)
        self._dns = ThreadPoolExecutor(max_workers=4, thread_name_prefix="snapsource-dns")

    def fetch(self, url: str) -> bytes:
        """The body of `url`, following up to MAX_REDIRECTS redirects; FetchError says why not
        (the message leaves the URL itself to the caller)."""
        deadline = time.monotonic() + self.policy.timeout
        for hop in range(MAX_REDIRECTS + 1):
            try:
                return self._get(url, deadline)
            except _Redirect as redirect:
                url = redirect.location
            except FetchError as exc:
                if hop:
                    raise FetchError(f"redirected to {shorten(url)}: {exc.msg}") from None
                raise
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        self.http.close()
        self._dns.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------------------
    def _get(self, url: str, deadline: float) -> bytes:
        target, host = self._checked(url, deadline)
        try:
            with self.http.stream(
                "GET",
                target,
                headers={
                    "Host": host,
                    "User-Agent": USER_AGENT,
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                },
                extensions={"sni_hostname": httpx.URL(url).host},
                timeout=self._timeout(deadline),
            ) as response:
                if response.is_redirect:
                    raise _Redirect(urljoin(url, response.headers.get("Location", "")))
                if response.status_code != 200:
                    raise FetchError(f"the server answered HTTP {response.status_code}")
                return self._read(response, deadline)
        except httpx.ConnectTimeout:
            raise Unreachable(f"no connection within {self.policy.connect_timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise Unreachable(f"the connection failed: {exc or type(exc).__name__}") from None
        except httpx.TimeoutException:
            raise FetchError(f"the download took longer than {self.policy.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"the download failed: {exc or type(exc).__name__}") from None

    def _checked(self, url: str, deadline: float) -> tuple[httpx.URL, str]:
        """The URL to connect to (host replaced by a checked address) and the Host header."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError(f"not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"only http and https URLs are fetched, not {parsed.scheme or 'a URL without scheme'}")
        if not parsed.host:
            raise FetchError("the URL has no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address = self._address(parsed.host, port, deadline)
        host_header = parsed.raw_host.decode("ascii")
        if ":" in host_header:
            host_header = f"[{host_header}]"
        if parsed.port:
            host_header += f":{parsed.port}"
        return parsed.copy_with(host=str(address)), host_header

    def _address(self, host: str, port: int, deadline: float) -> IPAddress:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            candidates = [literal]
        else:
            candidates = self._resolve(host, port, deadline)
        problems = []
        for ip in sorted(candidates, key=lambda ip: ip.version):  # IPv4 first: not every host routes IPv6
            problem = address_problem(ip, self.policy.allow) if self.policy.guard else None
            if problem is None:
                return ip
            problems.append(problem)
        named = "" if literal is not None else f" ({host} resolves to it)"
        raise FetchError(f"{problems[0]}{named}; only public addresses are fetched (the fetch_allow setting can allow a network)")

    def _resolve(self, host: str, port: int, deadline: float) -> list[IPAddress]:
        wait = max(0.01, min(self.policy.connect_timeout, deadline - time.monotonic()))
        future = self._dns.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=wait)
        except FutureTimeout:
            raise Unreachable(f"resolving {host} took longer than {wait:.3g} s") from None
        except (socket.gaierror, UnicodeError):
            raise Unreachable(f"cannot resolve {host}: no such host name, or DNS did not answer (check the URL)") from None
        found = []
        for info in infos:
            address = info[4][0]
            assert isinstance(address, str)  # an AF_INET or AF_INET6 sockaddr: (host, port, ...)
            ip = ipaddress.ip_address(address.split("%")[0])
            if ip not in found:
                found.append(ip)
        if not found:
            raise Unreachable(f"cannot resolve {host}: no address")
        return found

    def _timeout(self, deadline: float) -> httpx.Timeout:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"the download took longer than {self.policy.timeout:g} s")
        # A read may wait at most 5 s: the deadline is checked between reads.
        return httpx.Timeout(min(left, 5.0), connect=min(self.policy.connect_timeout, left))

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        cap = self.policy.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(f"image too large: {int(declared):,} bytes > {cap:,} bytes")
        chunks, total = [], 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > cap:
                raise FetchError(f"image too large: more than {cap:,} bytes")
            if time.monotonic() > deadline:
                raise FetchError(f"the download took longer than {self.policy.timeout:g} s")
            chunks.append(chunk)
        return b"".join(chunks)
