"""Every outgoing request Seawall makes (URL matching, HMA hashing, exchanges, webhooks) goes through here.

The rules (:class:`AddressRules`): http(s) only, and only to public addresses unless an address is in
``SEAWALL_FETCH_ALLOW_NETWORKS``. :class:`SafeTransport` resolves the host itself, checks every
address it has, and connects to the checked address (with the original Host header and TLS server
name), so a DNS answer that changes between check and connect (rebinding) cannot redirect it.
:func:`safe_client` puts that transport in an httpx client that ignores proxy settings from the
environment; each redirect hop is a new request through the transport, so it is checked the same way.
:class:`SafeFetcher` adds size and time caps for fetching one URL's body.

IPv6 forms that carry an IPv4 address: the IPv4-mapped (``::ffff:a.b.c.d``), IPv4-translated
(``::ffff:0:a.b.c.d``) and NAT64 well-known-prefix (``64:ff9b::a.b.c.d``) forms are how an IPv6 host
legitimately reaches IPv4, so they are judged by the IPv4 address they carry. The deprecated or
ambiguous ones are refused outright: IPv4-compatible (``::a.b.c.d``), 6to4 (``2002::/16``), Teredo
(``2001::/32``) and local-use NAT64 (``64:ff9b:1::/48``, whose embedding depends on the local setup).
A refusal names an address only when the caller wrote it literally; a host name that resolves to a
non-public address is refused without saying which address (DNS answers are not echoed).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from seawall.config import Settings
from seawall.redact import redact_url

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The response extension where :class:`SafeTransport` records the address it connected to.
PEER_ADDRESS = "seawall.peer_address"
#: The response extension where :class:`SafeTransport` records the TLS facts of an https connection.
PEER_TLS = "seawall.peer_tls"


class FetchError(Exception):
    """A fetch that was refused or failed; the message says why."""


class FetchRefused(FetchError):
    """Refused before connecting: scheme, address or redirect not allowed."""


class FetchUnreachable(FetchError):
    """Nobody answers: the name does not resolve, or the connection was refused or has no route."""


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    status: int
    content_type: str
    body: bytes
    address: str  # the IP address the body came from
    redirects: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()  # the final response's, as received
    tls: dict[str, Any] | None = None  # the certificate and protocol of an https answer (tls_facts)


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchUnreachable(f"cannot resolve {host!r}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_net = ipaddress.ip_network
# IPv6 forms whose last 32 bits are the IPv4 address a packet ends up at: judged by that address.
_CARRIES_IPV4 = (_net("::ffff:0:0/96"), _net("::ffff:0:0:0/96"), _net("64:ff9b::/96"))
# Refused whatever they carry: deprecated, tunnelling or local forms, and ranges Python still calls global.
_REFUSED_V6 = (
    _net("::/96"),  # IPv4-compatible (deprecated), :: and ::1 among them
    _net("64:ff9b:1::/48"),  # local-use NAT64
    _net("2001::/32"),  # Teredo
    _net("2002::/16"),  # 6to4 (deprecated)
    _net("fec0::/10"),  # site-local (deprecated)
    _net("3fff::/20"),  # documentation
)
_GLOBAL_UNICAST_V6 = _net("2000::/3")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv6Address) and any(address in net for net in _CARRIES_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return _is_public(embedded)
    if isinstance(address, ipaddress.IPv6Address) and (
        address not in _GLOBAL_UNICAST_V6 or any(address in net for net in _REFUSED_V6)
    ):
        return False
    return address.is_global and not address.is_multicast


class AddressRules:
    """Where outgoing requests may go: public addresses, plus the networks an operator allowed."""

    def __init__(self, allow_networks: Sequence[str] = (), resolver: Resolver | None = None) -> None:
        self.allow: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
        self.resolve = resolver or _system_resolver

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> AddressRules:
        return cls(settings.fetch_allow_networks, resolver)

    def allows(self, address: IPAddress) -> bool:
        embedded = _embedded_ipv4(address)
        if any(address in net or (embedded is not None and embedded in net) for net in self.allow):
            return True
        return _is_public(address)

    def check_address(self, text: str) -> IPAddress:
        """The address, if a request may go there; FetchRefused naming it otherwise."""
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not self.allows(address):
            raise FetchRefused(f"refused: {address} is not a public address")
        return address

    def pin(self, host: str, port: int) -> IPAddress:
        """The checked address to connect to for ``host`` (a name or a literal address)."""
        if _literal(host) is not None:
            return self.check_address(host)
        candidates = self.resolve(host, port)
        if not candidates:
            raise FetchUnreachable(f"cannot resolve {host!r}")
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in candidates]
        # Every address the name has must be allowed: otherwise a second lookup could pick the bad one.
        if not all(self.allows(a) for a in addresses):
            raise FetchRefused(f"refused: {host} resolves to a non-public address")
        return addresses[0]

    def check_url(self, url: str) -> None:
        """What can be checked without resolving: the scheme, and the host when it is a literal address."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchRefused(f"refused: not a valid URL ({exc})") from None
        _check_scheme(parsed.scheme)
        host = parsed.raw_host.decode("ascii")
        if not host:
            raise FetchRefused("refused: the URL has no host")
        if _literal(host) is not None:  # a name is checked when it is resolved, at each request
            self.check_address(host)


