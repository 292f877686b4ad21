"""Exchanges end to end against fake sources on 127.0.0.1: file, seawall feed, NCMEC, StopNCII;
checkpoints, errors, feedback, scheduling and the lease, secrets masked."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from tests.lists.fakes import free_port, ncmec, serve, stopncii
from tests.lists.fakes.feed import make_feed_app, make_file_app, md5

from seawall.auth import service as auth_service
from seawall.auth.audit import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_sessionmaker, utcnow
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service
from seawall.lists.exchanges.base import MASK, SEALED, get_exchange_type, open_secrets
from seawall.lists.exchanges.file import FileExchange
from seawall.lists.exchanges.models import Exchange
from seawall.lists.exchanges.tasks import enqueue_due
from seawall.lists.models import ListChange, Opinion

PDQ_A = "f" * 32 + "0" * 32
PDQ_B = "0f" * 32


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The fake sources listen on loopback: allowed through the outgoing-request rules, as an
    operator would allow an internal source."""
    settings.fetch_allow_networks = ["127.0.0.0/8"]
    return settings


def _setup(db: Session, kind: str = "hash", name: str = "mirror") -> lists_service.HashList:
    hl = lists_service.create_list(db, SYSTEM, name=name, kind=kind)
    db.commit()
    return hl


def _state(db: Session, name: str = "mirror") -> dict[tuple[str, str, str], tuple[str, str | None]]:
    db.rollback()  # a fresh snapshot: the sync committed through other sessions
    hl = lists_service.get_list(db, name)
    return {(e.signal_type, e.value, e.external_id): (e.status, e.category) for e in lists_service.iter_entries(db, hl)}


def _stored_config(db: Session, name: str) -> str:
    """The exchange's config column exactly as the database holds it."""
    db.rollback()
    value = db.execute(text("SELECT config FROM exchanges WHERE name = :name"), {"name": name}).scalar_one()
    return value if isinstance(value, str) else json.dumps(value)


def _opened(settings: Settings, exchange: Exchange) -> dict[str, object]:
    return open_secrets(settings, get_exchange_type(exchange.type), exchange.config)


def _exchange(db: Session, name: str) -> Exchange:
    db.rollback()  # a fresh snapshot: the sync committed through other sessions
    return service.get_exchange(db, name)


# ---- file ------------------------------------------------------------------------------------


def _csv(rows: list[tuple[str, str, str, str]]) -> bytes:
    lines = ["signal_type,value,category,labels,source,external_id,note"]
    lines += [f"{t},{v},{c},,,{x}," for t, v, c, x in rows]
    return ("\n".join(lines) + "\n").encode()


