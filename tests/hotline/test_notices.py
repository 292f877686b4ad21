"""Notice and takedown: XARF notices to hosts by SMTP (a real aiosmtpd server on loopback, STARTTLS
with a test CA) or to a host's API, re-checks against a loopback web host until the content is gone,
the takedown time, failures and retries, the reminder and escalation, the sweep that loses nothing,
and the API and CLI. Benign generated pictures only."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from tests.hotline.test_capture import ANALYST, SENIOR, _test_ca
from tests.servers import child_environment
from typer.testing import CliRunner

from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings, reset_settings
from seawall.db import make_sessionmaker, transaction, utcnow
from seawall.hotline import assessment, capture, intake, mail, notices, xarf
from seawall.hotline.models import Assessment, Capture, Case, CaseItem, Host, Item, Notice, Referral
from servers import free_port, serve
from webhost import Host as WebHost
from webhost import png, served_host

SENDER = "notices@hotline.example"
ABUSE = "abuse@hosting.example"
PASSWORD = "benign-test-password"
LOOPBACK = ["127.0.0.1/32"]


# ---- an independent reading of the XARF v4 schema (core, content-base, content-csam) ----------------


def xarf_v4_violations(doc: dict[str, Any]) -> list[str]:
    """The required fields of xarf-core.json, content-base.json and content-csam.json, with their formats."""
    bad = []
    for name in ("xarf_version", "report_id", "timestamp", "reporter", "sender", "source_identifier", "category"):
        if name not in doc:
            bad.append(f"missing {name}")
    for name in ("type", "url", "classification", "detection_method"):
        if name not in doc:
            bad.append(f"missing {name}")
    if bad:
        return bad
    if not re.fullmatch(r"4\.[0-9]+\.[0-9]+", doc["xarf_version"]):
        bad.append("xarf_version")
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", doc["report_id"]):
        bad.append("report_id is no UUID v4")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", doc["timestamp"]):
        bad.append("timestamp")
    for who in ("reporter", "sender"):
        party = doc[who]
        if sorted(party) != ["contact", "domain", "org"]:  # additionalProperties: false
            bad.append(f"{who} fields")
        elif not (0 < len(party["org"]) <= 200 and re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", party["contact"])):
            bad.append(f"{who} org/contact")
        elif not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", party["domain"]):
            bad.append(f"{who} domain")
    if doc["category"] != "content" or doc["type"] != "csam":
        bad.append("category/type")
    if not isinstance(doc["source_identifier"], str) or not doc["source_identifier"]:
        bad.append("source_identifier")
    if not re.match(r"https?://", doc["url"]):
        bad.append("url")
    if doc["classification"] not in ("baseline", "A1", "A2", "B1", "B2"):
        bad.append("classification")
    if doc["detection_method"] not in ("hash_match", "ai_detection", "manual_review", "user_report", "automated_scan"):
        bad.append("detection_method")
    if "media_type" in doc and doc["media_type"] not in ("image", "video", "audio", "text", "mixed"):
        bad.append("media_type")
    for name, size in (("md5", 32), ("sha1", 40), ("sha256", 64)):
        value = doc.get("hash_values", {}).get(name)
        if value is not None and not re.fullmatch(f"[a-fA-F0-9]{{{size}}}", value):
            bad.append(f"hash_values.{name}")
    if "asn" in doc and not 1 <= doc["asn"] <= 4294967295:
        bad.append("asn")
    if "country_code" in doc and not re.fullmatch(r"[A-Z]{2}", doc["country_code"]):
        bad.append("country_code")
    if len(doc.get("tags", [])) > 20 or not all(
        re.fullmatch(r"[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+-.]*", t) for t in doc.get("tags", [])
    ):
        bad.append("tags")
    if len(doc.get("description", "")) > 1000:
        bad.append("description")
    # For csam, never visual content: hash values and references only.
    if "evidence" in doc or "screenshot_url" in doc:
        bad.append("media attached")
    return bad


def test_the_spec_reading_refuses_what_the_schema_refuses() -> None:
    good = xarf.build(
        reporter=xarf.party("Benign Hotline", SENDER),
        url="https://pictures.example/a",
        source="192.0.2.7",
        occurred_at=utcnow(),
        classification="B2",
        detection_method="user_report",
        items=[{"md5": "a" * 32, "sha1": "b" * 40, "sha256": "c" * 64, "pdq": "d" * 64, "media": "image"}],
    )
    assert xarf_v4_violations(good) == [] and xarf.problems(good) == []
    assert good["hash_values"] == {"md5": "a" * 32, "sha1": "b" * 40, "sha256": "c" * 64, "pdq": "d" * 64}
    for name in ("report_id", "timestamp", "reporter", "source_identifier", "url", "classification"):
        broken = {k: v for k, v in good.items() if k != name}
        assert xarf_v4_violations(broken) == [f"missing {name}"]
        assert xarf.problems(broken) == [f"{name} is required"]
    for change, reason in (
        ({"classification": "C"}, "classification"),
        ({"detection_method": "guess"}, "detection_method"),
        ({"reporter": {"org": "x", "contact": "nobody", "domain": ""}}, "reporter org/contact"),
        ({"evidence": [{"content_type": "image/png", "payload": "AA=="}]}, "media attached"),
        ({"hash_values": {"sha256": "zz"}}, "hash_values.sha256"),
    ):
        assert xarf_v4_violations({**good, **change}) == [reason]
        assert xarf.problems({**good, **change}) != []
    # No sender address configured: the party is incomplete, and the code says what to set.
    unset = {**good, "reporter": xarf.party("Benign Hotline", None)}
    assert "reporter.contact is an email address (set SEAWALL_NOTICE_FROM)" in xarf.problems(unset)


# ---- servers on loopback ---------------------------------------------------------------------------


@dataclass
class Mailbox:
    """An aiosmtpd handler: every message it accepted, with whether the session was encrypted."""

    messages: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.ssl is not None))
        return "250 OK queued"

    def parsed(self, n: int = -1) -> EmailMessage:
        message = email.message_from_bytes(self.messages[n][2], policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class SmtpServer:
    port: int
    box: Mailbox
    logins: list[tuple[str, bool]]
    accept_password: list[str]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no STARTTLS) on 127.0.0.1."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.port, box, [], [])
    finally:
        controller.stop()


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[tuple[SmtpServer, Path]]:
    """An SMTP server with STARTTLS (a test CA's certificate for 127.0.0.1) that wants a login after it."""
    ca_pem, context = _test_ca(tmp_path)
    ca_file = tmp_path / "smtp-ca.pem"
    ca_file.write_text(ca_pem)
    box = Mailbox()
    server = SmtpServer(free_port(), box, [], [PASSWORD])

    def authenticator(_server: Any, session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = (v.decode() if isinstance(v, bytes) else v for v in (data.login, data.password))
        ok = login == "notices" and password in server.accept_password
        server.logins.append((login, ok))
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 235 or 535 itself

    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=server.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield server, ca_file
    finally:
        controller.stop()


@dataclass
class ApiHost:
    """A host's abuse API on loopback: records each POST, answers with ``status`` and ``answer``."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 202
    answer: dict[str, Any] = field(default_factory=lambda: {"id": "T-1001"})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        payload = json.dumps(self.answer).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def web_host() -> Iterator[WebHost]:
    with served_host() as app:
        yield app


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture(autouse=True)
def queued(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, float]]]:
    """What would go to the task queue (sends, re-checks, captures): the tests drive the work."""
    calls: list[tuple[str, int, float]] = []
    monkeypatch.setattr(notices, "scheduler", lambda kind, notice_id, delay: calls.append((kind, notice_id, delay)))
    monkeypatch.setattr(capture, "scheduler", lambda case_id: calls.append(("capture", case_id, 0.0)))
    yield calls
    capture.close_indexes()


def notice_settings(settings: Settings, tmp_path: Path, **changes: Any) -> Settings:
    cidr = tmp_path / "ranges.csv"
    cidr.write_text("cidr,asn,as_name,country\n127.0.0.0/8,64500,Benign Test Hosting,GB\n")
    return settings.model_copy(
        update={
            "fetch_allow_networks": LOOPBACK,
            "thumbnail_size": 64,
            "fetch_timeout_seconds": 10.0,
            "trace_cidr_file": cidr,
            "hotline_name": "Benign Test Hotline",
            "hotline_country": "GB",
            "notice_from": SENDER,
            "notice_smtp_host": "127.0.0.1",
            "notice_smtp_starttls": "off",
            "notice_recheck_schedule": "1,1,1",
            "notice_timeout_seconds": 10.0,
            **changes,
        }
    )


def add_host(factory: sessionmaker[Session], **fields: Any) -> int:
    with transaction(factory) as session:
        host = Host(asn=64500, name="Benign Test Hosting", source="import", **fields)
        session.add(host)
        session.flush()
        return host.id


def events(factory: sessionmaker[Session], prefix: str = "notice.") -> list[tuple[str, dict[str, Any]]]:
    with factory() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action.like(prefix + "%")).order_by(AuditEvent.seq))
        return [(e.action, e.details) for e in rows]


def parts_of(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def xarf_attachment(message: EmailMessage) -> dict[str, Any]:
    found = [p for p in message.walk() if p.get_filename() == "xarf.json"]
    assert len(found) == 1 and found[0].get_content_type() == "application/json"
    payload = found[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    document: dict[str, Any] = json.loads(payload)
    return document


def hosted_case(
    factory: sessionmaker[Session], settings: Settings, url: str, pictures: list[bytes], channel: str = "public"
) -> int:
    """A case as capture, tracing and QA leave it (hosted in GB, its items confirmed csam), its notice
    opened through ``actions.after_confirmation`` as QA's last confirmation does."""
    from seawall.hotline import actions

    with transaction(factory) as session:
        case = intake.submit(session, settings, SYSTEM, intake.ReportIn(channel=channel, url=url)).case
        now = utcnow()
        shot = Capture(case_id=case.id, state="done", finished_at=now, fetched_at=now, final_url=url, http_status=200)
        session.add(shot)
        session.flush()
        case.state, case.hosting_ip, case.hosting_country, case.hosting_asn = "confirmed", "127.0.0.1", "GB", 64500
        for i, picture in enumerate(pictures):
            item = Item(
                sha256=hashlib.sha256(picture).hexdigest(),
                md5=hashlib.md5(picture).hexdigest(),
                sha1=hashlib.sha1(picture).hexdigest(),
                media="image",
                mime="image/png",
                size=len(picture),
                state="graded",
            )
            session.add(item)
            session.flush()
            session.add(CaseItem(case_id=case.id, item_id=item.id, capture_id=shot.id, media_url=f"{url}/{i}.png"))
            graded = Assessment(
                subject="item",
                item_id=item.id,
                assessor="analyst-1",
                outcome="csam",
                category="C",
                age_band="14-15",
                sex="unidentified",
                state="confirmed",
                confirmations=1,
                decided_at=now,
            )
            session.add(graded)
            session.flush()
            item.assessment_id = graded.id
        session.add(
            Assessment(
                subject="case",
                case_id=case.id,
                assessor="analyst-1",
                outcome="csam",
                category="C",
                age_band="14-15",
                sex="unidentified",
                url_level="exact",
                state="confirmed",
                confirmations=1,
                decided_at=now,
            )
        )
        session.flush()
        assert actions.after_confirmation(session, settings, SYSTEM, case) == "notice"
        return case.id


def notice_of(factory: sessionmaker[Session], case_id: int) -> Notice:
    with factory() as session:
        return session.scalars(select(Notice).where(Notice.case_id == case_id)).one()


# ---- the whole way: confirmation → notice → SMTP → re-checks → removed ------------------------------


def test_a_confirmed_case_in_our_country_gets_a_xarf_notice_by_smtp_and_is_rechecked_until_removed(
    tmp_path: Path,
    factory: sessionmaker[Session],
    settings: Settings,
    smtp_server: SmtpServer,
    web_host: WebHost,
    queued: list[tuple[str, int, float]],
) -> None:
    settings = notice_settings(settings, tmp_path, notice_smtp_port=smtp_server.port)
    host_id = add_host(factory, abuse_email=ABUSE, language="de")
    picture = png(71, 160, 120)
    web_host.file("/img/meadow.png", picture, "image/png")
    web_host.page("/gallery.html", '<h1>Gallery</h1><img src="/img/meadow.png">')
    url = web_host.url + "/gallery.html"

    # Report, capture (traced to GB through the CIDR file), assessment, QA: the last confirmation opens the notice.
    with transaction(factory) as session:
        case_id = intake.submit(session, settings, SYSTEM, intake.ReportIn(channel="public", url=url)).case.id
    captured = capture.run_capture(factory, settings, case_id)
    assert captured.state == "done" and len(captured.items) == 1
    with factory() as session:
        item = session.get_one(Item, captured.items[0])
        item_id, item_pdq = item.id, item.pdq
        saved = assessment.assess_item(
            session,
            settings,
            ANALYST,
            item.id,
            item.version,
            assessment.AssessmentIn(outcome="csam", category="B", age_band="7-10", sex="unidentified"),
        )
        session.commit()
        assessment.qa(session, settings, SENIOR, saved.assessment.id, "confirm", "")
        session.commit()
        case = session.get_one(Case, case_id)
        assert (case.hosting_country, case.host_id) == ("GB", host_id)
        derived = assessment.current_case_assessment(session, case)
        assert derived is not None and derived.state == "submitted"
        done = assessment.qa(session, settings, SENIOR, derived.id, "confirm", "")
        session.commit()
        assert done.dispatched == "notice"

    notice = notice_of(factory, case_id)
    assert (notice.state, notice.channel, notice.recipient, notice.language, notice.host_id) == (
        "pending",
        "smtp",
        ABUSE,
        "de",
        host_id,
    )
    assert queued[-1] == ("send", notice.id, 0.0)  # queued once QA's transaction committed
    with factory() as session:
        assert session.get_one(Case, case_id).state == "notified"
        reference = session.get_one(Case, case_id).reference

    # The worker's send: one message to the abuse desk.
    sent = notices.send(factory, settings, notice.id)
    assert (sent.state, sent.send_attempts, sent.last_error) == ("sent", 1, ""), sent.last_error
    assert sent.sent_at is not None and sent.message_id is not None
    assert sent.next_check_at == sent.sent_at + timedelta(seconds=1)
    assert queued[-1][:2] == ("recheck", notice.id)
    [(mail_from, rcpt, raw, encrypted)] = smtp_server.box.messages
    assert (mail_from, rcpt, encrypted) == (SENDER, [ABUSE], False)
    message = smtp_server.box.parsed()
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "feedback-report"
    # The feedback-report part parses as a message of its own (its fields are headers): hence its text/plain.
    assert parts_of(message) == [
        "multipart/report",
        "text/plain",
        "message/feedback-report",
        "text/plain",
        "application/json",
    ]
    [feedback] = [p for p in message.walk() if p.get_content_type() == "message/feedback-report"]
    [fields] = feedback.get_payload()
    assert (fields["Feedback-Type"], fields["Version"]) == ("xarf", "1")
    assert (message["From"], message["To"], message["Message-ID"]) == (SENDER, ABUSE, sent.message_id)
    assert message["Subject"] == (
        f"Meldung: Darstellungen sexuellen Kindesmissbrauchs auf Ihrem Dienst (127.0.0.1, {reference})"
    )
    text = message.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert f"  URL:            {url}" in body and "Einstufung:     A1" in body
    assert f"sha256 {hashlib.sha256(picture).hexdigest()}" in body
    # Never media: no image part, and not the picture's bytes in any encoding.
    assert not [p for p in message.walk() if p.get_content_maintype() in ("image", "video")]
    assert picture[:64] not in raw
    document = xarf_attachment(message)
    assert xarf_v4_violations(document) == []
    assert document == sent.document
    assert (document["url"], document["classification"], document["detection_method"]) == (url, "A1", "user_report")
    assert document["hash_values"] == {
        "md5": hashlib.md5(picture).hexdigest(),
        "sha1": hashlib.sha1(picture).hexdigest(),
        "sha256": hashlib.sha256(picture).hexdigest(),
        "pdq": item_pdq,
    }
    assert (document["source_identifier"], document["asn"], document["country_code"]) == ("127.0.0.1", 64500, "GB")
    assert document["reporter"] == {"org": "Benign Test Hotline", "contact": SENDER, "domain": "hotline.example"}
    assert document["tags"] == [f"case:{reference.lower()}", "interpol:baseline", "uk-category:b"]

    # Re-checks: the picture is still there, then the host takes it down.
    first = notices.recheck(factory, settings, notice.id)
    assert (first.checked, first.state, first.gone, first.present_items) == (True, "done", False, [item_id])
    still = notice_of(factory, case_id)
    assert (still.state, still.checks, still.removed_at) == ("sent", 1, None)
    del web_host.routes["/img/meadow.png"]
    second = notices.recheck(factory, settings, notice.id)
    assert (second.checked, second.state, second.gone) == (True, "done", True)
    removed = notice_of(factory, case_id)
    assert removed.state == "removed" and removed.removed_at is not None and removed.sent_at is not None
    assert removed.takedown_seconds == round((removed.removed_at - removed.sent_at).total_seconds())
    assert removed.next_check_at is None and removed.checks == 2
    with factory() as session:
        assert session.get_one(Case, case_id).state == "removed"
        rechecks = session.scalars(select(Capture).where(Capture.notice_id == notice.id).order_by(Capture.id)).all()
        assert [(c.purpose, c.state) for c in rechecks] == [("recheck", "done"), ("recheck", "done")]
    # Nothing more to do for it: a due-less check and the sweep leave it alone.
    assert notices.recheck(factory, settings, notice.id).checked is False
    assert notices.sweep(factory, settings, utcnow() + timedelta(days=30)) == notices.SweepReport(0, [], [])
    trail = events(factory)
    assert [a for a, _ in trail] == ["notice.open", "notice.send", "notice.recheck", "notice.recheck", "notice.removed"]
    assert trail[4][1] == {"case": reference, "takedown_seconds": removed.takedown_seconds, "capture": rechecks[1].id}


# ---- STARTTLS, a sealed password, a login refused, retries ---------------------------------------


def test_starttls_with_a_test_ca_a_refused_login_is_retried_with_backoff_then_fails(
    tmp_path: Path,
    factory: sessionmaker[Session],
    settings: Settings,
    tls_smtp_server: tuple[SmtpServer, Path],
    queued: list[tuple[str, int, float]],
) -> None:
    server, ca_file = tls_smtp_server
    base = notice_settings(settings, tmp_path, notice_smtp_port=server.port)
    sealed = mail.seal_password(base, PASSWORD)
    assert sealed.startswith("sealed:") and PASSWORD not in sealed
    good = base.model_copy(
        update={
            "notice_smtp_starttls": "required",
            "notice_smtp_ca_file": ca_file,
            "notice_smtp_user": "notices",
            "notice_smtp_password": SecretStr(sealed),
            "notice_max_attempts": 2,
            "notice_retry_base_seconds": 30.0,
        }
    )
    add_host(factory, abuse_email=ABUSE, language="fr")
    case_id = hosted_case(factory, good, "https://pictures.example/album/7", [png(81)])
    notice = notice_of(factory, case_id)

    # The server refuses the login: recorded with the reason, retried after the base delay.
    server.accept_password.clear()
    before = utcnow()
    failed_once = notices.send(factory, good, notice.id)
    assert (failed_once.state, failed_once.send_attempts) == ("pending", 1)
    assert failed_once.last_error == "SMTP login refused: 535 5.7.8 Authentication credentials invalid"
    assert failed_once.next_check_at is not None
    assert before + timedelta(seconds=30) <= failed_once.next_check_at <= utcnow() + timedelta(seconds=30)
    assert queued[-1] == ("send", notice.id, 30.0)
    # smtplib tries each mechanism the server offers (PLAIN, LOGIN): both refused, nothing delivered.
    assert server.logins == [("notices", False), ("notices", False)] and server.box.messages == []
    # Not due yet: a second worker's attempt does nothing.
    assert notices.send(factory, good, notice.id).send_attempts == 1
    # The second attempt, when due, is the last one allowed: failed for good.
    failed = notices.send(factory, good, notice.id, now=failed_once.next_check_at)
    assert (failed.state, failed.send_attempts, failed.next_check_at) == ("failed", 2, None)
    assert [(a, d["attempt"], d["error"][:18]) for a, d in events(factory, "notice.send")] == [
        ("notice.send_failed", 1, "SMTP login refused"),
        ("notice.send_failed", 2, "SMTP login refused"),
    ]

    # The password fixed on the server's side, an analyst sends it again: STARTTLS, login, delivered.
    server.accept_password.append(PASSWORD)
    with transaction(factory) as session:
        notices.retry(session, SYSTEM, notice.id)
    assert queued[-1] == ("send", notice.id, 0.0)
    delivered = notices.send(factory, good, notice.id)
    assert (delivered.state, delivered.send_attempts, delivered.last_error) == ("sent", 1, "")
    [(_, rcpt, _, encrypted)] = server.box.messages
    assert (rcpt, encrypted) == ([ABUSE], True)
    message = server.box.parsed()
    assert message["Subject"].startswith("Signalement : contenus pédocriminels sur votre service (pictures.example")
    assert xarf_v4_violations(xarf_attachment(message)) == []

    # Refusals that never reach the server with a secret: an unsealed password, a server without STARTTLS.
    plain = good.model_copy(update={"notice_smtp_password": SecretStr(PASSWORD)})
    with pytest.raises(mail.MailError, match="holds a sealed value"):
        mail.smtp_password(plain)
    loose = tmp_path / "smtp-password"
    loose.write_text(PASSWORD)
    loose.chmod(0o644)
    with pytest.raises(mail.MailError, match="may be read by others: chmod 600 it"):
        mail.smtp_password(good.model_copy(update={"notice_smtp_password_file": loose}))
    loose.chmod(0o600)
    assert mail.smtp_password(good.model_copy(update={"notice_smtp_password_file": loose})) == PASSWORD
    untrusted = good.model_copy(update={"notice_smtp_ca_file": None})
    message_out, message_id = mail.build_message(
        sender=SENDER, recipient=ABUSE, subject="s", body="b", document={}, sender_domain="hotline.example"
    )
    with pytest.raises(mail.MailError, match="STARTTLS failed: CERTIFICATE_VERIFY_FAILED"):
        mail.send(untrusted, message_out, SENDER, ABUSE, message_id)


def test_starttls_required_refuses_a_server_without_it_and_no_password_goes_in_clear(
    tmp_path: Path, settings: Settings, smtp_server: SmtpServer
) -> None:
    base = notice_settings(settings, tmp_path, notice_smtp_port=smtp_server.port)
    message, message_id = mail.build_message(
        sender=SENDER, recipient=ABUSE, subject="s", body="b", document={}, sender_domain="hotline.example"
    )
    required = base.model_copy(update={"notice_smtp_starttls": "required"})
    with pytest.raises(mail.MailError, match="offers no STARTTLS, and SEAWALL_NOTICE_SMTP_STARTTLS is required"):
        mail.send(required, message, SENDER, ABUSE, message_id)
    login = base.model_copy(
        update={
            "notice_smtp_starttls": "opportunistic",
            "notice_smtp_user": "notices",
            "notice_smtp_password": SecretStr(mail.seal_password(base, PASSWORD)),
        }
    )
    with pytest.raises(mail.MailError, match="refusing to send the SMTP password over a connection without TLS"):
        mail.send(login, message, SENDER, ABUSE, message_id)
    assert smtp_server.box.messages == []
    # Opportunistic without a login: sent in clear (the server offers nothing better).
    assert mail.send(
        base.model_copy(update={"notice_smtp_starttls": "opportunistic"}), message, SENDER, ABUSE, message_id
    )
    assert len(smtp_server.box.messages) == 1 and smtp_server.box.messages[0][3] is False


# ---- the API channel --------------------------------------------------------------------------------


def test_a_host_with_an_api_endpoint_gets_the_xarf_json_posted_through_the_safe_client(
    tmp_path: Path, factory: sessionmaker[Session], settings: Settings, queued: list[tuple[str, int, float]]
) -> None:
    api = ApiHost(status=503, answer={"detail": "busy"})
    with serve(api) as base_url:
        endpoint = base_url + "/abuse/xarf"
        settings = notice_settings(settings, tmp_path)
        add_host(factory, abuse_email=ABUSE, api_endpoint=endpoint)
        case_id = hosted_case(factory, settings, "https://pictures.example/p/3", [png(91), png(92)], channel="match")
        notice = notice_of(factory, case_id)
        assert (notice.channel, notice.recipient) == ("api", endpoint)

        busy = notices.send(factory, settings, notice.id)
        assert (busy.state, busy.last_error) == ("pending", 'HTTP 503: {"detail": "busy"}')
        api.status, api.answer = 202, {"id": "T-1001"}
        done = notices.send(factory, settings, notice.id, now=busy.next_check_at)
        assert (done.state, done.send_attempts, done.message_id) == ("sent", 2, "T-1001")
        headers, body = api.received[-1]
        assert headers["content-type"] == "application/json"
        document = json.loads(body)
        assert xarf_v4_violations(document) == [] and document == done.document
        assert (document["detection_method"], document["classification"], document["media_type"]) == (
            "hash_match",
            "B2",
            "image",
        )
        assert [i["hash_values"]["sha256"] for i in document["content_items"]] == [
            hashlib.sha256(png(91)).hexdigest(),
            hashlib.sha256(png(92)).hexdigest(),
        ]

    # An endpoint the SSRF rules refuse (a private address not allowed) is a failure with the reason.
    strict = settings.model_copy(update={"fetch_allow_networks": []})
    with transaction(factory) as session:
        session.get_one(Host, notice.host_id).api_endpoint = "http://10.1.2.3/xarf"
    case_two = hosted_case(factory, strict, "https://pictures.example/p/4", [png(93)])
    refused = notices.send(factory, strict, notice_of(factory, case_two).id)
    assert (refused.state, refused.last_error) == ("pending", "refused: 10.1.2.3 is not a public address")


# ---- reminder and escalation ---------------------------------------------------------------------------


def test_content_that_stays_gets_a_reminder_then_escalation_with_the_law_enforcement_package(
    tmp_path: Path,
    factory: sessionmaker[Session],
    settings: Settings,
    smtp_server: SmtpServer,
    web_host: WebHost,
) -> None:
    picture = png(101, 160, 120)
    web_host.file("/p.png", picture, "image/png")
    web_host.page("/stays.html", '<img src="/p.png">')
    folder = tmp_path / "handover"
    settings = notice_settings(
        settings,
        tmp_path,
        notice_smtp_port=smtp_server.port,
        notice_reminder_after_seconds=0.0,
        notice_escalate_after_seconds=3600.0,
        notice_escalation_folder=folder,
    )
    add_host(factory, abuse_email=ABUSE, language="pt-br")  # no Portuguese template: English
    case_id = hosted_case(factory, settings, web_host.url + "/stays.html", [picture])
    notice = notice_of(factory, case_id)
    assert notices.send(factory, settings, notice.id).state == "sent"
    assert smtp_server.box.parsed()["Subject"].startswith("Notice: child sexual abuse material on your service")

    reminded = notices.recheck(factory, settings, notice.id, force=True)
    assert (reminded.gone, reminded.reminded, reminded.escalated) == (False, True, False)
    assert len(smtp_server.box.messages) == 2
    reminder = smtp_server.box.parsed()
    assert reminder["Subject"].startswith("Reminder: child sexual abuse material still on your service")
    assert xarf_v4_violations(xarf_attachment(reminder)) == []
    # One reminder only.
    again = notices.recheck(factory, settings, notice.id, force=True)
    assert (again.reminded, len(smtp_server.box.messages)) == (False, 2)

    escalating = settings.model_copy(update={"notice_escalate_after_seconds": 0.0})
    escalated = notices.recheck(factory, escalating, notice.id, force=True)
    assert escalated.escalated is True and escalated.package is not None
    package = Path(escalated.package)
    assert package.parent == folder and (package / "referral.json").is_file()
    shown = notice_of(factory, case_id)
    assert shown.state == "escalated" and shown.escalated_at is not None and shown.reminded_at is not None
    with factory() as session:
        [le] = session.scalars(select(Referral).where(Referral.kind == "law_enforcement")).all()
        assert (le.case_id, le.state) == (case_id, "exported")
    # Escalated, still re-checked: removal ends it.
    del web_host.routes["/p.png"]
    gone = notices.recheck(factory, escalating, notice.id, force=True)
    assert gone.gone is True and notice_of(factory, case_id).state == "removed"
    assert [a for a, _ in events(factory)] == [
        "notice.open",
        "notice.send",
        "notice.recheck",
        "notice.remind",
        "notice.recheck",
        "notice.recheck",
        "notice.escalate",
        "notice.recheck",
        "notice.removed",
    ]


# ---- nothing lost: the sweep ------------------------------------------------------------------------------


def test_the_sweep_finds_due_notices_no_task_was_queued_for_and_routes_waiting_ones(
    tmp_path: Path,
    factory: sessionmaker[Session],
    settings: Settings,
    smtp_server: SmtpServer,
    web_host: WebHost,
    queued: list[tuple[str, int, float]],
) -> None:
    settings = notice_settings(settings, tmp_path, notice_smtp_port=smtp_server.port)
    picture = png(111)
    web_host.file("/q.png", picture, "image/png")
    web_host.page("/q.html", '<img src="/q.png">')
    # No abuse contact yet: the notice waits, saying why, and nothing is queued.
    case_id = hosted_case(factory, settings, web_host.url + "/q.html", [picture])
    waiting = notice_of(factory, case_id)
    assert (waiting.state, waiting.recipient, waiting.next_check_at) == ("pending", "", None)
    assert waiting.last_error == "no abuse contact for this host in the directory yet: add one (seawall hosts import)"
    assert not [q for q in queued if q[0] == "send"]
    add_host(factory, abuse_email=ABUSE)
    report = notices.sweep(factory, settings)
    assert (report.routed, report.sends, report.checks) == (1, [waiting.id], [])
    assert queued[-1] == ("send", waiting.id, 0.0)
    sent = notices.send(factory, settings, waiting.id)
    assert sent.state == "sent"

    # The worker that should re-check it died, and its queue entry with it: the sweep finds it when due.
    queued.clear()
    assert notices.sweep(factory, settings, now=utcnow() - timedelta(minutes=5)).checks == []
    due = notices.sweep(factory, settings, now=utcnow() + timedelta(seconds=2))
    assert due.checks == [waiting.id] and queued == [("recheck", waiting.id, 0.0)]
    assert notices.recheck(factory, settings, waiting.id).checked is True
    checked = notice_of(factory, case_id)
    assert checked.checks == 1 and checked.state == "sent"
    # A check claimed by a worker that then crashed: its lease runs out, then the sweep hands it on.
    with transaction(factory) as session:
        claim = notices._claim_check(session, settings, waiting.id, utcnow(), force=True)
    assert claim is not None
    assert notices.sweep(factory, settings).checks == []
    later = notices.sweep(factory, settings, now=claim.lease + timedelta(seconds=1))
    assert later.checks == [waiting.id]
    # The re-check schedule: after each offset, then the last one repeating.
    daily = settings.model_copy(update={"notice_recheck_schedule": "3600,21600,86400"})
    start = utcnow()
    hours = [
        (notices.next_check(daily, start, start + timedelta(hours=h)) - start).total_seconds() / 3600
        for h in (0, 1, 5, 6, 23, 24, 47.5, 48)
    ]
    assert hours == [1, 6, 6, 24, 24, 48, 48, 72]


# ---- the worker, for real ----------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_worker_sends_the_notice_and_rechecks_until_the_host_removes_the_picture(
    tmp_path: Path,
    factory: sessionmaker[Session],
    settings: Settings,
    database_url: str,
    smtp_server: SmtpServer,
    web_host: WebHost,
) -> None:
    settings = notice_settings(settings, tmp_path, notice_smtp_port=smtp_server.port)
    picture = png(131, 160, 120)
    web_host.file("/w.png", picture, "image/png")
    web_host.page("/w.html", '<img src="/w.png">')
    add_host(factory, abuse_email=ABUSE)
    case_id = hosted_case(factory, settings, web_host.url + "/w.html", [picture])
    notice_id = notice_of(factory, case_id).id
    env = child_environment(
        SEAWALL_HOME=str(settings.ensure_home()),
        SEAWALL_DATABASE_URL=database_url,
        SEAWALL_SECRET_KEY=settings.effective_secret_key(),
        SEAWALL_FETCH_ALLOW_NETWORKS=json.dumps(LOOPBACK),
        SEAWALL_NOTICE_FROM=SENDER,
        SEAWALL_NOTICE_SMTP_HOST="127.0.0.1",
        SEAWALL_NOTICE_SMTP_PORT=str(smtp_server.port),
        SEAWALL_NOTICE_SMTP_STARTTLS="off",
        SEAWALL_NOTICE_RECHECK_SCHEDULE="1",
        SEAWALL_LOG_JSON="true",
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "seawall", "worker", "--workers", "2", "--no-periodic"],
            env=env,
            stdout=log,
            stderr=log,
        )

    def wait_for(state: str, seconds: float = 90) -> Notice:
        deadline = time.monotonic() + seconds
        while (found := notice_of(factory, case_id)).state != state and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    try:
        # As the worker's periodic sweep would (the test's scheduler kept the send off the queue).
        swept = subprocess.run(
            [sys.executable, "-m", "seawall", "notices", "sweep"], env=env, capture_output=True, text=True, timeout=60
        )
        assert swept.returncode == 0, swept.stderr
        assert json.loads(swept.stdout) == {"routed": 0, "sends": [notice_id], "checks": []}
        sent = wait_for("sent")
        assert sent.state == "sent", log_path.read_text()[-3000:]
        deadline = time.monotonic() + 90
        while not [a for a, _ in events(factory) if a == "notice.recheck"] and time.monotonic() < deadline:
            time.sleep(0.1)  # the worker queued its own first re-check, a second after sending
        assert notice_of(factory, case_id).state == "sent", log_path.read_text()[-3000:]
        del web_host.routes["/w.png"]
        removed = wait_for("removed")
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert removed.state == "removed", log_path.read_text()[-3000:]
    assert removed.checks >= 2 and removed.removed_at is not None and removed.sent_at is not None
    assert removed.takedown_seconds == round((removed.removed_at - removed.sent_at).total_seconds())
    assert len(smtp_server.box.messages) == 1
    assert xarf_v4_violations(xarf_attachment(smtp_server.box.parsed())) == []


