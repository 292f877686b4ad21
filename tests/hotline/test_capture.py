"""Capture: a test host on 127.0.0.1 serves a page with benign generated media in every way a page
can show them; the capture finds exactly those, hashes, matches, keeps them encrypted with blurred
thumbnails, inherits earlier assessments, survives a crash, and re-checks for notices."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import io
import ipaddress
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM, Principal, cli_principal
from seawall.config import Settings, reset_settings
from seawall.db import make_sessionmaker, utcnow
from seawall.evidence import service as evidence
from seawall.evidence.models import EvidenceObject
from seawall.fetch import FetchUnreachable, SafeFetcher
from seawall.hotline import assessment, capture, intake, pages
from seawall.hotline.models import Assessment, Capture, Case, CaseItem, Item
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file
from servers import child_environment, free_port
from webhost import Host, encode, jpeg, mp4, png, served_host, sha


@pytest.fixture
def host() -> Iterator[Host]:
    with served_host() as app:
        yield app


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def capture_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"fetch_allow_networks": ["127.0.0.1/32"], "thumbnail_size": 64, "fetch_timeout_seconds": 10.0}
    )


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Captures run in the test (a test wanting the queue says so); the process's indexes are
    forgotten afterwards (each test has a database of its own)."""
    scheduled: list[int] = []
    monkeypatch.setattr(capture, "scheduler", scheduled.append)
    yield scheduled
    capture.close_indexes()


def new_case(factory: sessionmaker[Session], settings: Settings, url: str) -> int:
    with factory() as session:
        done = intake.submit(session, settings, SYSTEM, intake.ReportIn(channel="partner", url=url))
        session.commit()
        return done.case.id


def case_items(session: Session, case_id: int) -> list[tuple[str, str, str]]:
    rows = session.execute(
        select(Item.sha256, CaseItem.found_as, CaseItem.media_url)
        .join(CaseItem, CaseItem.item_id == Item.id)
        .where(CaseItem.case_id == case_id)
    ).all()
    return sorted((s, f, u) for s, f, u in rows)


def edge_energy(image: Image.Image) -> float:
    a = np.asarray(image.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())


# ---------------------------------------------------------------- the whole page


@dataclass
class Gallery:
    """The test page: what it shows, and what the capture must keep of it."""

    media: dict[str, bytes] = field(default_factory=dict)
    expected: list[tuple[str, str, str]] = field(default_factory=list)  # (sha256, found_as, media_url)


def build_gallery(host: Host) -> Gallery:
    g = Gallery()
    g.media = {
        "/img/a.png": png(1),
        "/img/b.png": png(2),
        "/img/c.png": png(3),
        "/img/d.jpg": jpeg(4),
        "/img/poster.png": png(5),
        "/media/clip.mp4": mp4(6),
        "/img/full.jpg": jpeg(7, 200, 150),
        "/img/style.png": png(8),
        "/img/inline.png": png(9),
        "/view?id=1": png(10, 180, 120),  # served as text/html: the bytes decide
        "/img/thumb.png": png(11, 60, 40),
    }
    inline = png(12, 48, 48)
    for path, body in g.media.items():
        host.file(path, body, "text/html" if path.startswith("/view") else "application/octet-stream")
    host.file("/img/spacer.gif", encode(Image.new("P", (1, 1)), "GIF"))
    host.file("/img/notes.png", b"benign notes, not a picture at all")
    data_url = "data:image/png;base64," + base64.b64encode(inline).decode()
    host.page(
        "/page.html",
        f"""<!doctype html><html><head><title>Benign gallery</title>
        <style>/* a comment */ @media screen {{ .hero {{ background-image: url("/img/style.png"); }} }}</style></head>
        <body>
        <img src="/img/a.png" alt="meadow">
        <img srcset="/img/b.png 1x, /img/c.png 2x" alt="lake">
        <picture><source srcset="/img/d.jpg"><img src="/img/a.png"></picture>
        <video src="/media/clip.mp4" poster="/img/poster.png"></video>
        <a href="/img/full.jpg">the full-size picture</a>
        <div style="background: #fff url('/img/inline.png') no-repeat"></div>
        <a href="/about.html">about this site</a>
        <a href="/view?id=1"><img src="/img/thumb.png"></a>
        <img src="/img/spacer.gif"><img src="/img/missing.png"><img src="/img/notes.png">
        <img src="http://169.254.169.254/latest/meta-data/x.png"><img src="http://10.9.8.7/private.png">
        <img src="{data_url}">
        </body></html>""",
        **{"set-cookie": "session=secret-cookie-value", "x-served-by": "benign-test-host"},
    )
    host.routes["/go"] = (302, {"location": "/page.html"}, b"")
    for path, found_as in [
        ("/img/a.png", "img"),
        ("/img/b.png", "srcset"),
        ("/img/c.png", "srcset"),
        ("/img/d.jpg", "source"),
        ("/media/clip.mp4", "video"),
        ("/img/poster.png", "video"),
        ("/img/full.jpg", "link"),
        ("/img/style.png", "css"),
        ("/img/inline.png", "css"),
        ("/view?id=1", "link"),
        ("/img/thumb.png", "img"),
    ]:
        g.expected.append((sha(g.media[path]), found_as, host.url + path))
    g.expected.append((sha(inline), "img", f"data:image/png;base64,… ({len(inline)} bytes)"))
    g.expected.sort()
    return g