def test_file_exchange_snapshot_unchanged_skip_retraction_and_etag(
    db: Session, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    factory = make_sessionmaker(engine)
    _setup(db)
    path = tmp_path / "list.csv"
    path.write_bytes(_csv([("md5", md5(1), "A", ""), ("md5", md5(2), "B", ""), ("pdq", PDQ_A, "A", "p1")]))
    service.create_exchange(
        db,
        settings,
        SYSTEM,
        name="local",
        type="file",
        list_name="mirror",
        config={"location": str(path), "batch_size": 2},
    )
    # A manual entry in the same list is never retracted by the file's snapshot.
    lists_service.add_entries(
        db, SYSTEM, lists_service.get_list(db, "mirror"), [lists_service.EntryRecord("md5", md5(9))]
    )
    db.commit()
    first = service.run_sync(factory, settings, "local")
    assert (first.ok, first.added, first.updated, first.retired, first.batches) == (True, 3, 0, 0, 2)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert _exchange(db, "local").checkpoint == {"digest": digest, "etag": None}
    again = service.run_sync(factory, settings, "local")
    assert (again.ok, again.added, again.batches) == (True, 0, 0)  # unchanged file: skipped
    # New version: md5(2) gone, md5(1) recategorised, md5(3) new.
    path.write_bytes(_csv([("md5", md5(1), "C", ""), ("pdq", PDQ_A, "A", "p1"), ("md5", md5(3), "A", "")]))
    third = service.run_sync(factory, settings, "local")
    assert (third.added, third.updated, third.retired) == (1, 1, 1)
    assert _state(db) == {
        ("md5", md5(9), ""): ("active", None),
        ("md5", md5(1), ""): ("active", "C"),
        ("md5", md5(2), ""): ("retracted", "B"),
        ("pdq", PDQ_A, "p1"): ("active", "A"),
        ("md5", md5(3), ""): ("active", "A"),
    }
    ex = _exchange(db, "local")
    assert (ex.last_added, ex.last_updated, ex.last_retired, ex.last_error, ex.running_since) == (1, 1, 1, "", None)
    # An empty file is refused rather than retracting everything; the checkpoint stays.
    path.write_bytes(b"signal_type,value,category,labels,source,external_id,note\n")
    empty = service.run_sync(factory, settings, "local")
    assert not empty.ok and "holds no records; refusing to retract everything" in (empty.error or "")
    ex = _exchange(db, "local")
    assert ex.checkpoint == {
        "digest": hashlib.sha256(
            _csv([("md5", md5(1), "C", ""), ("pdq", PDQ_A, "A", "p1"), ("md5", md5(3), "A", "")])
        ).hexdigest(),
        "etag": None,
    }
    assert ex.last_failure_at is not None and "refusing" in ex.last_error
    # Over HTTP: the ETag makes an unchanged file a 304.
    files = {"list.csv": _csv([("md5", md5(4), "A", "")])}
    app = make_file_app(files)
    _setup(db, name="remote")
    with serve(app) as url:
        service.create_exchange(
            db,
            settings,
            SYSTEM,
            name="web",
            type="file",
            list_name="remote",
            config={"location": f"{url}/files/list.csv"},
        )
        db.commit()
        assert service.run_sync(factory, settings, "web").added == 1
        assert service.run_sync(factory, settings, "web").batches == 0
        files["list.csv"] = b"not,a,known\x00format"
        bad = service.run_sync(factory, settings, "web")
    assert app.state.hits[0] is None and app.state.hits[1].startswith('"')
    assert not bad.ok and "cannot tell the format" in (bad.error or "")
    assert _state(db, "remote") == {("md5", md5(4), ""): ("active", "A")}


# ---- seawall feed ---------------------------------------------------------------------------


def _bearer(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> str:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return new.secret


def test_seawall_exchange_mirrors_the_feed_and_sends_opinions_back_once(
    live_server, db: Session, engine: Engine, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    factory = make_sessionmaker(engine)
    source = _setup(db, name="known")
    _setup(db)
    lists_service.add_entries(
        db,
        SYSTEM,
        source,
        [lists_service.EntryRecord("md5", md5(i), category="A", external_id=f"k{i}") for i in range(5)],
    )
    db.commit()
    key = _bearer(db, "partner", ["lists:read", "lists:write"], lists=["known"])
    config = {"base_url": live_server.url, "list": "known", "api_key": key, "page_size": 2}
    service.create_exchange(db, settings, SYSTEM, name="peer", type="seawall", list_name="mirror", config=config)
    db.commit()
    first = service.run_sync(factory, settings, "peer")
    assert (first.ok, first.added, first.batches) == (True, 5, 3)
    assert _exchange(db, "peer").checkpoint == {"revision": 5, "list_uid": source.uid}
    # At the source: one retracted, one recategorised.
    [e0] = lists_service.find_entries(db, source, md5(0))
    lists_service.set_status(db, SYSTEM, [e0], "retracted")
    lists_service.add_entries(
        db, SYSTEM, source, [lists_service.EntryRecord("md5", md5(1), category="B", external_id="k1")]
    )
    db.commit()
    second = service.run_sync(factory, settings, "peer")
    assert (second.added, second.updated, second.retired) == (0, 1, 1)
    assert _state(db) == {
        ("md5", md5(i), f"k{i}"): ("retracted" if i == 0 else "active", "B" if i == 1 else "A") for i in range(5)
    }
    # An opinion on a mirrored entry goes back to the source entry, once.
    mirror = lists_service.get_list(db, "mirror")
    [m2] = lists_service.find_entries(db, mirror, md5(2))
    lists_service.add_opinion(db, SYSTEM, m2, "false_positive", "a meme")
    db.commit()
    third = service.run_sync(factory, settings, "peer")
    assert (third.ok, third.feedback_sent) == (True, 1)
    assert service.run_sync(factory, settings, "peer").feedback_sent == 0
    [s2] = lists_service.find_entries(db, source, md5(2))
    assert [(o.verdict, o.comment, o.actor) for o in lists_service.opinions(db, s2)] == [
        ("false_positive", "a meme", "partner")
    ]
    assert (
        db.scalar(select(func.count()).select_from(Opinion).where(Opinion.sent_at.is_(None))) == 1
    )  # the echo at the source
    # A wrong key: the error is recorded and the checkpoint does not move.
    service.update_exchange(db, settings, SYSTEM, _exchange(db, "peer"), config={"api_key": "sw_wrong"})
    db.commit()
    failed = service.run_sync(factory, settings, "peer")
    ex = _exchange(db, "peer")
    assert not failed.ok and "answered 401" in ex.last_error
    assert ex.checkpoint == {"revision": 7, "list_uid": source.uid}


def test_seawall_exchange_follows_a_deleted_source_list_and_a_new_list_under_its_name(
    live_server, db: Session, engine: Engine, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    factory = make_sessionmaker(engine)
    source = _setup(db, name="known")
    _setup(db)
    records = [lists_service.EntryRecord("md5", md5(i), external_id=f"k{i}") for i in range(3)]
    lists_service.add_entries(db, SYSTEM, source, records)
    db.commit()
    key = _bearer(db, "partner", ["lists:read"], lists=["known"])
    config = {"base_url": live_server.url, "list": "known", "api_key": key, "page_size": 2}
    service.create_exchange(db, settings, SYSTEM, name="peer", type="seawall", list_name="mirror", config=config)
    db.commit()
    assert service.run_sync(factory, settings, "peer").added == 3
    # The source deletes its list: the follower sees every entry retracted.
    lists_service.delete_list(db, SYSTEM, lists_service.get_list(db, "known"))
    db.commit()
    lists_service.retract_deleted(factory, SYSTEM)
    assert service.run_sync(factory, settings, "peer").retired == 3
    assert {status for status, _ in _state(db).values()} == {"retracted"}
    # A new list takes the name: read whole, as a snapshot; only what it holds is live again.
    again = _setup(db, name="known")
    lists_service.add_entries(
        db, SYSTEM, again, [records[1], lists_service.EntryRecord("md5", md5(9), external_id="k9")]
    )
    db.commit()
    third = service.run_sync(factory, settings, "peer")
    assert third.ok and (third.added, third.updated) == (1, 1)
    assert _state(db) == {
        ("md5", md5(0), "k0"): ("retracted", None),
        ("md5", md5(1), "k1"): ("active", None),
        ("md5", md5(2), "k2"): ("retracted", None),
        ("md5", md5(9), "k9"): ("active", None),
    }
    assert _exchange(db, "peer").checkpoint == {"revision": 2, "list_uid": again.uid}


# ---- NCMEC ----------------------------------------------------------------------------------


def test_ncmec_exchange_pages_deletions_updates_errors_and_feedback(
    db: Session, engine: Engine, settings: Settings
) -> None:
    factory = make_sessionmaker(engine)
    _setup(db)
    state = ncmec.FakeNCMEC(
        pages=[
            ncmec.page(
                [
                    ncmec.entry(
                        "image", "img1", 42, "A1", md5=md5(1), sha1=hashlib.sha1(b"1").hexdigest(), pdna="a1,b2"
                    ),
                    ncmec.entry("image", "img2", 43, "B1", md5=md5(2)),
                ],
                [ncmec.entry("video", "vid1", 42, None, md5=md5(3))],
            ),
            ncmec.page([ncmec.entry("image", "img1", 42, "A2", md5=md5(1)), ncmec.deleted("image", "img2")]),
        ]
    )
    with serve(ncmec.make_app(state)) as url:
        config = {"base_url": url, "username": "esp-user", "password": "esp-pass", "start_timestamp": 1_700_000_000}
        service.create_exchange(db, settings, SYSTEM, name="ncmec", type="ncmec", list_name="mirror", config=config)
        db.commit()
        state.fail_page = 1
        failed = service.run_sync(factory, settings, "ncmec")
        ex = _exchange(db, "ncmec")
        # Page 1 is stored with its checkpoint (the next link); page 2's failure is the error.
        assert not failed.ok and failed.added == 4 and "answered 500" in ex.last_error
        assert (
            ex.checkpoint is not None and ex.checkpoint["from"] == 1_700_000_000 and "start=2" in ex.checkpoint["next"]
        )
        state.fail_page = None
        done = service.run_sync(factory, settings, "ncmec")
        assert (done.ok, done.added, done.updated, done.retired) == (True, 0, 1, 1)
        ex = _exchange(db, "ncmec")
        assert ex.checkpoint is not None and ex.checkpoint["next"] == "" and ex.checkpoint["from"] > 1_700_000_000
        assert state.requests[0].startswith("from=2023-11-14T22%3A13%3A20Z&to=")
        assert _state(db) == {
            ("md5", md5(1), "img1"): ("active", "A2"),
            ("sha1", hashlib.sha1(b"1").hexdigest(), "img1"): ("active", "A1"),
            ("md5", md5(2), "img2"): ("retracted", "B1"),
            ("md5", md5(3), "vid1"): ("active", None),
        }
        mirror = lists_service.get_list(db, "mirror")
        [e1] = lists_service.find_entries(db, mirror, md5(1))
        [e3] = lists_service.find_entries(db, mirror, md5(3))
        lists_service.add_opinion(db, SYSTEM, e1, "true_positive")
        lists_service.add_opinion(db, SYSTEM, e3, "false_positive")
        lists_service.add_opinion(db, SYSTEM, e3, "disputed")
        db.commit()
        report = service.run_sync(factory, settings, "ncmec")
        assert (report.feedback_sent, report.feedback_skipped) == (2, 1)
        assert service.run_sync(factory, settings, "ncmec").feedback_sent == 0
        # Wrong password: 401 recorded, the checkpoint kept.
        before = _exchange(db, "ncmec").checkpoint
        service.update_exchange(db, settings, SYSTEM, _exchange(db, "ncmec"), config={"password": "nope"})
        db.commit()
        assert "answered 401" in (service.run_sync(factory, settings, "ncmec").error or "")
        assert _exchange(db, "ncmec").checkpoint == before
    assert [(i, f) for i, f, _ in state.feedback] == [("img1", "md5"), ("vid1", "md5")]
    assert "<affirmative" in state.feedback[0][2]
    assert f"<reasonIds><guid>{ncmec.REASON}</guid></reasonIds>" in state.feedback[1][2]


def test_ncmec_credentials_are_sealed_at_rest_and_still_authenticate(
    db: Session, engine: Engine, settings: Settings
) -> None:
    factory = make_sessionmaker(engine)
    _setup(db)
    state = ncmec.FakeNCMEC(pages=[ncmec.page([ncmec.entry("image", "img1", 42, "A1", md5=md5(1))])])
    with serve(ncmec.make_app(state)) as url:
        config = {"base_url": url, "username": "esp-user", "password": "esp-pass"}
        service.create_exchange(db, settings, SYSTEM, name="ncmec", type="ncmec", list_name="mirror", config=config)
        db.commit()
        stored = _stored_config(db, "ncmec")
        assert "esp-pass" not in stored and "esp-user" in stored
        assert _exchange(db, "ncmec").config["password"].startswith(SEALED)
        report = service.run_sync(factory, settings, "ncmec")
    assert (report.ok, report.added) == (True, 1)  # basic auth with the decrypted password: accepted
    # Under another instance key the sealed password cannot be opened: the sync says so, nothing leaks.
    other = settings.model_copy(update={"secret_key": SecretStr("another-key")})
    with serve(ncmec.make_app(state)):
        failed = service.run_sync(factory, other, "ncmec")
    assert failed.error == "ValueError: stored secret cannot be decrypted: was SEAWALL_SECRET_KEY changed?"


class _Source(BaseHTTPRequestHandler):
    """A list file at /list.csv, and /hop?to=URL redirecting anywhere; every request recorded."""

    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.path.startswith("/hop?to="):
            self.send_response(302)
            self.send_header("location", self.path.split("=", 1)[1])
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = _csv([("md5", md5(1), "A", "")]) if self.path.startswith("/list.csv") else b""
        self.send_response(200 if body else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def source() -> Iterator[str]:
    _Source.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Source)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_exchanges_reach_only_what_the_rules_allow_and_ignore_proxy_settings(
    db: Session,
    engine: Engine,
    settings: Settings,
    source: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = make_sessionmaker(engine)
    _setup(db)
    for name, location in (
        ("direct", f"{source}/list.csv"),
        ("metadata", f"{source}/hop?to=http://169.254.169.254/latest/meta-data/"),
        ("tokened", f"{source}/missing.csv?token=tok-s3cret"),
    ):
        service.create_exchange(
            db, settings, SYSTEM, name=name, type="file", list_name="mirror", config={"location": location}
        )
    db.commit()
    # Without loopback allowed (the default), the source is refused before anything connects.
    public_only = settings.model_copy(update={"fetch_allow_networks": []})
    refused = service.run_sync(factory, public_only, "direct")
    assert refused.error == "FetchRefused: refused: 127.0.0.1 is not a public address"
    assert _Source.seen == []
    # Allowed, but a redirect hop to the metadata address is refused.
    hop = service.run_sync(factory, settings, "metadata")
    assert hop.error == "FetchRefused: refused: 169.254.169.254 is not a public address"
    assert _Source.seen == ["/hop?to=http://169.254.169.254/latest/meta-data/"]
    # Proxy settings in the environment are not read: the request goes to the source itself.
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
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        direct = service.run_sync(factory, settings, "direct")
    finally:
        proxy.shutdown()
    assert (direct.ok, direct.added, proxied) == (True, 1, [])
    # A token in the source's URL stays out of the stored error, the audit log and every log line.
    caplog.set_level(logging.INFO)
    tokened = service.run_sync(factory, settings, "tokened")
    assert tokened.error == f"ExchangeError: GET {source}/missing.csv?token=*** answered 404"
    assert _exchange(db, "tokened").last_error == tokened.error
    assert "/missing.csv?token=tok-s3cret" in _Source.seen
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"GET {source}/missing.csv?token=***" in line for line in logged), logged
    assert not any("tok-s3cret" in line for line in logged)
    assert "tok-s3cret" not in json.dumps([e.details for e in db.scalars(select(AuditEvent))])
    shown = service.status(_exchange(db, "tokened"))["config"]["location"]
    assert shown == f"{source}/missing.csv?token=***"
    # The masked URL sent back unchanged keeps the stored one (as a secret's mask does).
    service.update_exchange(db, settings, SYSTEM, _exchange(db, "tokened"), config={"location": shown})
    db.commit()
    assert _exchange(db, "tokened").config["location"] == f"{source}/missing.csv?token=tok-s3cret"


# ---- StopNCII -------------------------------------------------------------------------------


def test_stopncii_exchange_tokens_withdrawals_keys_and_feedback(
    db: Session, engine: Engine, settings: Settings
) -> None:
    factory = make_sessionmaker(engine)
    _setup(db)
    state = stopncii.FakeStopNCII(
        pages=[
            [stopncii.record("ImagePDQ", PDQ_A), stopncii.record("VideoTMK", "ab" * 10)],
            [stopncii.record("VideoMD5", md5(5)), stopncii.record("ImagePDQ", PDQ_B)],
        ]
    )
    with serve(stopncii.make_app(state)) as url:
        config = {
            "base_url": f"{url}/v1",
            "subscription_key": "sub-key",
            "fetch_function_key": "fetch-key",
            "feedback_function_key": "feedback-key",
            "page_size": 2,
        }
        service.create_exchange(db, settings, SYSTEM, name="ncii", type="stopncii", list_name="mirror", config=config)
        db.commit()
        first = service.run_sync(factory, settings, "ncii")
        assert (first.ok, first.added, first.batches) == (True, 3, 2)
        assert _exchange(db, "ncii").checkpoint == {"start": 1_700_000_000, "next_page": ""}
        assert state.requests[:2] == [
            {"startTimestamp": "10", "pageSize": "2"},
            {"startTimestamp": "10", "pageSize": "2", "nextPageToken": "tok1"},
        ]
        state.pages = [[stopncii.record("ImagePDQ", PDQ_B, status="Withdrawn")]]
        second = service.run_sync(factory, settings, "ncii")
        assert (second.added, second.retired) == (0, 1)
        assert state.requests[-1] == {"startTimestamp": "1700000000", "pageSize": "2"}
        assert _state(db) == {
            ("pdq", PDQ_A, ""): ("active", None),
            ("md5", md5(5), ""): ("active", None),
            ("pdq", PDQ_B, ""): ("retracted", None),
        }
        [a] = lists_service.find_entries(db, lists_service.get_list(db, "mirror"), PDQ_A, "pdq")
        lists_service.add_opinion(db, SYSTEM, a, "true_positive")
        db.commit()
        state.pages = [[]]
        assert service.run_sync(factory, settings, "ncii").feedback_sent == 1
        assert service.run_sync(factory, settings, "ncii").feedback_sent == 0
        service.update_exchange(db, settings, SYSTEM, _exchange(db, "ncii"), config={"fetch_function_key": "wrong"})
        db.commit()
        assert "FetchHashes answered 401" in _exchange_error(factory, settings, db, "ncii")
    assert state.feedback == [
        {"count": 1, "hashFeedbacks": [{"hashValue": PDQ_A, "feedbackValue": "Blocked", "tags": []}]}
    ]


def _exchange_error(factory: sessionmaker[Session], settings: Settings, db: Session, name: str) -> str:
    service.run_sync(factory, settings, name)
    return _exchange(db, name).last_error


# ---- resume after kill ----------------------------------------------------------------------


def test_a_sync_killed_midway_resumes_without_duplicates_or_gaps(
    db: Session, engine: Engine, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    factory = make_sessionmaker(engine)
    _setup(db)
    n = 60
    with serve(make_feed_app(n, delay=0.25)) as url:
        config = {"base_url": url, "list": "known", "api_key": "feed-key", "page_size": 5}
        service.create_exchange(db, settings, SYSTEM, name="slow", type="seawall", list_name="mirror", config=config)
        db.commit()
        env = {
            **os.environ,
            "SEAWALL_DATABASE_URL": database_url,
            "SEAWALL_HOME": str(tmp_path / "home"),
            "SEAWALL_SECRET_KEY": settings.effective_secret_key(),  # the key the API key was sealed with
            "SEAWALL_FETCH_ALLOW_NETWORKS": '["127.0.0.0/8"]',
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "seawall.lists.exchanges.cli", "sync", "slow"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:  # kill it once a few pages are stored, long before the end
                revision = (_exchange(db, "slow").checkpoint or {}).get("revision", 0)
                if revision >= 15 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            proc.kill()
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        killed_at = (_exchange(db, "slow").checkpoint or {}).get("revision", 0)
        total = n + len(range(0, n, 7))
        assert 15 <= killed_at < total
        assert _exchange(db, "slow").running_since is not None  # the dead worker's lease, taken over below
        report = service.run_sync(factory, settings, "slow")
    assert report.ok and _exchange(db, "slow").checkpoint == {"revision": total}
    assert _state(db) == {
        ("md5", md5(i), f"src-{i}"): ("retracted" if i % 7 == 0 else "active", None) for i in range(n)
    }
    hl = lists_service.get_list(db, "mirror")
    adds = db.execute(
        select(ListChange.entry_id, func.count())
        .where(ListChange.list_id == hl.id, ListChange.op == "add")
        .group_by(ListChange.entry_id)
    ).all()
    assert len(adds) == n and {c for _, c in adds} == {1}
    revisions = db.scalars(
        select(ListChange.revision).where(ListChange.list_id == hl.id).order_by(ListChange.revision)
    ).all()
    assert revisions == list(range(1, len(revisions) + 1))


# ---- scheduling, lease, API, CLI ------------------------------------------------------------


def test_scheduling_due_and_lease(db: Session, engine: Engine, settings: Settings, tmp_path: Path) -> None:
    factory = make_sessionmaker(engine)
    _setup(db)
    path = tmp_path / "l.csv"
    path.write_bytes(_csv([("md5", md5(1), "A", "")]))
    for name, enabled in (("a", True), ("b", True), ("off", False)):
        service.create_exchange(
            db,
            settings,
            SYSTEM,
            name=name,
            type="file",
            list_name="mirror",
            config={"location": str(path)},
            interval_minutes=30,
            enabled=enabled,
        )
    db.commit()
    queued: list[str] = []
    assert enqueue_due(factory, queued.append) == ["a", "b"]  # never run: due; disabled: never
    assert service.run_sync(factory, settings, "a").ok
    now = utcnow()
    assert enqueue_due(factory, queued.append) == ["b"]
    assert [e.name for e in service.due_exchanges(db, now + timedelta(minutes=31))] == ["a", "b"]
    # A live lease (this process holds it) blocks a second run; a dead holder's lease does not.
    b = _exchange(db, "b")
    b.running_since, b.lease_owner = now, f"{os.uname().nodename}:{os.getpid()}:x"
    db.commit()
    with pytest.raises(service.ExchangeBusy, match="running already"):
        service.run_sync(factory, settings, "b")
    assert "b" not in [e.name for e in service.due_exchanges(db)]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    b = _exchange(db, "b")
    b.lease_owner = f"{os.uname().nodename}:{dead.stdout.strip()}:x"
    db.commit()
    assert service.run_sync(factory, settings, "b").ok


def test_api_and_cli_mask_secrets(
    client: TestClient,
    db: Session,
    engine: Engine,
    settings: Settings,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from seawall.config import reset_settings
    from seawall.lists.exchanges.cli import exchanges_app

    _setup(db)
    admin = {"authorization": f"Bearer {_bearer(db, 'admin', ['admin', 'lists:write'])}"}
    reader = {"authorization": f"Bearer {_bearer(db, 'partner', ['lists:read'])}"}
    secret = "s3cr3t-password-value"
    closed = f"http://127.0.0.1:{free_port()}/hashsharing"  # nothing listens: the sync fails to connect
    config = {"base_url": closed, "username": "u", "password": secret}
    body = {"name": "n", "type": "ncmec", "list": "mirror", "config": config}
    created = client.post("/v1/exchanges", json=body, headers=admin)
    assert created.status_code == 201 and created.json()["config"]["password"] == MASK
    assert secret not in created.text
    assert client.post("/v1/exchanges", json=body, headers=admin).status_code == 409
    bad = client.post(
        "/v1/exchanges", json={**body, "name": "m", "config": {"base_url": closed, "username": "u"}}, headers=admin
    )
    assert bad.status_code == 422 and "password: Field required" in bad.json()["detail"]
    assert client.get("/v1/exchanges", headers=reader).status_code == 403
    listed = client.get("/v1/exchanges", headers=admin)
    assert [e["name"] for e in listed.json()] == ["n"] and secret not in listed.text
    # Sending the mask back keeps the secret; a new value replaces it.
    patched = client.patch(
        "/v1/exchanges/n", json={"config": {"password": MASK, "username": "v"}, "interval_minutes": 5}, headers=admin
    )
    assert patched.status_code == 200 and patched.json()["interval_minutes"] == 5
    db.rollback()  # a fresh snapshot: the sync committed through other sessions
    assert _opened(settings, service.get_exchange(db, "n"))["password"] == secret
    assert service.get_exchange(db, "n").config["username"] == "v"
    assert secret not in _stored_config(db, "n")
    synced = client.post("/v1/exchanges/n/sync?wait=true", headers=admin).json()
    assert synced["ok"] is False and "ConnectError" in synced["error"]
    assert client.get("/v1/exchanges/n", headers=admin).json()["last_error"] == synced["error"]
    assert client.post("/v1/exchanges/nope/sync?wait=true", headers=admin).status_code == 404
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_HOME", str(settings.home))
    monkeypatch.setenv("SEAWALL_SECRET_KEY", settings.effective_secret_key())
    reset_settings()
    try:
        runner = CliRunner()
        shown = runner.invoke(exchanges_app, ["show", "n", "--json"])
        listed_cli = runner.invoke(exchanges_app, ["list"])
        created_cli = runner.invoke(
            exchanges_app,
            [
                "create",
                "f",
                "--type",
                "stopncii",
                "--list",
                "mirror",
                "--config",
                "subscription_key=abc123",
                "--config",
                "fetch_function_key=def456",
            ],
        )
        shown_f = runner.invoke(exchanges_app, ["show", "f"])
    finally:
        reset_settings()
    assert shown.exit_code == 0 and secret not in shown.output and f'"password": "{MASK}"' in shown.output
    assert listed_cli.exit_code == 0 and secret not in listed_cli.output
    assert created_cli.exit_code == 0, created_cli.output
    assert shown_f.exit_code == 0 and "abc123" not in shown_f.output and "def456" not in shown_f.output
    db.rollback()  # a fresh snapshot: the sync committed through other sessions
    assert _opened(settings, service.get_exchange(db, "f"))["subscription_key"] == "abc123"
    assert "abc123" not in _stored_config(db, "f") and "def456" not in _stored_config(db, "f")


class MyHotlineExchange(FileExchange):
    name = "myhotline"


def test_registry_lists_builtins_and_plugins_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from seawall import plugins
    from seawall.lists.exchanges import base

    plugin = EntryPoint("myhotline", "tests.lists.test_exchanges:MyHotlineExchange", base.ENTRY_POINT_GROUP)
    misnamed = EntryPoint("other", "seawall.lists.exchanges.file:FileExchange", base.ENTRY_POINT_GROUP)
    clash = EntryPoint("file", "seawall.lists.exchanges.file:FileExchange", base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [plugin, misnamed, clash])
    base.reload_exchange_types()
    try:
        # The plugin's class must call itself by its entry point's name; a built-in name is never replaced.
        assert list(base.exchange_types()) == ["file", "seawall", "ncmec", "stopncii", "sample", "myhotline"]
        assert base.get_exchange_type("myhotline") is MyHotlineExchange
        with pytest.raises(KeyError, match="unknown exchange type 'other'"):
            base.get_exchange_type("other")
    finally:
        monkeypatch.undo()
        base.reload_exchange_types()
    assert base.get_exchange_type("NCMEC").secret_fields() == {"password"}
    assert base.get_exchange_type("stopncii").secret_fields() == {
        "subscription_key",
        "fetch_function_key",
        "feedback_function_key",
    }


def test_migration_0007_seals_the_secrets_of_existing_exchanges(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seawall import migrate
    from seawall.config import reset_settings
    from seawall.db import make_engine

    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0004")
    ncmec_config = {"base_url": "http://127.0.0.1:9", "username": "esp-user", "password": "esp-pass"}
    ncii_config = {"subscription_key": "sub-key", "fetch_function_key": "fetch-key", "feedback_function_key": None}
    plugin_config = {"token": "plugin-token"}
    now = utcnow().replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO lists (id, name, kind, description, source, enabled, allowlist, thresholds, dihedral,"
                " revision, created_at, created_by) VALUES (1, 'mirror', 'hash', '', '', true, false, '{}', false,"
                " 0, :now, 'test')"
            ),
            {"now": now},
        )
        for i, (kind, config) in enumerate(
            (("ncmec", ncmec_config), ("stopncii", ncii_config), ("gone-plugin", plugin_config)), 1
        ):
            connection.execute(
                text(
                    "INSERT INTO exchanges (id, name, type, list_id, config, enabled, interval_minutes, last_error,"
                    " last_added, last_updated, last_retired, lease_owner, created_at, created_by) VALUES"
                    " (:id, :name, :type, 1, :config, true, 60, '', 0, 0, 0, '', :now, 'test')"
                ),
                {"id": i, "name": f"x{i}", "type": kind, "config": json.dumps(config), "now": now},
            )

    def stored() -> dict[str, dict[str, object]]:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT name, config FROM exchanges ORDER BY id")).all()
        return {name: json.loads(c) if isinstance(c, str) else c for name, c in rows}

    key = "migration-test-key"
    monkeypatch.setenv("SEAWALL_SECRET_KEY", key)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    reset_settings()
    try:
        migrate.upgrade(engine, "0007")
        sealed = stored()
        raw = json.dumps(sealed)
        assert "esp-pass" not in raw and "sub-key" not in raw and "fetch-key" not in raw
        assert sealed["x3"] == plugin_config  # a type nobody knows any more: left as it was
        settings = Settings(home=tmp_path / "home", secret_key=key)
        assert open_secrets(settings, get_exchange_type("ncmec"), sealed["x1"]) == ncmec_config
        assert open_secrets(settings, get_exchange_type("stopncii"), sealed["x2"]) == ncii_config
        migrate.downgrade(engine, "0004")
        assert stored() == {"x1": ncmec_config, "x2": ncii_config, "x3": plugin_config}
    finally:
        reset_settings()
        engine.dispose()