def _literal(host: str) -> IPAddress | None:
    """The address ``host`` spells literally (an IPv6 zone dropped), or None for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _check_scheme(scheme: str) -> None:
    if scheme.lower() not in ("http", "https"):
        raise FetchRefused(f"refused: only http and https URLs are fetched, not {scheme or 'no scheme'!r}")


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The TLS context of every pool: certifi's trust store, never one named by the environment. Made
    once per process: loading the store is most of the cost of a one-off request."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


class SafeTransport(httpx.BaseTransport):
    """Sends each request to the checked address of its host, never to one a later lookup might give."""

    def __init__(self, rules: AddressRules, *, verify: ssl.SSLContext | bool = True) -> None:
        self.rules = rules
        self._verify = _default_tls() if verify is True else verify
        # One connection pool per host name: a pool is keyed by address, and a TLS connection made
        # (and verified) for one name must never carry another name's requests.
        self._pools: dict[str, httpx.HTTPTransport] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host, port = _request_host(request)
        address = self.rules.pin(host, port)
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = httpx.HTTPTransport(verify=self._verify, trust_env=False)
        response = pool.handle_request(_pinned_request(request, host, address))
        response.extensions[PEER_ADDRESS] = str(address)
        if request.url.scheme == "https":
            response.extensions[PEER_TLS] = tls_facts(response.extensions.get("network_stream"))
        return response

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _pinned_request(request: httpx.Request, host: str, address: IPAddress) -> httpx.Request:
    """``request`` sent to the checked ``address``, with the Host header and TLS server name of ``host``."""
    extensions: dict[str, Any] = dict(request.extensions)
    if _literal(host) is None:
        extensions["sni_hostname"] = host  # TLS: name and certificate are the host's, not the address's
    return httpx.Request(
        request.method,
        request.url.copy_with(host=str(address)),
        headers=request.headers,  # the Host header names the original host
        stream=request.stream,
        extensions=extensions,
    )


def _request_host(request: httpx.Request) -> tuple[str, int]:
    url = request.url
    _check_scheme(url.scheme)
    host = url.raw_host.decode("ascii")
    if not host:
        raise FetchRefused("refused: the URL has no host")
    return host, url.port or (443 if url.scheme == "https" else 80)


class AsyncSafeTransport(httpx.AsyncBaseTransport):
    """:class:`SafeTransport` for asyncio: the same rules and pinning; name lookups run in the event
    loop's executor, so a fetch never holds a thread of the web server's pool while it waits."""

    def __init__(self, rules: AddressRules, *, verify: ssl.SSLContext | bool = True) -> None:
        self.rules = rules
        self._verify = _default_tls() if verify is True else verify
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host, port = _request_host(request)
        if _literal(host) is not None:
            address = self.rules.check_address(host)
        else:
            loop = asyncio.get_running_loop()
            address = await loop.run_in_executor(None, self.rules.pin, host, port)
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = httpx.AsyncHTTPTransport(verify=self._verify, trust_env=False)
        response = await pool.handle_async_request(_pinned_request(request, host, address))
        response.extensions[PEER_ADDRESS] = str(address)
        if request.url.scheme == "https":
            response.extensions[PEER_TLS] = tls_facts(response.extensions.get("network_stream"))
        return response

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()


def tls_facts(stream: Any) -> dict[str, Any] | None:
    """What the certificate a connection was verified against says: subject, issuer, validity,
    names, serial, SHA-256 fingerprint; and the protocol and cipher. None without TLS."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    facts: dict[str, Any] = {"protocol": ssl_object.version(), "cipher": (ssl_object.cipher() or (None,))[0]}
    der = ssl_object.getpeercert(True)  # the DER bytes (the C object takes no keywords)
    if der:
        cert = x509.load_der_x509_certificate(der)
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            san = [str(n.value) for n in names]
        except x509.ExtensionNotFound:
            san = []
        facts.update(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc.isoformat(),
            not_after=cert.not_valid_after_utc.isoformat(),
            serial=format(cert.serial_number, "x"),
            san=san[:50],
            sha256=cert.fingerprint(hashes.SHA256()).hex(),
        )
    return facts