def test_a_page_is_captured_with_every_kind_of_media_matched_and_kept_encrypted(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings
) -> None:
    settings = capture_settings
    gallery = build_gallery(host)
    with factory() as session:
        stand_ins = lists_service.create_list(session, SYSTEM, name="benign-standins", kind="hash")
        pdq_of_d = hash_file_bytes(png(4))["pdq"]  # the PNG original: the page serves a JPEG of it
        lists_service.add_entries(
            session,
            SYSTEM,
            stand_ins,
            [
                EntryRecord("md5", hashlib.md5(gallery.media["/img/a.png"]).hexdigest(), category="stand-in"),
                EntryRecord("pdq", pdq_of_d, category="stand-in"),
            ],
        )
        session.commit()
    case_id = new_case(factory, settings, host.url + "/go")

    result = capture.run_capture(factory, settings, case_id)

    assert (result.state, result.http_status, result.final_url) == ("done", 200, host.url + "/page.html")
    with factory() as session:
        assert case_items(session, case_id) == gallery.expected
        items = {i.sha256: i for i in session.scalars(select(Item))}
        assert len(items) == 12 and sorted(result.items) == sorted(i.id for i in items.values())
        assert sorted(result.new_items) == sorted(result.items) and result.inherited == []
        a, d, clip = (items[sha(gallery.media[p])] for p in ("/img/a.png", "/img/d.jpg", "/media/clip.mp4"))
        assert [(m["list"], m["signal_type"], m["distance"], m["category"]) for m in a.matches] == [
            ("benign-standins", "md5", 0, "stand-in")
        ]
        [d_match] = d.matches
        assert (d_match["list"], d_match["signal_type"], d_match["value"]) == ("benign-standins", "pdq", pdq_of_d)
        assert 0 < d_match["distance"] <= 31  # re-encoded, still the same picture
        assert [i.matches for i in items.values() if i not in (a, d)] == [[]] * 10
        assert (a.media, a.mime, a.size, a.state, a.pdq_quality) == (
            "image",
            "image/png",
            len(gallery.media["/img/a.png"]),
            "to_grade",
            a.pdq_quality,
        )
        assert a.pdq is not None and a.md5 == hashlib.md5(gallery.media["/img/a.png"]).hexdigest()
        assert (clip.media, clip.mime, clip.pdq) == ("video", "video/mp4", None)

        # Originals round-trip out of the evidence store; thumbnails are greyscale and blurred.
        for body in gallery.media.values():
            item = items[sha(body)]
            assert evidence.get(session, settings, item.evidence_id or "") == body
            stored = evidence.get_object(session, item.evidence_id or "")
            assert (stored.purpose, stored.subject) == ("capture", f"item:{item.id}")
        thumb = Image.open(io.BytesIO(evidence.get(session, settings, a.thumbnail_id or "")))
        assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "L", (64, 48))
        original = benign_image(1, 120, 90).convert("L").resize((64, 48), Image.Resampling.LANCZOS)
        assert edge_energy(thumb) < 0.35 * edge_energy(original)
        strip = Image.open(io.BytesIO(evidence.get(session, settings, clip.thumbnail_id or "")))
        assert (strip.mode, strip.size) == ("L", (4 * 64, 48))  # four key frames, side by side
        assert evidence.get_object(session, clip.thumbnail_id or "").media_type == "image/jpeg"
        assert session.scalar(select(func.count()).select_from(EvidenceObject)) == 24

        record = session.scalars(select(Capture).where(Capture.case_id == case_id)).one()
        assert (record.state, record.purpose, record.http_status, record.address, record.tls) == (
            "done",
            "initial",
            200,
            "127.0.0.1",
            None,
        )
        assert (record.final_url, record.redirects) == (host.url + "/page.html", [host.url + "/page.html"])
        assert record.headers["x-served-by"] == "benign-test-host" and "set-cookie" not in record.headers
        assert record.fetched_at is not None and record.finished_at is not None
        assert (record.media_found, sorted(record.media_sha256)) == (12, sorted(e[0] for e in gallery.expected))
        assert sorted((s["url"], s["found_as"], s["reason"]) for s in record.skipped) == sorted(
            [
                (host.url + "/img/spacer.gif", "img", "too small to assess (1x1 pixels)"),
                (host.url + "/img/missing.png", "img", "HTTP 404"),
                (host.url + "/img/notes.png", "img", "not a supported image or video format"),
                (
                    "http://169.254.169.254/latest/meta-data/x.png",
                    "img",
                    "refused: 169.254.169.254 is not a public address",
                ),
                ("http://10.9.8.7/private.png", "img", "refused: 10.9.8.7 is not a public address"),
            ]
        )
        case = session.get(Case, case_id)
        assert case is not None
        assert (case.state, case.version, case.hosting_ip) == ("captured", 2, "127.0.0.1")
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "case.capture")).one()
        assert (event.object_id, event.details["state"], sorted(event.details["items"])) == (
            str(case_id),
            "done",
            sorted(result.items),
        )
    fetched = [path for path, _ in host.requests]
    assert "/about.html" not in fetched  # a link that is not media-like and wraps no image: not fetched
    referers = {path: headers.get("referer") for path, headers in host.requests}
    assert referers["/img/a.png"] == host.url + "/page.html"
    # Nothing of any original or thumbnail is on disk in plaintext (the evidence folder, or anywhere in SEAWALL_HOME).
    on_disk = [p.read_bytes() for p in settings.home.rglob("*") if p.is_file()]
    assert on_disk and not any(body[-64:] in blob for body in gallery.media.values() for blob in on_disk)

    again = capture.run_capture(factory, settings, case_id)  # captured again: nothing doubles
    assert (again.state, sorted(again.items), again.new_items) == ("done", sorted(result.items), [])
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 12
        assert session.scalar(select(func.count()).select_from(CaseItem)) == 12
        assert session.scalar(select(func.count()).select_from(EvidenceObject)) == 24
    assert len([p for p in (settings.home / "evidence").rglob("*") if p.is_file()]) == 24


