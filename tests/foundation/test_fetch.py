"""The SSRF-safe fetcher against real servers on loopback."""

from __future__ import annotations

import ipaddress
import re
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from seawall.fetch import PEER_ADDRESS, AddressRules, FetchError, FetchRefused, SafeFetcher, safe_client


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        routes = {
            "/ok": (200, b"benign bytes"),
            "/big": (200, b"x" * 5000),
        }
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("location", "/loop")
            self.end_headers()
            return
        status, body = routes.get(self.path, (404, b"no"))
        self.send_response(status)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_loopback_private_and_metadata_addresses_are_refused_by_default(server: str) -> None:
    fetcher = SafeFetcher()
    for url in (
        server + "/ok",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://192.168.0.1/",
    ):
        with pytest.raises(FetchRefused, match="is not a public address"):
            fetcher.fetch(url)


def test_a_dns_name_resolving_to_a_private_address_is_refused_without_echoing_the_answer(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(FetchRefused) as refused:
        SafeFetcher().fetch(f"http://localhost:{port}/ok")
    assert str(refused.value) == "refused: localhost resolves to a non-public address"
    # A name with one public and one private address is refused too (a second lookup could pick either).
    mixed = SafeFetcher(resolver=lambda host, port: ["93.184.215.14", "10.0.0.7"])
    with pytest.raises(FetchRefused) as refused:
        mixed.fetch("http://mixed.test/")
    assert str(refused.value) == "refused: mixed.test resolves to a non-public address"
    # An AAAA answer in the NAT64 prefix carrying the metadata address: refused, the answer not shown.
    nat64 = SafeFetcher(resolver=lambda host, port: ["64:ff9b::a9fe:a9fe"])
    with pytest.raises(FetchRefused) as refused:
        nat64.fetch("http://rebind.test/latest/meta-data/")
    assert str(refused.value) == "refused: rebind.test resolves to a non-public address"


def test_only_http_and_https(server: str) -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/"):
        with pytest.raises(FetchRefused, match="only http and https URLs are fetched"):
            SafeFetcher().fetch(url)


def test_allowed_network_fetches_and_redirects_are_rechecked(server: str) -> None:
    fetcher = SafeFetcher(allow_networks=["127.0.0.1/32"], max_bytes=1000)
    fetched = fetcher.fetch(server + "/ok")
    assert (fetched.status, fetched.body, fetched.address) == (200, b"benign bytes", "127.0.0.1")
    hop = fetcher.fetch(server + "/redirect?to=/ok")
    assert hop.body == b"benign bytes" and hop.redirects == (server + "/ok",)
    for target in ("http://169.254.169.254/", "http://10.0.0.1/", "http://[::1]:8/"):
        with pytest.raises(FetchRefused, match="is not a public address"):
            fetcher.fetch(f"{server}/redirect?to={target}")
    with pytest.raises(FetchRefused, match="more than 5 redirects"):
        fetcher.fetch(server + "/loop")
    with pytest.raises(FetchRefused, match="over the 1000-byte limit"):
        fetcher.fetch(server + "/big")


def test_connection_failures_are_clear_errors() -> None:
    fetcher = SafeFetcher(allow_networks=["127.0.0.0/8"], timeout=2)
    with pytest.raises(FetchError, match=re.escape("cannot fetch http://127.0.0.1:1/")):
        fetcher.fetch("http://127.0.0.1:1/")
    with pytest.raises(FetchError, match="cannot resolve"):
        SafeFetcher().fetch("http://no-such-host.invalid/")


# Every form an address can take, and whether an outgoing request may go there (no networks allowed).
# IPv6 forms that carry an IPv4 address (mapped, translated, NAT64 well-known prefix) are judged by it;
# IPv4-compatible, 6to4, Teredo and local-use NAT64 are refused whatever they carry.
ADDRESSES = [
    ("93.184.215.14", True),
    ("8.8.8.8", True),
    ("2606:4700:4700::1111", True),
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.0.1", False),
    ("169.254.169.254", False),  # cloud metadata
    ("100.64.0.1", False),  # carrier-grade NAT
    ("0.0.0.0", False),
    ("198.18.0.1", False),  # benchmarking
    ("192.0.2.1", False),  # documentation
    ("224.0.0.1", False),  # multicast
    ("240.0.0.1", False),  # reserved
    ("255.255.255.255", False),
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fc00::1", False),
    ("fd00:ec2::254", False),  # a cloud's IPv6 metadata address
    ("ff02::1", False),
    ("2001:db8::1", False),
    ("100::1", False),
    ("fec0::1", False),  # site-local, deprecated
    ("3fff::1", False),  # documentation
    ("5f00::1", False),  # outside global unicast
    ("::ffff:127.0.0.1", False),  # IPv4-mapped
    ("::ffff:169.254.169.254", False),
    ("::ffff:8.8.8.8", True),
    ("::ffff:0:a00:1", False),  # IPv4-translated 10.0.0.1
    ("::ffff:0:808:808", True),  # IPv4-translated 8.8.8.8
    ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
    ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ("64:ff9b:1::808:808", False),  # local-use NAT64: refused outright
    ("::a00:1", False),  # IPv4-compatible 10.0.0.1 (deprecated)
    ("::808:808", False),  # IPv4-compatible, even of a public address
    ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
    ("2002:808:808::1", False),  # 6to4, even of a public address
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
]


@pytest.mark.parametrize(("address", "allowed"), ADDRESSES)
def test_address_rules(address: str, allowed: bool) -> None:
    fetcher = SafeFetcher()
    if allowed:
        assert str(fetcher.check_address(address)) == str(ipaddress.ip_address(address))
    else:
        with pytest.raises(FetchRefused) as refused:
            fetcher.check_address(address)
        assert str(refused.value) == f"refused: {ipaddress.ip_address(address)} is not a public address"


def test_allowed_networks_cover_the_ipv4_an_ipv6_form_carries() -> None:
    rules = AddressRules(["127.0.0.0/8", "fd00::/8"])
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "fd12::1"):
        assert rules.check_address(address) == ipaddress.ip_address(address)
    for address in ("10.0.0.1", "::ffff:10.0.0.1", "::1"):
        with pytest.raises(FetchRefused, match="is not a public address"):
            rules.check_address(address)


