"""Bounded resources on the routes that decode and fetch (issue #10): decode slots answer 503 with
Retry-After when full, a canvas bomb is refused from its headers, slow URL fetches do not starve
other routes, a key's fetches in flight are limited (429), and a fetch too slow is aborted."""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tests.servers import serve

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.media.budget import slots_for
from seawall.media.synthetic import benign_image, canvas_bomb_gif


def _key(db: Session, name: str, scopes: list[str]) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _png() -> bytes:
    out = io.BytesIO()
    benign_image(7, 320, 240).save(out, format="PNG")
    return out.getvalue()


@contextmanager
def _app_server(settings: Settings, engine: Engine, **changes: Any) -> Iterator[str]:
    from seawall.web.app import create_app

    with serve(create_app(settings.model_copy(update=changes), engine)) as url:
        yield url


@dataclass
class Trickle:
    """A loopback HTTP server that answers 200 with a PNG content type and then sends its body one
    byte every ``interval`` seconds, until it is stopped."""

    interval: float
    url: str = ""
    accepted: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.accepted < count:
            assert time.monotonic() < deadline, f"only {self.accepted} of {count} fetches arrived"
            time.sleep(0.02)


@contextmanager
def trickle_server(interval: float) -> Iterator[Trickle]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.1)
    state = Trickle(interval, url=f"http://127.0.0.1:{server.getsockname()[1]}/slow.png")
    lock = threading.Lock()

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
                while not state.stop.wait(state.interval):
                    conn.sendall(b"\x89")
            except OSError:
                pass  # the fetcher gave up: that is the point

    def accept() -> None:
        while not state.stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with lock:
                state.accepted += 1
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield state
    finally:
        state.stop.set()
        acceptor.join(5)
        server.close()


def _post_url(base: str, headers: dict[str, str], url: str) -> int:
    with httpx.Client(base_url=base, headers=headers, timeout=90) as http:
        return http.post("/v1/match", json={"url": url}).status_code


def test_a_full_set_of_decode_slots_answers_503_with_retry_after_on_every_decoding_route(
    settings: Settings, engine: Engine, db: Session
) -> None:
    partner = _key(db, "platform", ["match", "hash"])
    png = _png()
    with _app_server(settings, engine, decode_concurrency=1, decode_wait_seconds=0.2) as url:
        slots = slots_for(settings.model_copy(update={"decode_concurrency": 1}))
        uploads = (
            ("/v1/hash", {"file": ("a.png", png, "image/png")}),
            ("/v1/match", {"file": ("a.png", png, "image/png")}),
            ("/h/hash", {"photo": ("a.png", png, "image/png")}),
            ("/m/lookup", {"photo": ("a.png", png, "image/png")}),
        )
        with httpx.Client(base_url=url, headers=partner, timeout=30) as http:
            slots.acquire(0)  # another decode holds the only slot
            try:
                for path, files in uploads:
                    busy = http.post(path, files=files)
                    field = "message" if path.startswith(("/h/", "/m/")) else "detail"  # HMA's error shape
                    assert (busy.status_code, busy.headers.get("retry-after"), busy.json()) == (
                        503,
                        "2",
                        {field: "the server is busy decoding other uploads; retry in 2 s"},
                    ), path
            finally:
                slots.release()
            for path, files in uploads:
                assert http.post(path, files=files).status_code == 200, path
            assert slots.active == 0


def test_a_canvas_bomb_upload_is_refused_with_a_clear_message(settings: Settings, engine: Engine, db: Session) -> None:
    partner = _key(db, "platform", ["match", "hash"])
    bomb = canvas_bomb_gif(4000, 50)
    with _app_server(settings, engine) as url, httpx.Client(base_url=url, headers=partner, timeout=60) as http:
        started = time.monotonic()
        refused = http.post("/v1/hash", files={"file": ("bomb.gif", bomb, "image/gif")})
        elapsed = time.monotonic() - started
    assert (refused.status_code, refused.json()) == (
        422,
        {
            "detail": "bomb.gif: decoding 50 frame(s) of 4000x4000 is 800000000 pixels, over the budget of "
            "400000000 pixels per request (decompression bomb?)"
        },
    )
    assert elapsed < 10  # was 14 s and 968 MB; now one frame is decoded (for PDQ) before the refusal


def test_slow_url_fetches_do_not_starve_other_routes(settings: Settings, engine: Engine, db: Session) -> None:
    partner = _key(db, "platform", ["match", "hash"])
    reader = _key(db, "reader", ["lists:read"])
    changes = {
        "fetch_allow_networks": ["127.0.0.0/8"],
        "fetch_per_key": 100,
        "fetch_min_bytes_per_second": 0.0,
        "fetch_timeout_seconds": 60.0,
    }
    with (
        trickle_server(3.0) as slow,
        _app_server(settings, engine, **changes) as url,
        ThreadPoolExecutor(44) as pool,
    ):
        pending = [pool.submit(_post_url, url, partner, slow.url) for _ in range(44)]
        slow.wait_for(44)  # every fetch is in flight, each trickling one byte every 3 s
        with httpx.Client(base_url=url, headers=reader, timeout=30) as http:
            timings = []
            for _ in range(3):
                started = time.monotonic()
                lists = http.get("/v1/lists")
                timings.append(time.monotonic() - started)
                assert lists.status_code == 200
        assert max(timings) < 1.0, timings
        slow.stop.set()  # the trickles end: every fetch fails cleanly
        assert {p.result() for p in pending} == {422}