def hash_file_bytes(data: bytes) -> dict[str, Any]:
    from seawall.media.memfile import memory_file

    with memory_file(data) as path:
        return hash_file(path, dihedral=True)


def test_direct_media_gone_pages_and_refusals(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings
) -> None:
    settings = capture_settings
    picture = jpeg(30, 160, 120)
    host.file("/direct", picture, "text/plain")  # the content type lies; the bytes are an image
    host.routes["/removed"] = (410, {"content-type": "text/html"}, b"gone")
    host.routes["/broken"] = (500, {"content-type": "text/html"}, b"oops")
    closed = f"http://127.0.0.1:{free_port()}/nothing-listens-here"
    cases = {
        name: new_case(factory, settings, url)
        for name, url in [
            ("direct", host.url + "/direct"),
            ("missing", host.url + "/missing"),
            ("removed", host.url + "/removed"),
            ("refused", closed),
            ("private", "http://10.1.2.3/page"),
            ("broken", host.url + "/broken"),
        ]
    }
    results = {name: capture.run_capture(factory, settings, case_id) for name, case_id in cases.items()}
    assert {n: (r.state, r.http_status) for n, r in results.items()} == {
        "direct": ("done", 200),
        "missing": ("gone", 404),
        "removed": ("gone", 410),
        "refused": ("gone", None),
        "private": ("failed", None),
        "broken": ("failed", 500),
    }
    assert results["refused"].error.startswith(f"cannot fetch {closed}: ")
    assert results["private"].error == "refused: 10.1.2.3 is not a public address"
    assert results["broken"].error == "the page answered HTTP 500"
    with factory() as session:
        assert case_items(session, cases["direct"]) == [(sha(picture), "direct", host.url + "/direct")]
        states = {n: session.get(Case, c).state for n, c in cases.items()}  # type: ignore[union-attr]
        assert states == {
            "direct": "captured",
            "missing": "captured",
            "removed": "captured",
            "refused": "captured",
            "private": "open",
            "broken": "open",
        }
        captures = {c.case_id: c for c in session.scalars(select(Capture))}
        assert captures[cases["missing"]].state == "gone" and captures[cases["missing"]].media_found == 0
        assert captures[cases["private"]].error == "refused: 10.1.2.3 is not a public address"