def _unreachable(exc: BaseException) -> bool:
    """Whether a connection failure means nobody answers there (refused, no route), not a TLS or
    protocol fault."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return False
        if isinstance(seen, ConnectionRefusedError | socket.gaierror) or (
            isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def safe_client(
    rules: AddressRules,
    *,
    timeout: httpx.Timeout | float,
    follow_redirects: bool = False,
    max_redirects: int = 5,
    verify: ssl.SSLContext | bool = True,
) -> httpx.Client:
    """An httpx client that only reaches what ``rules`` allow, each redirect hop checked again.

    ``trust_env=False``: proxy variables, .netrc and SSL_CERT_FILE from the environment are not read."""
    return httpx.Client(
        transport=SafeTransport(rules, verify=verify),
        trust_env=False,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
    )


class _RedactUrls(logging.Filter):
    """httpx logs every request's URL at INFO: credentials in it (userinfo, ?token=) are masked first."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


logging.getLogger("httpx").addFilter(_RedactUrls())


class SafeFetcher:
    """Fetch one URL's body under the rules, within a size and a time cap, following checked redirects."""

    def __init__(
        self,
        *,
        allow_networks: Sequence[str] = (),
        max_bytes: int = 100 * 1024 * 1024,
        timeout: float = 20.0,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
        user_agent: str = "Seawall",
        verify: ssl.SSLContext | bool = True,
        min_rate: float = 0.0,
        rate_grace: float = 5.0,
    ) -> None:
        self.rules = AddressRules(allow_networks, resolver)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.user_agent = user_agent
        self.verify = verify
        self.min_rate = min_rate  # bytes/s a body must average once the grace period is over (0: no minimum)
        self.rate_grace = rate_grace

    @classmethod
    def from_settings(cls, settings: Settings) -> SafeFetcher:
        return cls(
            allow_networks=settings.fetch_allow_networks,
            max_bytes=settings.fetch_max_bytes,
            timeout=settings.fetch_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
            min_rate=settings.fetch_min_bytes_per_second,
            rate_grace=settings.fetch_rate_grace_seconds,
        )

    def _too_slow(self, received: int, started: float) -> FetchError:
        elapsed = time.monotonic() - started
        return FetchError(
            f"too slow: {received} bytes in {elapsed:.1f} s, under the minimum of {self.min_rate:g} bytes/s"
        )

    def _rate_due(self, received: int, started: float) -> float:
        """When the next byte must have arrived for the body to keep the minimum average rate."""
        if self.min_rate <= 0:
            return float("inf")
        return max(started + self.rate_grace, started + (received + 1) / self.min_rate)

    def _build(
        self, client: httpx.Client | httpx.AsyncClient, url: str, headers: Mapping[str, str] | None, remaining: float
    ) -> httpx.Request:
        try:
            return client.build_request(
                "GET",
                url,
                headers={"user-agent": self.user_agent, "accept": "*/*", **(headers or {})},
                extensions={"timeout": httpx.Timeout(remaining).as_dict()},
            )
        except httpx.InvalidURL as exc:
            raise FetchRefused(f"refused: not a valid URL ({exc})") from None

    def _send_error(self, exc: httpx.HTTPError, url: str) -> FetchError:
        if isinstance(exc, httpx.TimeoutException):
            return FetchError(f"timed out after {self.timeout:g} s")
        if isinstance(exc, httpx.ConnectError):
            kind = FetchUnreachable if _unreachable(exc) else FetchError
            return kind(f"cannot fetch {redact_url(url)}: {exc}")
        return FetchError(f"cannot fetch {redact_url(url)}: {exc}")

    def _next_hop(self, response: httpx.Response, current: str, redirects: list[str]) -> str:
        if len(redirects) >= self.max_redirects:
            raise FetchRefused(f"refused: more than {self.max_redirects} redirects")
        target = urljoin(current, response.headers.get("location", ""))
        redirects.append(target)
        return target

    def _check_declared(self, response: httpx.Response) -> None:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchRefused(f"refused: {declared} bytes is over the {self.max_bytes}-byte limit")

    @staticmethod
    def _fetched(response: httpx.Response, url: str, body: bytes, redirects: list[str]) -> Fetched:
        return Fetched(
            url=url,
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            body=body,
            address=str(response.extensions[PEER_ADDRESS]),
            redirects=tuple(redirects),
            headers=tuple(response.headers.multi_items()),
            tls=response.extensions.get(PEER_TLS),
        )

    async def afetch(self, url: str, *, headers: Mapping[str, str] | None = None) -> Fetched:
        """:meth:`fetch` on the event loop: waiting on a slow server holds no thread. A body slower
        than ``min_rate`` on average, after ``rate_grace`` seconds, is aborted."""
        deadline = time.monotonic() + self.timeout
        redirects: list[str] = []
        current = url
        async with safe_async_client(self.rules, timeout=self.timeout, verify=self.verify) as client:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchError(f"timed out after {self.timeout:g} s")
                request = self._build(client, current, headers, remaining)
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise self._send_error(exc, current) from None
                try:
                    if response.is_redirect:
                        current = self._next_hop(response, current, redirects)
                        continue
                    body = await self._aread_body(response, deadline, current)
                finally:
                    await response.aclose()
                return self._fetched(response, current, body, redirects)

    async def _aread_body(self, response: httpx.Response, deadline: float, url: str) -> bytes:
        self._check_declared(response)
        body = bytearray()
        started = time.monotonic()
        chunks = response.aiter_bytes().__aiter__()
        try:
            while True:
                due = min(deadline, self._rate_due(len(body), started))
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), timeout=max(due - time.monotonic(), 0.0))
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise FetchError(f"timed out after {self.timeout:g} s") from None
                    raise self._too_slow(len(body), started) from None
                body.extend(chunk)
                if len(body) > self.max_bytes:
                    raise FetchRefused(f"refused: the body is over the {self.max_bytes}-byte limit")
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot fetch {redact_url(url)}: {exc}") from None
        return bytes(body)

    def check_address(self, text: str) -> IPAddress:
        return self.rules.check_address(text)

    def fetch(self, url: str, *, headers: Mapping[str, str] | None = None) -> Fetched:
        """The body at ``url`` (redirects followed, each checked); ``headers`` are sent with each hop
        (a Referer, say) after the fetcher's own user-agent and accept."""
        deadline = time.monotonic() + self.timeout
        redirects: list[str] = []
        current = url
        # Redirects are followed here, not by the client, to count them against one deadline.
        with safe_client(self.rules, timeout=self.timeout, verify=self.verify) as client:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchError(f"timed out after {self.timeout:g} s")
                request = self._build(client, current, headers, remaining)
                try:
                    response = client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise self._send_error(exc, current) from None
                try:
                    if response.is_redirect:
                        current = self._next_hop(response, current, redirects)
                        continue
                    body = self._read_body(response, deadline, current)
                finally:
                    response.close()
                return self._fetched(response, current, body, redirects)

    def _read_body(self, response: httpx.Response, deadline: float, url: str) -> bytes:
        self._check_declared(response)
        body = bytearray()
        started = time.monotonic()
        try:
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > self.max_bytes:
                    raise FetchRefused(f"refused: the body is over the {self.max_bytes}-byte limit")
                now = time.monotonic()
                if now > deadline:
                    raise FetchError(f"timed out after {self.timeout:g} s")
                # Checked as bytes arrive (a blocking read cannot be interrupted without a thread).
                if now > self._rate_due(len(body) - 1, started):
                    raise self._too_slow(len(body), started)
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot fetch {redact_url(url)}: {exc}") from None
        return bytes(body)