# ---- the API and the CLI ----------------------------------------------------------------------------------


def _key(db_factory: sessionmaker[Session], name: str, scopes: list[str]) -> dict[str, str]:
    with transaction(db_factory) as session:
        made = auth_service.create_api_key(session, SYSTEM, name=name, scopes=scopes)
    return {"authorization": f"Bearer {made.secret}"}


def test_notices_through_the_api_and_the_cli(
    tmp_path: Path,
    factory: sessionmaker[Session],
    settings: Settings,
    engine: Engine,
    database_url: str,
    smtp_server: SmtpServer,
    web_host: WebHost,
    queued: list[tuple[str, int, float]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from seawall.cli import app as cli_app
    from seawall.web.app import create_app

    settings = notice_settings(settings, tmp_path, notice_smtp_port=smtp_server.port)
    add_host(factory, abuse_email=ABUSE)
    first = hosted_case(factory, settings, "https://pictures.example/x/1", [png(121)])
    second = hosted_case(factory, settings, "https://pictures.example/x/2", [png(122)])
    one, two = notice_of(factory, first).id, notice_of(factory, second).id
    notices.send(factory, settings, one)
    with factory() as session:
        ref_one, ref_two = session.get_one(Case, first).reference, session.get_one(Case, second).reference

    analyst = _key(factory, "analyst-key", ["reports:read", "review"])
    senior = _key(factory, "senior-key", ["reports:read", "review", "qa"])
    partner = _key(factory, "partner-key", ["reports:read", "reports:write"])
    with TestClient(create_app(settings, engine), base_url="http://127.0.0.1") as http:
        listed = http.get("/v1/notices", headers=analyst)
        assert listed.status_code == 200
        assert [(n["id"], n["state"], n["case"]) for n in listed.json()] == [
            (two, "pending", ref_two),
            (one, "sent", ref_one),
        ]
        assert [n["id"] for n in http.get("/v1/notices", params={"state": "sent"}, headers=analyst).json()] == [one]
        assert [n["id"] for n in http.get("/v1/notices", params={"case": ref_one}, headers=analyst).json()] == [one]
        assert [n["id"] for n in http.get("/v1/notices", params={"limit": 1}, headers=analyst).json()] == [two]
        assert http.get("/v1/notices", params={"state": "lost"}, headers=analyst).status_code == 422
        shown = http.get(f"/v1/notices/{one}", headers=analyst).json()
        assert (shown["recipient"], shown["channel"], shown["document"]["type"]) == (ABUSE, "smtp", "csam")
        assert http.get("/v1/notices/999999", headers=analyst).status_code == 404
        # A partner's key reads its own reports, not the hotline's notices; an analyst does not act.
        assert http.get("/v1/notices", headers=partner).status_code == 403
        assert http.post(f"/v1/notices/{one}/recheck", headers=analyst).status_code == 403
        assert http.post(f"/v1/notices/{one}/close", json={}, headers=analyst).status_code == 403
        # A senior analyst re-checks now and closes.
        queued.clear()
        rechecked = http.post(f"/v1/notices/{one}/recheck", headers=senior)
        assert rechecked.status_code == 202 and queued == [("recheck", one, 0.0)]
        refused = http.post(f"/v1/notices/{two}/recheck", headers=senior)
        assert (
            refused.status_code == 409 and "only a sent or escalated notice is re-checked" in refused.json()["detail"]
        )
        closed = http.post(f"/v1/notices/{two}/close", json={"comment": "host answered by phone"}, headers=senior)
        assert closed.status_code == 200 and closed.json()["state"] == "closed"
        assert http.post(f"/v1/notices/{two}/close", json={}, headers=senior).status_code == 409
    with factory() as session:
        assert session.get_one(Case, second).state == "closed"
    assert ("notice.close", {"from": "pending", "comment": "host answered by phone"}) in events(factory)

    for name, value in (
        ("SEAWALL_HOME", str(settings.home)),
        ("SEAWALL_DATABASE_URL", database_url),
        ("SEAWALL_SECRET_KEY", settings.effective_secret_key()),
        ("SEAWALL_FETCH_ALLOW_NETWORKS", json.dumps(LOOPBACK)),
        ("SEAWALL_NOTICE_FROM", SENDER),
        ("SEAWALL_NOTICE_SMTP_HOST", "127.0.0.1"),
        ("SEAWALL_NOTICE_SMTP_PORT", str(smtp_server.port)),
        ("SEAWALL_NOTICE_SMTP_STARTTLS", "off"),
        ("COLUMNS", "200"),
    ):
        monkeypatch.setenv(name, value)
    reset_settings()
    runner = CliRunner()
    try:
        listed_cli = runner.invoke(cli_app, ["notices", "ls", "--state", "sent"])
        assert listed_cli.exit_code == 0, listed_cli.output
        assert ref_one in listed_cli.stdout and ABUSE in listed_cli.stdout and "closed" not in listed_cli.stdout
        shown_cli = json.loads(runner.invoke(cli_app, ["notices", "show", str(one)]).stdout)
        assert (shown_cli["id"], shown_cli["state"], shown_cli["document"]["url"]) == (
            one,
            "sent",
            "https://pictures.example/x/1",
        )
        assert runner.invoke(cli_app, ["notices", "show", "999999"]).exit_code == 2
        resend = runner.invoke(cli_app, ["notices", "send", str(one)])
        assert resend.exit_code == 2 and "was sent already" in resend.output
        third = hosted_case(factory, settings, web_host.url + "/taken-down.html", [png(123)])
        three = notice_of(factory, third).id
        sent_cli = runner.invoke(cli_app, ["notices", "send", str(three)])
        assert sent_cli.exit_code == 0, sent_cli.output
        assert json.loads(sent_cli.stdout)["state"] == "sent" and len(smtp_server.box.messages) == 2
        # The page answers 404 on the loopback host: the content is gone.
        rechecked_cli = runner.invoke(cli_app, ["notices", "recheck", str(three)])
        assert rechecked_cli.exit_code == 0, rechecked_cli.output
        assert json.loads(rechecked_cli.stdout)["state"] == "removed"
        sealed_cli = runner.invoke(cli_app, ["notices", "seal-password"], input=PASSWORD + "\n")
        assert sealed_cli.exit_code == 0
        token = sealed_cli.stdout.strip()
        assert (
            token.startswith("sealed:")
            and mail.smtp_password(settings.model_copy(update={"notice_smtp_password": SecretStr(token)})) == PASSWORD
        )
    finally:
        reset_settings()
