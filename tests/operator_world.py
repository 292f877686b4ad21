"""A small world for the operator pages: users of every console role, a hash list with a PDQ entry,
a case with a report, an item and its assessment, a webhook with a dead delivery, a quarantined
entry, a shadow policy with a match it would have acted on, and an exchange."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.models import User
from seawall.auth.permissions import SYSTEM, Role
from seawall.config import Settings
from seawall.hotline import intake
from seawall.hotline.models import Assessment, Capture, CaseItem, Item, Notice, QaDecision
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service as exchanges_service
from seawall.lists.records import EntryRecord
from seawall.matching import policies, webhooks
from seawall.matching.models import EntryQuarantine, MatchEvent, WebhookDelivery
from seawall.web.csrf import SESSION_COOKIE

PASSWORD = "operator pages password"
CONSOLE_ROLES = [Role.admin, Role.senior_analyst, Role.analyst, Role.auditor]
KNOWN_PDQ = hashlib.sha256(b"benign striped pattern").hexdigest()
NEAR_PDQ = f"{int(KNOWN_PDQ, 16) ^ 0b1011:064x}"  # 3 bits away
ITEM_PDQ = hashlib.sha256(b"benign landscape item").hexdigest()
NEAR_ITEM_PDQ = f"{int(ITEM_PDQ, 16) ^ 0b111000:064x}"  # 3 bits away
ITEM_SHA256 = hashlib.sha256(b"benign landscape bytes").hexdigest()


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return auth_service._hasher.hash(PASSWORD)


@dataclass
class OperatorWorld:
    case_reference: str
    case_id: int
    report_reference: str
    authority_report: str
    entry_id: int
    quarantined_entry: int
    delivery_id: int
    item_id: int
    assessment_id: int
    notice_id: int


def build_world(
    db: Session, settings: Settings, tmp: Path, *, webhook_url: str = "https://hooks.example/x"
) -> OperatorWorld:
    for role in CONSOLE_ROLES:
        # Rows made directly with one hash computed per process: Argon2 is slow on purpose, and these
        # users log in by a session made for them (``login``), never by their password.
        user = User(username=f"op-{role.value}", role=role.value, password_hash=_password_hash())
        db.add(user)
        db.flush()
        audit.record(db, SYSTEM, "user.create", "user", user.id, {"username": user.username, "role": role.value})
    known = lists_service.create_list(db, SYSTEM, name="known", kind="hash", description="Benign stand-ins")
    lists_service.add_entries(
        db,
        SYSTEM,
        known,
        [EntryRecord("pdq", KNOWN_PDQ, category="B"), EntryRecord("md5", hashlib.md5(b"benign").hexdigest())],
    )
    entry = lists_service.find_entries(db, known, KNOWN_PDQ, "pdq")[0]
    md5_entry = lists_service.find_entries(db, known, hashlib.md5(b"benign").hexdigest(), "md5")[0]
    db.add(EntryQuarantine(entry_id=md5_entry.id, reason="a spike", callers=["key:platform"]))
    policies.upsert_policy(
        db, SYSTEM, name="would-report", conditions={"categories": ["B"]}, actions=[{"type": "report"}], shadow=True
    )
    db.add(
        MatchEvent(
            match_id=str(uuid.uuid4()),
            principal="key:platform",
            signals={"pdq": [KNOWN_PDQ]},
            matches=[{"list": "known", "entry_id": entry.id, "signal_type": "pdq", "distance": 2}],
            actions=[],
            shadow_actions=[{"type": "report", "rule": "would-report"}],
        )
    )
    hook, _ = webhooks.create_webhook(db, settings, SYSTEM, name="receiver", url=webhook_url)
    delivery = WebhookDelivery(
        webhook_id=hook.id,
        payload={"match": "benign"},
        state="dead",
        attempts=8,
        last_status=503,
        last_error="HTTP 503",
    )
    db.add(delivery)
    feed = tmp / "feed.csv"
    feed.write_text("signal_type,value\nmd5," + hashlib.md5(b"feed").hexdigest() + "\n")
    partner = lists_service.create_list(db, SYSTEM, name="partner", kind="hash")
    exchanges_service.create_exchange(
        db, settings, SYSTEM, name="partner-feed", type="file", list_name=partner.name, config={"location": str(feed)}
    )
    done = intake.submit(
        db, settings, SYSTEM, intake.ReportIn(channel="public", url="https://gallery.example/a/1"), capture=False
    )
    item = Item(sha256=ITEM_SHA256, md5="0" * 32, sha1="0" * 40, pdq=ITEM_PDQ, pdq_quality=100, media="image")
    db.add(item)
    db.flush()
    db.add(CaseItem(case_id=done.case.id, item_id=item.id, media_url="https://gallery.example/a/1.png", found_as="img"))
    at = done.report.reported_at
    assessed = Assessment(
        subject="item",
        item_id=item.id,
        assessor="op-analyst",
        outcome="not_csam",
        state="confirmed",
        assessed_at=at + timedelta(minutes=1),
    )
    db.add(assessed)
    db.flush()
    # The rest of a case's life, in order: QA, a notice sent, a re-check finding the content gone.
    db.add(
        QaDecision(
            assessment_id=assessed.id,
            reviewer="op-senior_analyst",
            decision="confirm",
            comment="checked",
            decided_at=at + timedelta(minutes=2),
        )
    )
    notice = Notice(
        case_id=done.case.id,
        channel="smtp",
        recipient="abuse@hosting.example",
        document={},
        state="removed",
        created_at=at + timedelta(minutes=3),
        sent_at=at + timedelta(minutes=4),
        checks=1,
        removed_at=at + timedelta(hours=2),
        takedown_seconds=int(timedelta(hours=2, minutes=-4).total_seconds()),
    )
    db.add(notice)
    db.flush()
    db.add(
        Capture(
            case_id=done.case.id,
            purpose="recheck",
            notice_id=notice.id,
            state="gone",
            http_status=404,
            started_at=at + timedelta(hours=2),
            finished_at=at + timedelta(hours=2),
        )
    )
    item.assessment_id, item.state = assessed.id, "graded"
    # The hotline hash list names the items its entries came from: near-PDQ search reaches items through it.
    hotline = lists_service.create_list(db, SYSTEM, name=settings.hotline_hash_list, kind="hash")
    lists_service.add_entries(
        db, SYSTEM, hotline, [EntryRecord("pdq", ITEM_PDQ, external_id=f"hotline-item:{item.id}")]
    )
    # A platform's authority report draft (CyberTipline).
    from seawall.reporting import service as reporting_service

    authority_report, _ = reporting_service.create_from_api(
        db, settings, SYSTEM, owner="platform-x", authority="ncmec", external_id="t-1", facts={}, files=[], events=[]
    )
    db.commit()
    return OperatorWorld(
        case_reference=done.case.reference,
        case_id=done.case.id,
        authority_report=authority_report.reference,
        report_reference=done.report.reference,
        entry_id=entry.id,
        quarantined_entry=md5_entry.id,
        delivery_id=delivery.id,
        item_id=item.id,
        assessment_id=assessed.id,
        notice_id=notice.id,
    )


def session_cookie(app: Any, username: str) -> str:
    """A console session for ``username``, as a login makes it (the password check is tested elsewhere)."""
    with app.state.sessionmaker() as db:
        user = auth_service.get_user(db, username)
        token = auth_service.start_console_session(db, app.state.settings, user)
        db.commit()
    return token


def login(app: Any, username: str) -> tuple[TestClient, str]:
    """A browser-like client logged in as ``username``, and the page's CSRF token for its forms."""
    browser = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    browser.cookies.set(SESSION_COOKIE, session_cookie(app, username))
    page = browser.get("/login", headers={"accept": "text/html"})
    meta = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert meta
    return browser, meta.group(1)