def safe_async_client(
    rules: AddressRules,
    *,
    timeout: httpx.Timeout | float,
    follow_redirects: bool = False,
    max_redirects: int = 5,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """:func:`safe_client` for asyncio (through :class:`AsyncSafeTransport`)."""
    return httpx.AsyncClient(
        transport=AsyncSafeTransport(rules, verify=verify),
        trust_env=False,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
    )


# ---------------------------------------------------------------- fetches on behalf of API callers


class FetchBusy(Exception):
    """A caller already has as many URL fetches in flight as it may (answered 429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"too many URL fetches in flight for this key (the limit is {limit}); retry when one ends")


class CallerFetches:
    """URL fetches in flight per caller, in this process."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self._lock = threading.Lock()  # several apps (event loops) may share the process

    @contextlib.asynccontextmanager
    async def slot(self, caller: str, limit: int) -> AsyncIterator[None]:
        with self._lock:
            if self.active.get(caller, 0) >= limit:
                raise FetchBusy(limit)
            self.active[caller] = self.active.get(caller, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self.active[caller] - 1
                if left:
                    self.active[caller] = left
                else:
                    del self.active[caller]


caller_fetches = CallerFetches()


async def fetch_for_caller(settings: Settings, url: str, caller: str) -> Fetched:
    """Fetch ``url`` for an API caller: on the event loop, within the caller's share of fetches in
    flight (:class:`FetchBusy` beyond it) and the minimum transfer rate."""
    async with caller_fetches.slot(caller, settings.fetch_per_key):
        return await SafeFetcher.from_settings(settings).afetch(url)