def test_literal_urls_are_checked_without_resolving() -> None:
    # A documentation network the operator allowed stands in for a public address.
    rules = AddressRules(["192.0.2.0/24"], resolver=lambda host, port: pytest.fail("nothing is resolved"))
    rules.check_url("https://hooks.example.org/x")  # a name: checked when it is resolved
    rules.check_url("https://192.0.2.14/x")
    for url, message in (
        ("http://169.254.169.254/latest", "refused: 169.254.169.254 is not a public address"),
        ("http://[::ffff:a9fe:a9fe]/", "refused: ::ffff:a9fe:a9fe is not a public address"),
        ("ftp://example.org/", "refused: only http and https URLs are fetched, not 'ftp'"),
        ("http:///path", "refused: the URL has no host"),
    ):
        with pytest.raises(FetchRefused) as refused:
            rules.check_url(url)
        assert str(refused.value) == message


# ---- the pinned connection: original Host header and TLS server name, to the checked address -----


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for ``name`` it signed: (ca, cert, key) PEM files."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Seawall test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_https_goes_to_the_checked_address_with_the_host_name_in_sni_and_host_header(tmp_path: Path) -> None:
    ca, cert, key = _certificate(tmp_path, "hooks.test")
    server_names: list[str | None] = []
    host_headers: list[str | None] = []

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            host_headers.append(self.headers.get("host"))
            self.send_response(200)
            self.send_header("content-length", "6")
            self.end_headers()
            self.wfile.write(b"pinned")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    trust = ssl.create_default_context(cafile=str(ca))
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]  # hooks.test exists nowhere else: only the pinned address can answer

    try:
        fetcher = SafeFetcher(allow_networks=["127.0.0.0/8"], resolver=resolver, verify=trust)
        fetched = fetcher.fetch(f"https://hooks.test:{port}/ok")
        assert (fetched.status, fetched.body, fetched.address) == (200, b"pinned", "127.0.0.1")
        assert (lookups, server_names, host_headers) == (["hooks.test"], ["hooks.test"], [f"hooks.test:{port}"])
        # The certificate is checked against the host name, not the address connected to.
        other = SafeFetcher(allow_networks=["127.0.0.0/8"], resolver=resolver, verify=trust)
        with pytest.raises(FetchError, match="certificate verify failed"):
            other.fetch(f"https://other.test:{port}/ok")
    finally:
        httpd.shutdown()


def test_the_safe_client_ignores_proxy_settings_and_rechecks_redirect_hops(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            proxied.append(self.path)
            self.send_response(502)
            self.send_header("content-length", "0")
            self.end_headers()

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        with safe_client(AddressRules(["127.0.0.0/8"]), timeout=5, follow_redirects=True) as client:
            response = client.get(server + "/redirect?to=/ok")
            assert (response.status_code, response.content) == (200, b"benign bytes")
            assert response.extensions[PEER_ADDRESS] == "127.0.0.1"
            with pytest.raises(FetchRefused, match=r"refused: 169\.254\.169\.254 is not a public address"):
                client.get(server + "/redirect?to=http://169.254.169.254/latest/meta-data/")
        with safe_client(AddressRules(), timeout=5) as client, pytest.raises(FetchRefused):
            client.get(server + "/ok")
    finally:
        proxy.shutdown()
    assert proxied == []


def test_no_outgoing_request_is_made_outside_fetch_py() -> None:
    """Every client is built by seawall.fetch (safe_client, SafeFetcher): nothing else opens one."""
    package = Path(__file__).resolve().parents[2] / "src" / "seawall"
    opening = re.compile(
        r"httpx\.(Client|AsyncClient|HTTPTransport|AsyncHTTPTransport|get|post|put|patch|delete|request|stream)\("
        r"|urllib\.request|http\.client|^\s*(import|from) (requests|urllib3|aiohttp)\b|socket\.create_connection"
    )
    found = [
        f"{path.relative_to(package)}:{n}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "fetch.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if opening.search(line)
    ]
    assert found == []
