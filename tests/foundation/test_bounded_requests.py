"""Bounded requests (issue #10, part 2, HTTP side): bodies capped per route and refused without a
credential before they are read, one cap on signals per request, deep JSON and huge numbers answered
4xx on every route, and no route stalling the event loop or authentication on the write lock."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey
from seawall.auth.permissions import SCOPES, SYSTEM
from seawall.config import Settings
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.web.limits import FORM_BODY_BYTES, MULTIPART_ENVELOPE, body_cap, body_rule
from servers import serve

FIFTY_MB = 50 * 1024 * 1024
MULTIPART = "multipart/form-data; boundary=seawallboundary"
MD5 = hashlib.md5(b"benign pebble").hexdigest()


def _key(db: Session, name: str, scopes: list[str] | None = None) -> str:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes or sorted(SCOPES))
    db.commit()
    return new.secret


# ---- raw HTTP on loopback: what the server answers, and when ----------------------------------


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the response on ``sock`` (read until the server closes)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    pairs = [line.split(": ", 1) for line in lines[1:] if ": " in line]
    headers = {name.lower(): value for name, value in pairs}
    return int(lines[0].split()[1]), headers, body


def _answer_to_headers_only(base: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    """Send only the request head (a body is announced, none is sent): the server must answer anyway,
    i.e. without reading a byte of the body."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_head(method, path, headers))
        return _read_answer(sock, timeout=5)


