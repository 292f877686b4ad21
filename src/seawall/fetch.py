"""The SSRF-safe fetcher: http(s) only, public addresses unless allowed, redirects re-checked, size and time caps.

The host is resolved here and every address checked before anything connects; the request then
goes to the checked address (with the original Host header and TLS server name), so a DNS answer
that changes between check and connect (rebinding) cannot redirect it. Each redirect hop is checked
the same way.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from seawall.config import Settings

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """A fetch that was refused or failed; the message says why."""


class FetchRefused(FetchError):
    """Refused before connecting: scheme, address or redirect not allowed."""


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    status: int
    content_type: str
    body: bytes
    address: str  # the IP address the body came from
    redirects: tuple[str, ...]


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host!r}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class SafeFetcher:
    def __init__(
        self,
        *,
        allow_networks: Sequence[str] = (),
        max_bytes: int = 100 * 1024 * 1024,
        timeout: float = 20.0,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
        user_agent: str = "Seawall",
    ) -> None:
        self.allow: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.resolve = resolver or _system_resolver
        self.user_agent = user_agent

    @classmethod
    def from_settings(cls, settings: Settings) -> SafeFetcher:
        return cls(
            allow_networks=settings.fetch_allow_networks,
            max_bytes=settings.fetch_max_bytes,
            timeout=settings.fetch_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
        )

    def check_address(self, text: str) -> IPAddress:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if _is_public(address) or any(address in net for net in self.allow):
            return address
        raise FetchRefused(f"refused: {address} is not a public address")

    def _target(self, url: str) -> tuple[str, str, IPAddress]:
        """The checked (scheme, host, address) of a URL, or FetchRefused."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchRefused(f"refused: only http and https URLs are fetched, not {scheme or 'no scheme'!r}")
        host = parts.hostname
        if not host:
            raise FetchRefused("refused: the URL has no host")
        port = parts.port or (443 if scheme == "https" else 80)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        candidates = [str(literal)] if literal is not None else self.resolve(host, port)
        if not candidates:
            raise FetchError(f"cannot resolve {host!r}")
        # Every address the name has must be allowed: otherwise a second lookup could pick the bad one.
        checked = [self.check_address(a) for a in candidates]
        return scheme, host, checked[0]

    def fetch(self, url: str) -> Fetched:
        deadline = time.monotonic() + self.timeout
        redirects: list[str] = []
        current = url
        with httpx.Client(follow_redirects=False, trust_env=False, verify=True) as client:
            while True:
                scheme, host, address = self._target(current)
                parts = urlsplit(current)
                ip_host = f"[{address}]" if address.version == 6 else str(address)
                netloc = ip_host + (f":{parts.port}" if parts.port else "")
                direct = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchError(f"timed out after {self.timeout:g} s")
                host_header = host if not parts.port else f"{host}:{parts.port}"
                request = client.build_request(
                    "GET",
                    direct,
                    headers={"host": host_header, "user-agent": self.user_agent, "accept": "*/*"},
                    extensions={"sni_hostname": host, "timeout": httpx.Timeout(remaining).as_dict()},
                )
                try:
                    response = client.send(request, stream=True)
                except httpx.TimeoutException:
                    raise FetchError(f"timed out after {self.timeout:g} s") from None
                except httpx.HTTPError as exc:
                    raise FetchError(f"cannot fetch {current}: {exc}") from None
                try:
                    if response.is_redirect:
                        if len(redirects) >= self.max_redirects:
                            raise FetchRefused(f"refused: more than {self.max_redirects} redirects")
                        current = urljoin(current, response.headers.get("location", ""))
                        redirects.append(current)
                        continue
                    body = self._read_body(response, deadline, current)
                finally:
                    response.close()
                return Fetched(
                    url=current,
                    status=response.status_code,
                    content_type=response.headers.get("content-type", ""),
                    body=body,
                    address=str(address),
                    redirects=tuple(redirects),
                )

    def _read_body(self, response: httpx.Response, deadline: float, url: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchRefused(f"refused: {declared} bytes is over the {self.max_bytes}-byte limit")
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > self.max_bytes:
                    raise FetchRefused(f"refused: the body is over the {self.max_bytes}-byte limit")
                if time.monotonic() > deadline:
                    raise FetchError(f"timed out after {self.timeout:g} s")
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot fetch {url}: {exc}") from None
        return bytes(body)
