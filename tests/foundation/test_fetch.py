"""The SSRF-safe fetcher against real servers on loopback."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from seawall.fetch import FetchError, FetchRefused, SafeFetcher


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


def test_a_dns_name_resolving_to_a_private_address_is_refused(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(FetchRefused, match=r"refused: 127\.0\.0\.1 is not a public address"):
        SafeFetcher().fetch(f"http://localhost:{port}/ok")
    # A name with one public and one private address is refused too (a second lookup could pick either).
    mixed = SafeFetcher(resolver=lambda host, port: ["93.184.215.14", "10.0.0.7"])
    with pytest.raises(FetchRefused, match=r"10\.0\.0\.7 is not a public address"):
        mixed.fetch("http://mixed.test/")


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