def test_fetch_reports_unresolvable_names_as_unreachable_and_records_tls(
    tmp_path: Path, factory: sessionmaker[Session], capture_settings: Settings
) -> None:
    with pytest.raises(FetchUnreachable, match=re.escape("cannot resolve 'nowhere.test'")):
        SafeFetcher(resolver=lambda host, port: []).fetch("http://nowhere.test/")

    ca_pem, server_context = _test_ca(tmp_path)
    picture = png(40)
    with _https_server(
        server_context, {"/": (b'<img src="/p.png">', "text/html"), "/p.png": (picture, "image/png")}
    ) as url:
        trust = ssl.create_default_context(cadata=ca_pem)
        fetched = SafeFetcher(allow_networks=["127.0.0.1/32"], verify=trust).fetch(url + "/")
        assert fetched.tls is not None
        assert (fetched.tls["subject"], fetched.tls["issuer"], fetched.tls["serial"], fetched.tls["san"]) == (
            "CN=benign.test.host",
            "CN=Seawall Test CA",
            "2a",
            ["127.0.0.1"],
        )
        assert fetched.tls["not_before"] == "2026-01-01T00:00:00+00:00"
        assert fetched.tls["not_after"] == "2036-01-01T00:00:00+00:00"
        assert fetched.tls["protocol"] in ("TLSv1.2", "TLSv1.3") and len(fetched.tls["sha256"]) == 64
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):  # never without verification
            SafeFetcher(allow_networks=["127.0.0.1/32"]).fetch(url + "/")

        case_id = new_case(factory, capture_settings, url + "/")
        result = capture.run_capture(factory, capture_settings, case_id, verify=trust)
        assert result.state == "done"
        with factory() as session:
            record = session.scalars(select(Capture)).one()
            assert record.tls is not None and record.tls["issuer"] == "CN=Seawall Test CA"
            assert case_items(session, case_id) == [(sha(picture), "img", url + "/p.png")]


def _test_ca(tmp_path: Path) -> tuple[str, ssl.SSLContext]:
    """A throwaway CA and a certificate it signed for 127.0.0.1 (test only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    start, end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2036, 1, 1, tzinfo=dt.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Seawall Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "benign.test.host")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(42)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    chain, key = tmp_path / "host.pem", tmp_path / "host.key"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    return ca.public_bytes(serialization.Encoding.PEM).decode(), context


class _https_server:
    """An https server on 127.0.0.1 in a thread (http.server wrapped in TLS)."""

    def __init__(self, context: ssl.SSLContext, routes: dict[str, tuple[bytes, str]]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, kind = routes.get(self.path, (b"not found", "text/plain"))
                self.send_response(200 if self.path in routes else 404)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- inheritance


ANALYST = Principal(kind="user", name="analyst-a", scopes=frozenset({"review"}))
SENIOR = Principal(kind="user", name="senior-b", scopes=frozenset({"review", "qa", "lists:write"}))


def confirm(session: Session, settings: Settings, item_id: int) -> int:
    """An analyst's csam assessment of an item, confirmed by QA, through the assessment service (so its
    hashes reach the hotline's hash list, where capture looks near copies up)."""
    item = session.get(Item, item_id)
    assert item is not None
    findings = assessment.AssessmentIn(outcome="csam", category="C", age_band="14-15", sex="unidentified")
    saved = assessment.assess_item(session, settings, ANALYST, item.id, item.version, findings)
    session.commit()
    assessment.qa(session, settings, SENIOR, saved.assessment.id, "confirm", "")
    session.commit()
    return saved.assessment.id