def test_a_key_may_have_only_so_many_fetches_in_flight(settings: Settings, engine: Engine, db: Session) -> None:
    partner = _key(db, "platform", ["match", "hash"])
    other = _key(db, "other platform", ["match", "hash"])
    changes = {"fetch_allow_networks": ["127.0.0.0/8"], "fetch_per_key": 2, "fetch_min_bytes_per_second": 0.0}
    with (
        trickle_server(0.5) as slow,
        _app_server(settings, engine, **changes) as url,
        ThreadPoolExecutor(3) as pool,
    ):
        pending = [pool.submit(_post_url, url, partner, slow.url) for _ in range(2)]
        slow.wait_for(2)
        with httpx.Client(base_url=url, timeout=30) as http:
            third = http.post("/v1/match", json={"url": slow.url}, headers=partner)
            hma = http.get("/h/hash", params={"url": slow.url}, headers=partner)
            assert slow.accepted == 2  # refused before fetching
            assert (third.status_code, third.headers.get("retry-after"), third.json()) == (
                429,
                "1",
                {"detail": "too many URL fetches in flight for this key (the limit is 2); retry when one ends"},
            )
            assert (hma.status_code, hma.json()) == (429, {"message": third.json()["detail"]})
        # Another key has its own share: its fetch goes out.
        pending.append(pool.submit(_post_url, url, other, slow.url))
        slow.wait_for(3)
        slow.stop.set()
        assert [p.result() for p in pending] == [422, 422, 422]


def test_a_fetch_slower_than_the_minimum_rate_is_aborted_with_a_message(
    settings: Settings, engine: Engine, db: Session
) -> None:
    partner = _key(db, "platform", ["match", "hash"])
    changes = {
        "fetch_allow_networks": ["127.0.0.0/8"],
        "fetch_min_bytes_per_second": 100.0,
        "fetch_rate_grace_seconds": 1.0,
    }
    with (
        trickle_server(0.25) as slow,
        _app_server(settings, engine, **changes) as url,
        httpx.Client(base_url=url, headers=partner, timeout=60) as http,
    ):
        started = time.monotonic()
        aborted = http.post("/v1/match", json={"url": slow.url})
        elapsed = time.monotonic() - started
        hma = http.get("/h/hash", params={"url": slow.url})
    assert aborted.status_code == 422
    assert re.fullmatch(
        r"too slow: [1-9] bytes in 1\.\d s, under the minimum of 100 bytes/s", aborted.json()["detail"]
    ), aborted.json()
    assert 1.0 <= elapsed < 5.0
    assert hma.status_code == 400 and hma.json()["message"].startswith("Failed to fetch URL: too slow: ")


@pytest.mark.parametrize("rate", [100.0])
def test_the_sync_fetcher_honours_the_minimum_rate_too(rate: float) -> None:
    from seawall.fetch import FetchError, SafeFetcher

    with trickle_server(0.25) as slow:
        fetcher = SafeFetcher(allow_networks=["127.0.0.0/8"], min_rate=rate, rate_grace=1.0, timeout=30)
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"^too slow: \d+ bytes in 1\.\d s, under the minimum of 100 bytes/s$"):
            fetcher.fetch(slow.url)
        assert time.monotonic() - started < 5


def test_the_async_fetcher_keeps_the_ssrf_rules_on_every_hop() -> None:
    import asyncio
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from seawall.fetch import FetchRefused, SafeFetcher

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://10.0.0.1/inside")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"benign bytes"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    def run(coroutine: Any) -> Any:
        # In a thread of its own: the session's browser (Playwright) keeps an event loop running in
        # this one once a browser test has run in this test process.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        allowed = SafeFetcher(allow_networks=["127.0.0.0/8"], resolver=lambda host, port: ["127.0.0.1"])
        fetched = run(allowed.afetch(f"{base}/ok"))
        assert (fetched.status, fetched.body, fetched.address) == (200, b"benign bytes", "127.0.0.1")
        named = run(allowed.afetch(f"http://files.example:{server.server_address[1]}/ok"))
        assert named.body == b"benign bytes"  # a name, resolved (off the event loop) and pinned
        with pytest.raises(FetchRefused, match=r"^refused: 10\.0\.0\.1 is not a public address$"):
            run(allowed.afetch(f"{base}/away"))
        with pytest.raises(FetchRefused, match=r"^refused: 127\.0\.0\.1 is not a public address$"):
            run(SafeFetcher().afetch(f"{base}/ok"))
        private_name = SafeFetcher(resolver=lambda host, port: ["192.168.1.20"])
        with pytest.raises(FetchRefused, match=r"^refused: files\.example resolves to a non-public address$"):
            run(private_name.afetch("http://files.example/x"))
    finally:
        server.shutdown()