def _send_body_until_refused(
    base: str, path: str, headers: dict[str, str], total: int, chunked: bool, field: str = "file"
) -> tuple[int, dict[str, str], int]:
    """Send ``total`` body bytes while watching for the answer; returns (status, headers, bytes the
    client managed to send before the server answered and closed)."""
    port = int(base.rsplit(":", 1)[1])
    sent = 0
    block = b"\0" * 65536
    part = (
        f'--seawallboundary\r\ncontent-disposition: form-data; name="{field}"; filename="big.bin"\r\n'
        "content-type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head("POST", path, headers))
        sock.settimeout(10)
        try:
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part)
            while sent < total:
                if chunked:
                    sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                else:
                    sock.sendall(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        status, answer_headers, _ = _read_answer(sock, timeout=10)
    return status, answer_headers, sent


@pytest.fixture
def small_upload_settings(settings: Settings) -> Settings:
    settings.max_file_bytes = 1024 * 1024  # uploads stop at 2 MiB (1 MiB + the multipart envelope)
    return settings


class Served:
    """The app on loopback, behind a wrapper counting the body bytes the app took from the server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self.read = 0  # since the last reset

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@pytest.fixture
def server(small_upload_settings: Settings, engine: Engine) -> Iterator[Served]:
    from seawall.web.app import create_app

    served = Served(create_app(small_upload_settings, engine))
    with serve(served) as url:
        served.url = url
        yield served


UPLOAD_ROUTES = [
    ("POST", "/v1/hash"),
    ("POST", "/v1/match"),
    ("POST", "/h/hash"),
    ("POST", "/m/lookup"),
    ("POST", "/c/bank/SOME_BANK/content"),
    ("POST", "/v1/lists/some-list/import"),
    ("POST", "/v1/lists"),
    ("PUT", "/c/bank/SOME_BANK"),
]


def test_an_anonymous_body_is_refused_before_a_byte_of_it_is_read(server: Served, db: Session) -> None:
    revoked = _key(db, "revoked")
    auth_service.revoke_api_key(db, SYSTEM, "revoked")
    db.commit()
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "authentication required"),
        ({"authorization": "Bearer swk_not-a-key"}, "invalid API key"),
        ({"authorization": f"Bearer {revoked}"}, "this API key has been revoked"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "use 'Authorization: Bearer <API key>'"),
        ({"cookie": "seawall_session=not-a-session"}, "authentication required"),
    ]
    for method, path in UPLOAD_ROUTES:
        for credential, reason in cases:
            for framing in ({"content-length": str(FIFTY_MB)}, {"transfer-encoding": "chunked"}):
                headers = {"content-type": MULTIPART, **framing, **credential}
                server.read = 0
                started = time.monotonic()
                status, answer_headers, body = _answer_to_headers_only(server.url, method, path, headers)
                took = time.monotonic() - started
                where = f"{method} {path} {credential} {framing}"
                assert status == 401, where
                key = "message" if path.startswith(("/h/", "/m/", "/c/")) else "detail"
                assert json.loads(body) == {key: reason}, where
                assert answer_headers["connection"] == "close" and answer_headers["www-authenticate"] == "Bearer"
                assert took < 2, where
                assert server.read == 0, where


def test_public_forms_take_only_a_small_body_without_a_credential(server: Served) -> None:
    for path in ("/login", "/logout", "/report", "/report/status"):
        status, headers, body = _answer_to_headers_only(
            server.url,
            "POST",
            path,
            {"content-type": "application/x-www-form-urlencoded", "content-length": str(FIFTY_MB), "accept": "x/y"},
        )
        assert (status, headers["connection"]) == (413, "close"), path
        assert json.loads(body) == {"detail": f"the request body is over this route's {FORM_BODY_BYTES}-byte limit"}


def test_an_anonymous_50_mb_upload_stops_long_before_its_end(server: Served) -> None:
    """The client streams 50 MB: the server answers 401 and closes, so most of it is never sent."""
    for path, chunked in (("/v1/hash", False), ("/h/hash", True), ("/login", False)):
        framing = {"transfer-encoding": "chunked"} if chunked else {"content-length": str(FIFTY_MB)}
        server.read = 0
        status, _, sent = _send_body_until_refused(
            server.url, path, {"content-type": MULTIPART, **framing}, FIFTY_MB, chunked
        )
        assert status == (413 if path == "/login" else 401), path
        assert server.read == 0, path  # the app took none of it
        # What the client got out before the reset: the kernel's socket buffers, never read.
        assert sent < FIFTY_MB // 4, (path, sent)


def test_a_keys_upload_stops_at_the_routes_cap(server: Served, db: Session) -> None:
    secret = _key(db, "uploader")
    cap = 1024 * 1024 + MULTIPART_ENVELOPE
    auth = {"authorization": f"Bearer {secret}"}
    # Declared over the cap: refused from the head alone.
    status, headers, body = _answer_to_headers_only(
        server.url, "POST", "/v1/hash", {"content-type": MULTIPART, "content-length": str(cap + 1), **auth}
    )
    assert (status, headers["connection"]) == (413, "close")
    assert json.loads(body) == {"detail": f"the request body is over this route's {cap}-byte limit"}
    # Chunked, so its size is unknown: counted as it comes, refused at the cap, the rest never read.
    for path, field in (("/v1/hash", "file"), ("/m/lookup", "photo"), ("/v1/match", "file")):
        server.read = 0
        status, headers, sent = _send_body_until_refused(
            server.url, path, {"content-type": MULTIPART, "transfer-encoding": "chunked", **auth}, FIFTY_MB, True, field
        )
        assert (status, headers.get("connection")) == (413, "close"), path
        # Stopped at the cap: past it only what the server had buffered off the socket by then (its
        # buffer's high-water mark plus one read), which the app is handed in one piece and never parses.
        assert cap < server.read <= cap + 512 * 1024, (path, server.read)
        assert sent < FIFTY_MB // 4, (path, sent)
    # Within the cap the same key's upload works.
    png = _png()
    answer = httpx.post(f"{server.url}/v1/hash", files={"file": ("p.png", png, "image/png")}, headers=auth)
    assert answer.status_code == 200 and answer.json()["media"] == "image"


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def test_caps_by_route_come_from_one_table(settings: Settings) -> None:
    upload = settings.max_file_bytes + MULTIPART_ENVELOPE
    expected = {
        ("/v1/hash", MULTIPART): upload,
        ("/v1/hash", "application/json"): settings.max_body_bytes,
        ("/v1/match", MULTIPART): upload,
        ("/v1/match", "application/json"): 2 * 1024 * 1024,
        ("/c/bank/B/content", MULTIPART): upload,
        ("/m/lookup", MULTIPART): upload,
        ("/h/hash", MULTIPART): upload,
        ("/v1/lists/x/import", MULTIPART): 256 * 1024 * 1024,
        ("/v1/lists/x/entries", "application/json"): 16 * 1024 * 1024,
        ("/v1/lists/x/entries/status", "application/json"): 16 * 1024 * 1024,
        ("/v1/reports/batch", "application/json"): 16 * 1024 * 1024,
        ("/v1/referrals", "application/json"): 16 * 1024 * 1024,
        ("/v1/match/text", "application/json"): 16 * 1024 * 1024,
        ("/v1/lists", "application/json"): 2 * 1024 * 1024,
        ("/v1/lists", MULTIPART): 2 * 1024 * 1024,
        ("/c/banks", "application/json"): 2 * 1024 * 1024,
        ("/login", "application/x-www-form-urlencoded"): 128 * 1024,
        ("/report", MULTIPART): 128 * 1024,
        ("/lists/x", MULTIPART): 128 * 1024,
        ("/review/items/1/grade", "application/x-www-form-urlencoded"): 128 * 1024,
        ("/review/reveals/1/end", MULTIPART): 128 * 1024,  # the reveal's beacon (FormData)
        ("/qa/1", "application/x-www-form-urlencoded"): 128 * 1024,
        ("/lists/x/import", MULTIPART): 256 * 1024 * 1024,  # the console's import form
        ("/lists/x/entries", "application/x-www-form-urlencoded"): 128 * 1024,
        ("/admin/users", "application/x-www-form-urlencoded"): 128 * 1024,
    }
    got = {(path, kind): body_cap(body_rule(path), settings, kind) for path, kind in expected}
    assert got == expected
    public = {
        p: body_rule(p).public
        for p in ("/login", "/report", "/report/status", "/logout", "/v1/hash", "/c/banks", "/lists/x/import")
    }
    assert public == {
        "/login": True,
        "/report": True,
        "/report/status": True,
        "/logout": True,
        "/v1/hash": False,
        "/c/banks": False,
        "/lists/x/import": False,  # an upload needs a live console session before a byte is read
    }


def test_json_bodies_are_capped_per_route(client: TestClient, db: Session) -> None:
    auth = {"authorization": f"Bearer {_key(db, 'writer')}"}
    lists_service.create_list(db, SYSTEM, name="bulk", kind="hash")
    db.commit()
    padding = "x" * (3 * 1024 * 1024)
    big = client.post("/v1/lists", json={"name": "big", "kind": "hash", "description": padding}, headers=auth)
    assert big.status_code == 413
    assert big.json() == {"detail": f"the request body is over this route's {2 * 1024 * 1024}-byte limit"}
    # The same size is a bulk route's business: it gets to the route, which says what is wrong.
    entries = [
        {"signal_type": "md5", "value": hashlib.md5(str(i).encode()).hexdigest(), "note": "benign " * 40}
        for i in range(10_000)
    ]
    bulk = client.post("/v1/lists/bulk/entries", json={"entries": entries}, headers=auth)
    assert len(json.dumps({"entries": entries})) > 2 * 1024 * 1024
    assert bulk.status_code == 200 and bulk.json()["added"] == 10_000
    hma = client.post("/c/banks", json={"name": "BIG", "padding": padding}, headers=auth)
    assert hma.status_code == 413
    assert hma.json() == {"message": f"the request body is over this route's {2 * 1024 * 1024}-byte limit"}


# ---- one cap on signals ----------------------------------------------------------------------


def test_one_cap_on_signals_for_single_and_batch_matching(client: TestClient, db: Session) -> None:
    auth = {"authorization": f"Bearer {_key(db, 'matcher', ['match'])}"}
    values = [hashlib.md5(f"benign {i}".encode()).hexdigest() for i in range(1001)]
    signals = [{"signal_type": "md5", "value": v} for v in values]
    message = "at most 1000 signals per request; send more in several requests"
    for path in ("/v1/match", "/v1/match/batch"):
        assert client.post(path, json={"signals": signals[:1000]}, headers=auth).status_code == 200, path
        over = client.post(path, json={"signals": signals}, headers=auth)
        assert over.status_code == 422, path
        assert message in json.dumps(over.json()), path
    # 100,000 signals are refused by the body cap before they are parsed.
    huge = client.post("/v1/match", json={"signals": signals * 100}, headers=auth)
    assert huge.status_code == 413


# ---- deep JSON and huge numbers --------------------------------------------------------------

DEEP_ARRAY = ("[" * 100_000 + "]" * 100_000).encode()
DEEP_OBJECT = ('{"a":' * 50_000 + "1" + "}" * 50_000).encode()
HUGE = "9" * 40


def test_deep_json_and_huge_numbers_get_4xx_on_every_kind_of_route(client: TestClient, db: Session) -> None:
    auth = {"authorization": f"Bearer {_key(db, 'everything')}"}
    hash_list = lists_service.create_list(db, SYSTEM, name="BANK", kind="hash")
    lists_service.add_entries(db, SYSTEM, hash_list, [EntryRecord("md5", MD5)])
    db.commit()
    json_routes = [
        ("POST", "/v1/match", "detail"),
        ("POST", "/v1/match/batch", "detail"),
        ("POST", "/v1/lists", "detail"),
        ("PUT", "/v1/policies/deep", "detail"),
        ("POST", "/v1/webhooks", "detail"),
        ("POST", "/v1/reports", "detail"),
        ("POST", "/c/banks", "message"),
        ("PUT", "/c/bank/BANK", "message"),
        ("POST", "/c/bank/BANK/signal", "message"),
        ("POST", "/m/compare", "message"),
    ]
    problems = []
    for method, path, key in json_routes:
        for body in (DEEP_ARRAY, DEEP_OBJECT):
            answer = client.request(method, path, content=body, headers={**auth, "content-type": "application/json"})
            said = str(answer.json().get(key, ""))
            if answer.status_code not in (400, 422) or not ("nested too deeply" in said or "recursion" in said):
                problems.append(f"{method} {path}: {answer.status_code} {answer.text[:120]}")
    numbers = [
        ("GET", f"/v1/lists/BANK/entries/{HUGE}", "detail"),
        ("GET", f"/v1/lists/BANK/feed?since={HUGE}", "detail"),
        ("POST", f"/v1/quarantine/{HUGE}/release", "detail"),
        ("POST", f"/v1/quarantine/{HUGE}/everyone", "detail"),
        ("POST", f"/v1/webhooks/deliveries/{HUGE}/redeliver", "detail"),
        ("GET", f"/v1/hosts/{HUGE}", "detail"),
        ("POST", f"/v1/assessments/{HUGE}/qa", "detail"),
        ("GET", f"/c/bank/BANK/content/{HUGE}", "message"),
        ("PUT", f"/c/bank/BANK/content/{HUGE}", "message"),
        ("DELETE", f"/c/bank/BANK/content/{HUGE}", "message"),
    ]
    for method, path, key in numbers:
        body = {"decision": "confirm"} if method in ("POST", "PUT") else None
        answer = client.request(method, path, json=body, headers=auth)
        if not 400 <= answer.status_code < 500 or not answer.json().get(key):
            problems.append(f"{method} {path}: {answer.status_code} {answer.text[:120]}")
    # A number too large for a date (JSON's 1e999 is infinity) on an HMA content update.
    content = client.post(
        "/c/bank/BANK/signal", json={"video_md5": hashlib.md5(b"benign twig").hexdigest()}, headers=auth
    )
    content_id = content.json()["id"]
    for raw in (
        b'{"disable_until_ts": 1e999}',
        b'{"disable_until_ts": -1e999}',
        f'{{"disable_until_ts": {HUGE}}}'.encode(),
    ):
        answer = client.put(
            f"/c/bank/BANK/content/{content_id}", content=raw, headers={**auth, "content-type": "application/json"}
        )
        if answer.status_code != 400 and answer.status_code != 422:
            problems.append(f"disable_until_ts {raw!r}: {answer.status_code} {answer.text[:120]}")
    assert problems == [], "\n".join(problems)


# ---- the event loop and the write lock -------------------------------------------------------


class _WriteLockHolder:
    """Holds the database's write lock from another connection: SQLite's one write lock, or on
    PostgreSQL the locks a bank create and a key's last-use stamp need (the lists table for writes,
    the key's row)."""

    def __init__(self, database_url: str, engine: Engine, key_id: int) -> None:
        self.sqlite = database_url.startswith("sqlite")
        self.raw: sqlite3.Connection | None = None
        self.connection: Any = None
        if self.sqlite:
            self.raw = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
            self.raw.execute("BEGIN IMMEDIATE")
        else:
            self.connection = engine.connect()
            self.connection.execute(text("LOCK TABLE lists IN EXCLUSIVE MODE"))
            self.connection.execute(text("SELECT id FROM api_keys WHERE id = :id FOR UPDATE"), {"id": key_id})

    def release(self) -> None:
        if self.raw is not None:
            self.raw.execute("COMMIT")
            self.raw.close()
        if self.connection is not None:
            self.connection.commit()
            self.connection.close()


def test_health_and_reads_answer_while_a_bank_create_waits_for_the_write_lock(
    live_server: Any, db: Session, database_url: str, engine: Engine
) -> None:
    writer = _key(db, "bank-writer", ["lists:write", "lists:read"])
    reader_name = "reader"
    reader = _key(db, reader_name, ["lists:read", "match"])
    reader_id = db.scalar(select(ApiKey.id).where(ApiKey.name == reader_name))
    assert reader_id is not None
    base = live_server.url
    http = httpx.Client(base_url=base, timeout=60)  # made now: a client's set-up costs a while itself
    assert http.get("/healthz").status_code == 200
    holder = _WriteLockHolder(database_url, engine, reader_id)
    created: dict[str, Any] = {}

    def create_bank() -> None:
        answer = http.post("/c/banks", json={"name": "WAITING_BANK"}, headers={"authorization": f"Bearer {writer}"})
        created["status"], created["at"] = answer.status_code, time.monotonic()

    try:
        thread = threading.Thread(target=create_bank)
        thread.start()
        time.sleep(0.5)  # the create is in, waiting for the lock
        timings: dict[str, float] = {}
        for name, path, auth in (
            ("healthz", "/healthz", None),
            ("banks", "/c/banks", reader),  # a key checked for the first time: its last-use stamp is due
            ("lookup", f"/v1/match?signal_type=md5&value={MD5}", reader),
            ("raw_lookup", f"/m/raw_lookup?signal_type=video_md5&signal={MD5}", reader),
        ):
            headers = {"authorization": f"Bearer {auth}"} if auth else {}
            started = time.monotonic()
            answer = http.get(path, headers=headers)
            timings[name] = time.monotonic() - started
            assert answer.status_code == 200, (name, answer.text)
        assert "status" not in created, "the bank create did not wait for the lock: the test proves nothing"
        assert all(took < 1.0 for took in timings.values()), timings
    finally:
        released = time.monotonic()
        holder.release()
    thread.join(timeout=60)
    assert created["status"] == 201 and created["at"] >= released
    # The stamp was skipped rather than waited for, and is written once the database is free.
    db.rollback()
    assert db.scalar(select(ApiKey.last_used_at).where(ApiKey.id == reader_id)) is None
    auth_service.clear_key_cache()
    assert http.get("/c/banks", headers={"authorization": f"Bearer {reader}"}).status_code == 200
    http.close()
    db.rollback()
    assert db.scalar(select(ApiKey.last_used_at).where(ApiKey.id == reader_id)) is not None


def test_seawall_match_reads_while_another_process_holds_the_write_lock(
    tmp_path: Any, database_url: str, engine: Engine
) -> None:
    import os
    import subprocess
    import sys

    from PIL import Image

    from servers import child_environment

    picture = tmp_path / "gradient.png"
    Image.linear_gradient("L").convert("RGB").save(picture)
    home = tmp_path / "home"
    home.mkdir()
    env = child_environment(SEAWALL_HOME=str(home), SEAWALL_DATABASE_URL=database_url)
    # Also warms up: the first start of a process imports for seconds on a loaded machine.
    first = subprocess.run(
        [sys.executable, "-m", "seawall", "match", str(picture)], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0 and json.loads(first.stdout)["matches"] == [], first.stderr
    if database_url.startswith("sqlite"):  # SQLite's one write lock (PostgreSQL's readers never wait)
        raw = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            process = subprocess.Popen(
                [sys.executable, "-m", "seawall", "match", str(picture)],
                env={**env, "PATH": os.environ.get("PATH", "")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert process.stdout is not None
            line = process.stdout.readline()  # the file's answer, printed as soon as it is matched
            took = time.monotonic() - started
        finally:
            raw.execute("COMMIT")  # (SQLite's last checkpoint at the process's exit waits for the lock)
            raw.close()
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
        assert json.loads(line)["matches"] == []
        assert took < 20, took  # the busy timeout is 30 s: a write session would have waited it out
    # With --record a match is written, in a short write of its own.
    from seawall.db import make_sessionmaker
    from seawall.matching.models import MatchEvent

    listed = hashlib.md5(picture.read_bytes()).hexdigest()
    with make_sessionmaker(engine)() as session:
        hash_list = lists_service.create_list(session, SYSTEM, name="local", kind="hash")
        lists_service.add_entries(session, SYSTEM, hash_list, [EntryRecord("md5", listed)])
        session.commit()
    recorded = subprocess.run(
        [sys.executable, "-m", "seawall", "match", "--record", str(picture)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert recorded.returncode == 0, recorded.stderr
    answer = json.loads(recorded.stdout)
    assert [(m["list"], m["value"]) for m in answer["matches"]] == [("local", listed)]
    with make_sessionmaker(engine)() as session:
        events = session.scalars(select(MatchEvent)).all()
        assert [(e.match_id, e.signals["md5"]) for e in events] == [(answer["match_id"], [listed])]