def test_already_assessed_content_is_inherited_never_queued_again(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings
) -> None:
    settings = capture_settings
    meadow, lake = png(21, 160, 120), png(22, 160, 120)
    host.file("/1/meadow.png", meadow)
    host.file("/1/lake.png", lake)
    host.page("/first.html", '<img src="/1/meadow.png"><img src="/1/lake.png">')
    first = capture.run_capture(factory, settings, new_case(factory, settings, host.url + "/first.html"))
    with factory() as session:
        graded = session.scalars(select(Item).where(Item.sha256 == sha(meadow))).one()
        assessment_id = confirm(session, settings, graded.id)

    recompressed = jpeg(21, 160, 120, quality=80)  # the same picture, other bytes
    smaller = encode(benign_image(21, 160, 120).resize((150, 112), Image.Resampling.LANCZOS), "PNG")
    fresh = png(23, 160, 120)
    for path, body in [("/2/a.jpg", recompressed), ("/2/b.png", meadow), ("/2/c.png", fresh), ("/2/d.png", smaller)]:
        host.file(path, body)
    host.page("/second.html", "".join(f'<img src="/2/{n}">' for n in ("a.jpg", "b.png", "c.png", "d.png")))
    second_case = new_case(factory, settings, host.url + "/second.html")
    second = capture.run_capture(factory, settings, second_case)

    with factory() as session:
        by_sha = {i.sha256: i for i in session.scalars(select(Item))}
        assert len(by_sha) == 5  # meadow, lake, the JPEG, the smaller one, the fresh one
        assert (by_sha[sha(meadow)].state, by_sha[sha(meadow)].assessment_id) == ("graded", assessment_id)
        for copy in (recompressed, smaller):  # each gets an assessment of its own, copied from the analyst's
            heir = session.get(Assessment, by_sha[sha(copy)].assessment_id)
            assert by_sha[sha(copy)].state == "inherited" and heir is not None
            assert (heir.inherited_from, heir.outcome, heir.category, heir.state) == (
                assessment_id,
                "csam",
                "C",
                "confirmed",
            )
        assert (by_sha[sha(fresh)].state, by_sha[sha(fresh)].assessment_id) == ("to_grade", None)
        assert sorted(second.inherited) == sorted([by_sha[sha(recompressed)].id, by_sha[sha(smaller)].id])
        assert by_sha[sha(meadow)].id in second.items and by_sha[sha(meadow)].id not in second.new_items
        assert len(case_items(session, second_case)) == 4
        to_grade = session.scalars(select(Item.sha256).where(Item.state == "to_grade")).all()
        assert sorted(to_grade) == sorted([sha(lake), sha(fresh)])
    assert first.inherited == []


# ---------------------------------------------------------------- crash and re-run


def test_a_capture_that_crashes_midway_is_run_again_without_duplicates(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = capture_settings
    pictures = {f"/p{n}.png": png(50 + n) for n in range(4)}
    for path, body in pictures.items():
        host.file(path, body)
    host.page("/four.html", "".join(f'<img src="{p}">' for p in pictures))
    case_id = new_case(factory, settings, host.url + "/four.html")

    keep = capture._keep_item
    calls: list[int] = []

    def crash_on_third(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("worker killed after the second item")
        return keep(*args, **kwargs)

    monkeypatch.setattr(capture, "_keep_item", crash_on_third)
    with pytest.raises(RuntimeError, match="worker killed"):
        capture.run_capture(factory, settings, case_id)
    with factory() as session:
        crashed = session.scalars(select(Capture)).one()
        assert (crashed.state, crashed.error) == ("failed", "RuntimeError: worker killed after the second item")
        assert session.scalar(select(func.count()).select_from(Item)) == 2
        assert session.get(Case, case_id).state == "open"  # type: ignore[union-attr]

    # A crash between encrypting and recording: the files written are orphans, never duplicates.
    monkeypatch.setattr(capture, "_keep_item", keep)
    record = evidence.record
    recorded: list[int] = []

    def crash_recording(session: Session, sealed: evidence.Sealed) -> EvidenceObject:
        recorded.append(1)
        if len(recorded) == 1:
            raise RuntimeError("worker killed while recording")
        return record(session, sealed)

    monkeypatch.setattr(evidence, "record", crash_recording)
    with pytest.raises(RuntimeError, match="worker killed while recording"):
        capture.run_capture(factory, settings, case_id)
    monkeypatch.setattr(evidence, "record", record)

    result = capture.run_capture(factory, settings, case_id)
    assert result.state == "done" and len(result.items) == 4
    with factory() as session:
        items = session.scalars(select(Item)).all()
        assert sorted(i.sha256 for i in items) == sorted(sha(b) for b in pictures.values())
        assert session.scalar(select(func.count()).select_from(CaseItem)) == 4
        assert session.scalar(select(func.count()).select_from(EvidenceObject)) == 8
        assert all(i.evidence_id and i.thumbnail_id for i in items)
        for i in items:
            assert evidence.get(session, settings, i.evidence_id or "") in pictures.values()
        assert [c.state for c in session.scalars(select(Capture).order_by(Capture.id))] == ["failed", "failed", "done"]
        assert session.get(Case, case_id).state == "captured"  # type: ignore[union-attr]
        files = [p for p in (settings.home / "evidence").rglob("*") if p.is_file()]
        assert len(files) == 10  # the 8 recorded, and the crashed attempt's 2
        for path in files:
            os.utime(path, (time.time() - 7200, time.time() - 7200))
        assert evidence.sweep(session, settings) == 2
    assert len([p for p in (settings.home / "evidence").rglob("*") if p.is_file()]) == 8


def test_two_captures_showing_the_same_picture_at_once_keep_it_once(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings
) -> None:
    shared = png(65, 160, 120)
    host.file("/shared.png", shared)
    for n in range(2):
        host.file(f"/own{n}.png", png(66 + n))
        host.page(f"/c{n}.html", f'<img src="/shared.png"><img src="/own{n}.png">')
    cases = [new_case(factory, capture_settings, f"{host.url}/c{n}.html") for n in range(2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: capture.run_capture(factory, capture_settings, c), cases))
    assert [r.state for r in results] == ["done", "done"]
    with factory() as session:
        item = session.scalars(select(Item).where(Item.sha256 == sha(shared))).one()
        assert all(item.id in r.items for r in results)
        assert session.scalar(select(func.count()).select_from(Item)) == 3
        assert session.scalar(select(func.count()).select_from(CaseItem)) == 4
        stored = session.scalars(select(EvidenceObject).where(EvidenceObject.subject == f"item:{item.id}")).all()
        assert sorted(o.purpose for o in stored) == ["capture", "thumbnail"]
    assert len([p for p in (capture_settings.home / "evidence").rglob("*") if p.is_file()]) == 6


def test_a_running_capture_holds_the_case_until_its_time_is_up(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings
) -> None:
    host.file("/one.png", png(60))
    host.page("/one.html", '<img src="/one.png">')
    case_id = new_case(factory, capture_settings, host.url + "/one.html")
    with factory() as session:
        session.add(Capture(case_id=case_id, state="running", started_at=utcnow()))
        session.commit()
    busy = capture.run_capture(factory, capture_settings, case_id)
    assert (busy.state, busy.capture_id, busy.error) == ("busy", None, "another capture of this case is running")
    with factory() as session:
        stale = session.scalars(select(Capture)).one()
        stale.started_at = utcnow() - dt.timedelta(seconds=capture_settings.capture_timeout_seconds + 301)
        session.commit()
    done = capture.run_capture(factory, capture_settings, case_id)
    assert done.state == "done" and len(done.items) == 1
    with factory() as session:
        first, second = session.scalars(select(Capture).order_by(Capture.id)).all()
        assert (first.state, first.error) == ("failed", "interrupted: the capture stopped before it finished")
        assert second.state == "done"


def test_limits_on_count_and_bytes(host: Host, factory: sessionmaker[Session], capture_settings: Settings) -> None:
    big = png(70, 400, 300)
    for n in range(5):
        host.file(f"/s{n}.png", png(80 + n))
    host.file("/big.png", big)
    host.page("/many.html", '<img src="/big.png">' + "".join(f'<img src="/s{n}.png">' for n in range(5)))
    settings = capture_settings.model_copy(update={"capture_max_media": 3, "capture_max_media_bytes": len(big) - 1})
    result = capture.run_capture(factory, settings, new_case(factory, settings, host.url + "/many.html"))
    assert len(result.items) == 2
    assert [(s["url"], s["reason"]) for s in result.skipped] == [
        (host.url + "/big.png", f"refused: the body is over the {len(big) - 1}-byte limit"),
        ("", "3 more not fetched: over the limit of 3"),
    ]
    tight = capture_settings.model_copy(update={"capture_max_bytes": 1})
    starved = capture.run_capture(factory, tight, new_case(factory, tight, host.url + "/s0.png"))
    assert (starved.state, starved.error) == ("failed", "refused: the body is over the 1-byte limit")


# ---------------------------------------------------------------- re-checks


def test_recheck_compares_the_content_and_adds_nothing(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings
) -> None:
    settings = capture_settings
    one, two = png(90, 160, 120), png(91, 160, 120)
    host.file("/r/one.png", one)
    host.file("/r/two.png", two)
    host.page("/r.html", '<img src="/r/one.png"><img src="/r/two.png">')
    case_id = new_case(factory, settings, host.url + "/r.html")
    initial = capture.run_capture(factory, settings, case_id)
    one_id, two_id = initial.items

    still = capture.run_capture(factory, settings, case_id, purpose="recheck")
    assert (still.state, sorted(still.present_items), still.content_gone()) == ("done", [one_id, two_id], False)

    host.file("/r/two.png", jpeg(91, 160, 120, quality=70))  # re-encoded by the host: still the same picture
    del host.routes["/r/one.png"]
    partly = capture.run_capture(factory, settings, case_id, purpose="recheck")
    assert (partly.present_items, partly.content_gone(), partly.content_gone([one_id])) == ([two_id], False, True)
    assert partly.skipped == [{"url": host.url + "/r/one.png", "found_as": "img", "reason": "HTTP 404"}]

    host.page("/r.html", "<p>This content has been removed.</p>")
    removed = capture.run_capture(factory, settings, case_id, purpose="recheck")
    assert (removed.state, removed.present_items, removed.content_gone()) == ("done", [], True)

    del host.routes["/r.html"]
    gone = capture.run_capture(factory, settings, case_id, purpose="recheck")
    assert (gone.state, gone.http_status, gone.page_gone, gone.content_gone()) == ("gone", 404, True, True)

    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 2  # nothing new kept
        assert session.scalar(select(func.count()).select_from(EvidenceObject)) == 4
        rechecks = session.scalars(select(Capture).where(Capture.purpose == "recheck").order_by(Capture.id)).all()
        assert [(c.state, c.http_status, len(c.media_sha256)) for c in rechecks] == [
            ("done", 200, 2),
            ("done", 200, 1),
            ("done", 200, 0),
            ("gone", 404, 0),
        ]
        assert rechecks[0].media_sha256 == [sha(one), sha(two)]
        assert session.get(Case, case_id).state == "captured"  # type: ignore[union-attr]


# ---------------------------------------------------------------- parsing


def test_srcset_and_css_are_parsed_as_browsers_read_them() -> None:
    assert pages.srcset_urls("a.png 1x,b.png 2x, c,d.png 480w ,  e(1).png 3x") == [
        "a.png",
        "b.png",
        "c,d.png",
        "e(1).png",
    ]
    assert pages.srcset_urls("f.png, g.png") == ["f.png", "g.png"]
    assert pages.srcset_urls(" ,  ") == []
    assert pages.css_urls(
        "color: red; background: url(x.png) , url( 'y.png' ); background-image:url(\"z.png\")", inline=True
    ) == [
        "x.png",
        "y.png",
        "z.png",
    ]
    sheet = (
        "/* url(no.png) */ .a{background-image:image-set('s1.png' 1x, url(s2.png) 2x)}"
        " @supports (x:y){.b{background:url(n.png)}} .c{content:url(skip.png)}"
    )
    assert pages.css_urls(sheet, inline=False) == ["s1.png", "s2.png", "n.png"]


def test_find_media_resolves_against_base_and_reads_lazy_images() -> None:
    html = """<base href="/media/"><base href="/ignored/">
    <img data-src="lazy.jpg" src="placeholder.gif" src="second.gif">
    <a href="https://cdn.example/x.JPG#top">big</a><a href="page.html">text</a>
    <a href="/g?id=2"><span><img srcset="t.png 2x"></span>
    <a href="javascript:void(0)"><img src="mailto:x@example"></a>
    <video><source src="clip.webm"></video><style>.h{background:url(h.png)}"""
    found = pages.find_media(html, "https://site.example/dir/page.html")
    assert [(c.url, c.found_as) for c in found] == [
        ("https://site.example/media/placeholder.gif", "img"),
        ("https://site.example/media/lazy.jpg", "img"),
        ("https://site.example/media/t.png", "srcset"),
        ("https://site.example/media/clip.webm", "source"),
        ("https://site.example/media/h.png", "css"),
        ("https://cdn.example/x.JPG", "link"),
        ("https://site.example/g?id=2", "link"),
    ]


def test_kept_headers_drop_cookies_and_are_capped() -> None:
    kept = capture._headers(
        [("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("X-Long", "v" * 5000), ("Vary", "a"), ("vary", "b")]
        + [(f"x-{n}", "1") for n in range(100)]
    )
    assert kept["content-type"] == "text/html" and "set-cookie" not in kept
    assert kept["x-long"] == "v" * 1023 + "…" and kept["vary"] == "a, b"
    assert len(kept) == capture.MAX_HEADERS


# ---------------------------------------------------------------- CLI, lost tasks, the worker


def test_cli_captures_a_report_by_reference(
    host: Host, factory: sessionmaker[Session], capture_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seawall.cli import app as cli_app

    host.file("/cli.png", png(95))
    host.page("/cli.html", '<img src="/cli.png">')
    with factory() as session:
        done = intake.submit(
            session, capture_settings, SYSTEM, intake.ReportIn(channel="partner", url=host.url + "/cli.html")
        )
        session.commit()
        reference, case_id = done.report.reference, done.case.id
    for name, value in [
        ("SEAWALL_HOME", str(capture_settings.home)),
        ("SEAWALL_DATABASE_URL", capture_settings.effective_database_url),
        ("SEAWALL_SECRET_KEY", "test-secret-key-not-for-production"),
        ("SEAWALL_FETCH_ALLOW_NETWORKS", '["127.0.0.1/32"]'),
    ]:
        monkeypatch.setenv(name, value)
    reset_settings()
    handlers = logging.getLogger().handlers[:]
    try:
        runner = CliRunner()
        out = runner.invoke(cli_app, ["reports", "capture", reference])
        assert out.exit_code == 0, out.output
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert (summary["case"], summary["state"], summary["http_status"], len(summary["items"])) == (
            case_id,
            "done",
            200,
            1,
        )
        recheck = runner.invoke(cli_app, ["reports", "capture", reference, "--recheck"])
        assert json.loads(recheck.stdout.strip().splitlines()[-1])["content_gone"] is False
        missing = runner.invoke(cli_app, ["reports", "capture", "R-00000-00000"])
        assert missing.exit_code == 2 and "no report or case 'R-00000-00000'" in missing.output
    finally:
        reset_settings()
        logging.getLogger().handlers[:] = handlers  # the CLI logged to the runner's stream, closed now
    with factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "case.capture")).one()
        assert (event.actor_type, event.actor) == ("cli", cli_principal().name)


def test_lost_captures_are_queued_again(
    factory: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seawall.hotline import tasks

    old = utcnow() - dt.timedelta(minutes=30)
    with factory() as session:
        cases = []
        for n in range(5):
            case = Case(
                reference=f"C-TEST{n}", kind="url", url=f"https://example.test/{n}", state="open", opened_at=old
            )
            session.add(case)
            cases.append(case)
        cases[4].opened_at = utcnow()  # just reported: its task may still be in the queue
        session.flush()
        stale = old - dt.timedelta(hours=1)
        session.add_all(
            [
                Capture(case_id=cases[1].id, state="failed", started_at=old),  # failed: recorded, not retried here
                Capture(case_id=cases[2].id, state="running", started_at=stale),  # its worker died
                Capture(case_id=cases[3].id, state="running", started_at=utcnow()),  # still running
            ]
        )
        session.commit()
        ids = [c.id for c in cases]
    monkeypatch.setenv("SEAWALL_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("SEAWALL_HOME", str(settings.home))
    reset_settings()
    queued: list[int] = []
    monkeypatch.setattr(tasks, "capture_case", queued.append)
    try:
        assert tasks.capture_missed.call_local() == [ids[0], ids[2]]
    finally:
        reset_settings()
    assert queued == [ids[0], ids[2]]


def test_a_real_worker_captures_a_case_reported_through_the_api(
    tmp_path: Path, database_url: str, engine: Engine, host: Host, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partner API (a real server) takes the report and queues the capture in the SQLite queue of
    a temporary SEAWALL_HOME, where a real `seawall worker` process picks it up and captures it."""
    from seawall.hotline import tasks
    from seawall.tasks import build_huey

    picture = png(99, 160, 120)
    host.file("/w.png", picture)
    host.page("/w.html", '<img src="/w.png">')
    home = tmp_path / "worker-home"
    # The app's own queue is the one its settings name at import; this one is the worker's.
    queue = build_huey(Settings(home=home))
    queued_capture = queue.task(name="hotline.capture")(tasks.capture_case.func)  # the same task, that queue
    monkeypatch.setattr(capture, "scheduler", queued_capture)
    with make_sessionmaker(engine)() as session:
        key = auth_service.create_api_key(session, SYSTEM, name="partner", scopes=["reports:write"])
        session.commit()
    env = child_environment(
        SEAWALL_HOME=str(home),
        SEAWALL_DATABASE_URL=database_url,
        SEAWALL_SECRET_KEY="worker-test-secret",
        SEAWALL_FETCH_ALLOW_NETWORKS='["127.0.0.1/32"]',
        SEAWALL_LOG_JSON="true",
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "seawall", "worker", "--workers", "1", "--no-periodic"],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        answer = httpx.post(
            live_server.url + "/v1/reports",
            json={"url": host.url + "/w.html"},
            headers={"authorization": f"Bearer {key.secret}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        reference = answer.json()["reference"]

        def captured() -> bool:
            with make_sessionmaker(engine, writes=False)() as session:
                return session.scalar(select(func.count()).select_from(Capture).where(Capture.state == "done")) == 1

        _wait_for(captured, log_path)
        with make_sessionmaker(engine, writes=False)() as session:
            report = intake.get_report(session, reference)
            assert report is not None and report.case_id is not None
            assert case_items(session, report.case_id) == [(sha(picture), "img", host.url + "/w.png")]
            item = session.scalars(select(Item)).one()
            assert evidence.get(session, Settings(home=home), item.evidence_id or "") == picture
            assert session.get(Case, report.case_id).state == "captured"  # type: ignore[union-attr]
        assert (home / "queue.db").exists() and (home / "evidence.key").exists()
        logged = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        assert any(e["message"].startswith(f"case {report.case_id} captured: done, 1 item(s)") for e in logged)
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(condition: Any, log: Path, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
