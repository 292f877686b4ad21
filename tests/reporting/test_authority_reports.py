"""Authority reports end to end against a fake CyberTipline and a fake NCA API on loopback: a draft
from a reviewed decision, platform facts added through the API, submission (submit → upload →
fileinfo → finish), a retryable failure retried, errors carrying the Request-ID, a crash between
submit and finish recovered without a duplicate, retraction, credentials kept encrypted, the NCA
pack against the documented field list, priorities and deadlines, the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tests.reporting.fake_cybertipline import FakeCyberTipline, FakeNca, make_app, make_nca_app
from typer.testing import CliRunner

from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import ROLE_SCOPES, SYSTEM, Principal, Role
from seawall.config import Settings
from seawall.db import make_sessionmaker, utcnow
from seawall.evidence import service as evidence
from seawall.evidence.models import EvidenceObject
from seawall.hotline import assessment, capture, intake, notices, referrals
from seawall.hotline.models import Capture, Case, CaseItem, Item
from seawall.reporting import cybertipline, nca, service
from seawall.reporting.models import AuthorityCredential, AuthorityReport
from servers import serve

ROOT = Path(__file__).resolve().parents[2]
ANALYST = Principal(kind="user", name="alice", scopes=ROLE_SCOPES[Role.analyst])
SENIOR = Principal(kind="user", name="sam", scopes=ROLE_SCOPES[Role.senior_analyst])
CSAM = assessment.AssessmentIn(
    outcome="csam", category="A", age_band="7-10", sex="girl", children=1, flags=["self_generated"]
)


class Holder:
    fake = FakeCyberTipline()
    nca = FakeNca()


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    """One loopback server for the module; each request goes to the current test's fakes."""

    async def routed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await make_nca_app(Holder.nca)(scope, receive, send)
        else:
            await make_app(Holder.fake)(scope, receive, send)

    with serve(routed) as url:
        yield url


@pytest.fixture
def fake(fake_url: str) -> FakeCyberTipline:
    Holder.fake = FakeCyberTipline()
    Holder.nca = FakeNca()
    return Holder.fake


@pytest.fixture
def settings(tmp_path: Path, database_url: str, fake_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        queue_immediate=True,
        cybertipline_url=f"{fake_url}/ispws",
        fetch_allow_networks=["127.0.0.1/32"],  # the fake authorities listen on loopback
        cybertipline_timeout_seconds=10,
        nca_api_url=f"{fake_url}/api/reports",
        nca_reference_field="caseReference",
        reporting_reporter_first_name="Rita",
        reporting_reporter_last_name="Reporter",
        reporting_reporter_email="reports@platform.example",
        reporting_platform="Example Photos",
        reporting_retry_base_seconds=30,
    )


@pytest.fixture(autouse=True)
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """Submissions handed to the task queue stay here; tests drive them with ``service.advance``."""
    calls: list[tuple[int, float]] = []
    monkeypatch.setattr(service, "scheduler", lambda report_id, delay: calls.append((report_id, delay)))
    monkeypatch.setattr(capture, "scheduler", lambda case_id: None)
    monkeypatch.setattr(notices, "open_notice", lambda *a, **k: None)
    monkeypatch.setattr(referrals, "refer", lambda *a, **k: None)
    return calls


@pytest.fixture
def factory(engine: Engine):  # type: ignore[no-untyped-def]
    return make_sessionmaker(engine)


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").rotate(seed * 7).resize((48, 48)).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _credentials(db: Session, settings: Settings, fake: FakeCyberTipline) -> None:
    service.set_credentials(db, settings, SYSTEM, "ncmec", fake.username, fake.password)
    service.set_credentials(db, settings, SYSTEM, "nca", "org-admin", Holder.nca.token)
    db.commit()


def _confirmed_platform_case(db: Session, settings: Settings, seed: int = 1) -> tuple[Case, Item, bytes]:
    """A platform's match sent to review (channel "match"), its item assessed and QA-confirmed."""
    data = _png(seed)
    done = intake.submit(
        db,
        settings,
        SYSTEM,
        intake.ReportIn(
            channel="match",
            url=f"https://photos.example/p/{seed}",
            external_id=f"match:{seed}",
            signals=[("md5", hashlib.md5(data).hexdigest())],
        ),
        partner="key:platform",
    )
    item = Item(
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        sha1=hashlib.sha1(data).hexdigest(),
        media="image",
        mime="image/png",
        size=len(data),
    )
    db.add(item)
    db.flush()
    item.evidence_id = evidence.put(
        db, settings, data, media_type="image/png", purpose="capture", subject=f"item:{item.id}"
    )
    db.add(
        CaseItem(case_id=done.case.id, item_id=item.id, media_url=f"https://photos.example/{seed}.png", found_as="img")
    )
    db.add(Capture(case_id=done.case.id, state="done", media_found=1))
    done.case.state = "captured"
    db.commit()
    db.refresh(item)
    saved = assessment.assess_item(db, settings, ANALYST, item.id, item.version, CSAM)
    db.commit()
    result = assessment.qa(db, settings, SENIOR, saved.assessment.id, "confirm", "checked")
    db.commit()
    assert len(result.authority_reports) == 1, result
    return done.case, item, data


def _key(db: Session, name: str, scopes: list[str]) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _draft(db: Session, case: Case) -> AuthorityReport:
    row = db.scalar(select(AuthorityReport).where(AuthorityReport.case_id == case.id))
    assert row is not None
    return row


def _actions(db: Session, prefix: str) -> list[str]:
    return [a for a in db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)) if a.startswith(prefix)]


# ---- end to end ---------------------------------------------------------------------------------


def test_a_reviewed_decision_becomes_a_filed_cybertipline_report(
    client: TestClient,
    db: Session,
    settings: Settings,
    factory: Any,
    fake: FakeCyberTipline,
    queued: list[tuple[int, float]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    case, item, data = _confirmed_platform_case(db, settings)
    row = _draft(db, case)
    assert (row.state, row.authority, row.source, row.owner) == ("draft", "ncmec", "decision", "key:platform")
    assert queued == []  # nothing is sent before a person approves (auto-submit is off)

    # The platform adds what only it knows: the uploading account and its IP capture events.
    platform = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["reports:write"])
    other = _key(db, "other-platform", ["reports:write"])
    db.commit()
    facts = {
        "facts": {
            "person": {"esp_identifier": "user-4711", "screen_name": "meadow_fan"},
            "annotations": ["sextortion"],
        },
        "ip_events": [
            {"ip_address": "192.0.2.10", "event_name": "Upload", "at": "2026-05-01T10:00:00+00:00", "port": 51234},
            {"ip_address": "2001:db8::5", "event_name": "Login", "at": "2026-04-30T08:00:00+01:00"},
        ],
    }
    url = f"/v1/authority-reports/{row.reference}/facts"
    assert client.post(url, json=facts, headers=other).status_code == 404  # another platform's draft: not there
    added = client.post(url, json=facts, headers={"authorization": f"Bearer {platform.secret}"})
    assert added.status_code == 200, added.text
    assert [e["event_name"] for e in added.json()["ip_events"]] == ["Login", "Upload"]
    bad = client.post(
        url,
        json={"ip_events": [{"ip_address": "not-an-ip", "at": "2026-05-01T10:00:00Z"}]},
        headers={"authorization": f"Bearer {platform.secret}"},
    )
    assert bad.status_code == 422 and "'not-an-ip' is not an IPv4 or IPv6 address" in bad.json()["detail"]

    _credentials(db, settings, fake)
    qa = _key(db, "senior", ["qa", "reports:read"])
    assert client.post(f"/v1/authority-reports/{row.reference}/submit", headers=other).status_code == 403
    approved = client.post(f"/v1/authority-reports/{row.reference}/submit", headers=qa)
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    assert queued == [(row.id, 0.0)]

    final = service.advance(factory, settings, row.id)
    assert (final.state, final.remote_id) == ("submitted", "100001")
    assert fake.calls == ["submit", "upload", "fileinfo", "finish"]
    sent = fake.reports["100001"]
    assert sent.state == "finished"
    doc = sent.document
    assert doc.findtext("incidentSummary/incidentType") == cybertipline.INCIDENT_TYPES[0]
    assert doc.find("incidentSummary/reportAnnotations/sextortion") is not None
    assert doc.findtext("internetDetails/webPageIncident/url") == "https://photos.example/p/1"
    assert doc.findtext("reporter/reportingPerson/email") == "reports@platform.example"
    assert doc.findtext("personOrUserReported/espIdentifier") == "user-4711"
    assert [e.findtext("eventName") for e in doc.findall("personOrUserReported/ipCaptureEvent")] == ["Login", "Upload"]
    (uploaded,) = sent.files.values()
    assert uploaded["data"] == data  # the original bytes, out of the vault
    details = uploaded["details"]
    assert {h.get("hashType"): h.text for h in details.findall("originalFileHash")} == {
        "MD5": item.md5,
        "SHA1": item.sha1,
        "SHA256": item.sha256,
    }
    assert details.find("fileAnnotations/possibleSelfProduction") is not None
    assert details.find("industryClassification") is None  # no hash-sharing MOU signed (the default)
    assert details.findtext("ipCaptureEvent/port") == "51234"

    with factory() as check:
        stored = check.get_one(AuthorityReport, row.id)
        assert stored.last_request_id == "req-0004"
        kept = check.scalars(select(EvidenceObject).where(EvidenceObject.deleted_at.is_(None))).all()
        assert {o.purpose for o in kept} == {"capture", "authority_report"}
        for obj in kept:  # a year from filing (US default), for the file sent and the document
            assert obj.retain_until is not None
            assert abs((obj.retain_until - stored.submitted_at).days - 365) <= 1  # type: ignore[operator]
        document = evidence.get(check, settings, stored.document_id)  # type: ignore[arg-type]
        assert document.startswith(b"<?xml") and b"user-4711" in document
        assert _actions(check, "authority_report.") == [
            "authority_report.draft",
            "authority_report.update",
            "authority_report.approve",
            "authority_report.open",
            "authority_report.submitted",
        ]
        assert "evidence.read" in _actions(check, "evidence.")
    # The password never appears in a log line, and the stored credential is not it.
    assert fake.password not in caplog.text
    assert fake.password not in db.scalar(
        select(AuthorityCredential.secret_sealed).where(AuthorityCredential.authority == "ncmec")
    )  # type: ignore[operator]
    shown = client.get(f"/v1/authority-reports/{row.reference}", headers=qa).json()
    assert shown["state"] == "submitted" and shown["files"][0]["uploaded"] is True
    assert fake.password not in json.dumps(shown)


def test_a_retryable_failure_is_retried_with_backoff_and_a_refusal_stops_with_the_request_id(
    db: Session, settings: Settings, factory: Any, fake: FakeCyberTipline, queued: list[tuple[int, float]]
) -> None:
    case, _item, _data = _confirmed_platform_case(db, settings)
    _credentials(db, settings, fake)
    row = _draft(db, case)
    fake.fail["submit"] = [(503, None), (200, 1000)]
    service.approve(db, settings, SYSTEM, row)
    db.commit()
    queued.clear()
    first = service.advance(factory, settings, row.id)
    assert (first.state, first.attempts, first.remote_id) == ("approved", 1, None)
    assert first.last_error == "/submit: NCMEC answered HTTP 503 [Request-ID req-0001]"
    assert queued == [(row.id, 30.0)]
    assert service.advance(factory, settings, row.id).attempts == 1  # not due yet: nothing happens
    second = service.advance(factory, settings, row.id, now=utcnow() + timedelta(seconds=31))
    assert second.last_error == "/submit: Server Error (code 1000: server error) [Request-ID req-0002]"
    assert queued[-1] == (row.id, 60.0)  # doubled
    third = service.advance(factory, settings, row.id, now=utcnow() + timedelta(seconds=120))
    assert third.state == "submitted" and fake.submits == 1 and len(fake.finished()) == 1

    # A validation failure is not retried: failed, with NCMEC's code, words and Request-ID.
    case2, _i, _d = _confirmed_platform_case(db, settings, seed=2)
    row2 = _draft(db, case2)
    fake.fail["fileinfo"] = [(400, 4100)]
    service.approve(db, settings, SYSTEM, row2)
    db.commit()
    failed = service.advance(factory, settings, row2.id)
    assert failed.state == "failed"
    assert re.fullmatch(
        r"/fileinfo: Refused \(code 4100: validation failed\) \[Request-ID req-\d{4}\]", failed.last_error
    )
    with factory() as check:
        assert service.summary(check, check.get_one(AuthorityReport, row2.id))["half_finished"] is True


def test_a_crash_between_submit_and_finish_resumes_without_a_second_report(
    db: Session, settings: Settings, factory: Any, fake: FakeCyberTipline, monkeypatch: pytest.MonkeyPatch
) -> None:
    case, _item, _data = _confirmed_platform_case(db, settings)
    _credentials(db, settings, fake)
    row = _draft(db, case)
    service.approve(db, settings, SYSTEM, row)
    db.commit()

    def crash(step: str) -> None:
        if step == "upload":
            raise KeyboardInterrupt("the worker died")

    monkeypatch.setattr(service, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        service.advance(factory, settings, row.id)
    with factory() as check:
        half = service.summary(check, check.get_one(AuthorityReport, row.id))
    assert (half["state"], half["remote_id"], half["half_finished"]) == ("opened", "100001", True)
    assert half["files"][0]["uploaded"] is True and half["files"][0]["details_sent"] is False
    # While the dead worker's lease runs nobody else takes it; after, the next attempt resumes.
    monkeypatch.setattr(service, "after_step", lambda step: None)
    assert service.advance(factory, settings, row.id).state == "opened"
    later = utcnow() + timedelta(hours=1)
    assert service.advance(factory, settings, row.id, now=later).state == "submitted"
    assert fake.submits == 1 and len(fake.reports["100001"].files) == 1
    assert fake.calls == ["submit", "upload", "fileinfo", "finish"]

    # The finish reached NCMEC but its answer was lost: sent again, "already finished" counts as done.
    case2, _i, _d = _confirmed_platform_case(db, settings, seed=3)
    row2 = _draft(db, case2)
    service.approve(db, settings, SYSTEM, row2)
    db.commit()

    def lost(step: str) -> None:
        if step == "finish-sent":
            raise ConnectionError("answer lost")

    monkeypatch.setattr(service, "after_step", lost)
    with pytest.raises(ConnectionError):
        service.advance(factory, settings, row2.id)
    monkeypatch.setattr(service, "after_step", lambda step: None)
    done = service.advance(factory, settings, row2.id, now=utcnow() + timedelta(hours=1))
    assert done.state == "submitted" and done.remote_id == "100002"
    assert fake.submits == 2 and len(fake.finished()) == 2  # one per case, never a duplicate


def test_retraction_before_finish_and_refusal_after(
    db: Session,
    settings: Settings,
    factory: Any,
    fake: FakeCyberTipline,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
) -> None:
    case, _item, _data = _confirmed_platform_case(db, settings)
    _credentials(db, settings, fake)
    row = _draft(db, case)
    service.approve(db, settings, SYSTEM, row)
    db.commit()

    def crash(step: str) -> None:
        raise KeyboardInterrupt("stopped after submit")

    monkeypatch.setattr(service, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        service.advance(factory, settings, row.id)
    monkeypatch.setattr(service, "after_step", lambda step: None)
    with factory() as session:  # the stopped worker's lease is over
        session.get_one(AuthorityReport, row.id).lease_until = None
        session.commit()
    result = cli(settings, "authority-reports", "retract", row.reference)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"reference": row.reference, "state": "retracted", "remote_id": "100001"}
    assert fake.reports["100001"].state == "retracted" and fake.calls[-1] == "retract"
    # Nothing resumes a retracted report.
    assert service.advance(factory, settings, row.id, now=utcnow() + timedelta(hours=2)).state == "retracted"

    case2, _i, _d = _confirmed_platform_case(db, settings, seed=4)
    row2 = _draft(db, case2)
    submitted = cli(settings, "authority-reports", "submit", row2.reference, "--now")
    assert submitted.exit_code == 0, submitted.output
    assert json.loads(submitted.stdout)["state"] == "submitted"
    refused = cli(settings, "authority-reports", "retract", row2.reference)
    assert refused.exit_code == 1
    assert "was filed (ncmec id 100002): a filed report cannot be retracted through the API" in refused.stderr
    listing = cli(settings, "authority-reports", "ls")
    assert row.reference in listing.stdout and "retracted" in listing.stdout and "submitted" in listing.stdout
    shown = json.loads(cli(settings, "authority-reports", "show", row2.reference).stdout)
    assert shown["remote_id"] == "100002"
    # Neither the stored password nor the object store's credentials are in `seawall config`.
    config = cli(settings, "config", SEAWALL_EVIDENCE_STORE_OPTIONS='{"secret": "s3-secret-value"}')
    assert config.exit_code == 0, config.output
    assert fake.password not in config.stdout and "s3-secret-value" not in config.stdout
    assert json.loads(config.stdout)["evidence_store_options"] == "********"


def _confirmed_public_case(db: Session, settings: Settings, seed: int) -> assessment.QaResult:
    """The hotline's own case (a public report), its item assessed and QA-confirmed."""
    data = _png(seed)
    done = intake.submit(db, settings, SYSTEM, intake.ReportIn(channel="public", url=f"https://forum.example/t/{seed}"))
    item = Item(
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        sha1=hashlib.sha1(data).hexdigest(),
        media="image",
        mime="image/png",
        size=len(data),
    )
    db.add(item)
    db.flush()
    db.add(CaseItem(case_id=done.case.id, item_id=item.id))
    db.commit()
    db.refresh(item)
    saved = assessment.assess_item(db, settings, ANALYST, item.id, item.version, CSAM)
    db.commit()
    result = assessment.qa(db, settings, SENIOR, saved.assessment.id, "confirm", "checked")
    db.commit()
    return result


def test_the_operators_policy_decides_which_decisions_are_drafted_and_auto_submitted(
    db: Session, settings: Settings, queued: list[tuple[int, float]]
) -> None:
    assert _confirmed_public_case(db, settings, 5).authority_reports == []  # the hotline's own case: not by default
    assert db.scalar(select(AuthorityReport.id)) is None
    policy = settings.model_copy(
        update={
            "reporting_operator_is_reporter": True,
            "reporting_auto_submit": True,
            "reporting_authorities": ["ncmec", "nca"],
        }
    )
    drafted = _confirmed_public_case(db, policy, 6).authority_reports
    rows = db.scalars(select(AuthorityReport).order_by(AuthorityReport.authority)).all()
    assert [r.reference for r in rows] == sorted(drafted, key=lambda ref: service.get(db, ref).authority)
    assert [(r.authority, r.state, r.owner, r.approved_by) for r in rows] == [
        ("nca", "approved", None, "system"),
        ("ncmec", "approved", None, "system"),
    ]
    assert sorted(queued) == sorted((r.id, 0.0) for r in rows)  # handed to the queue after the commit
    assert rows[0].due_at == rows[0].created_at + timedelta(hours=72)  # priority 3 by default
    # A submission whose task was lost (a worker died before taking it) is queued again by the sweep.
    queued.clear()
    rows[0].next_attempt_at = utcnow() + timedelta(minutes=10)  # a retry not due yet
    rows[1].next_attempt_at = utcnow() - timedelta(minutes=10)
    db.commit()
    assert service.requeue_overdue(db) == [rows[1].id] and queued == [(rows[1].id, 0.0)]
    # A draft the policy cannot submit (no reporter email) stays a draft; the confirmation stands.
    unset = policy.model_copy(update={"reporting_reporter_email": None, "reporting_authorities": ["ncmec"]})
    (reference,) = _confirmed_public_case(db, unset, 7).authority_reports
    stuck = service.get(db, reference)
    assert stuck.state == "draft"
    assert stuck.last_error == (
        f"authority report {reference} cannot be submitted: the reporting person's email is required "
        "(set SEAWALL_REPORTING_REPORTER_EMAIL)"
    )


# ---- NCA --------------------------------------------------------------------------------------


def _documented_pack_fields() -> list[str]:
    text = (ROOT / "docs" / "reporting.md").read_text()
    section = text.split("## The NCA report pack", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


def test_nca_pack_has_the_documented_fields_priorities_and_deadlines(
    client: TestClient, db: Session, settings: Settings, factory: Any, fake: FakeCyberTipline
) -> None:
    _credentials(db, settings, fake)
    platform = _key(db, "platform", ["reports:write"])
    qa = _key(db, "senior", ["qa", "reports:read"])
    body = {
        "authority": "nca",
        "external_id": "upload-991",
        "priority": 1,
        "facts": {
            "incident_at": "2026-05-01T10:00:00+00:00",
            "urls": ["https://photos.example/p/9"],
            "person": {"esp_identifier": "user-9", "screen_name": "lake_view", "emails": ["u9@mail.example"]},
        },
        "files": [
            {
                "file_name": "beach.jpg",
                "sha256": "a" * 64,
                "md5": "b" * 32,
                "classification": "B2",
                "exif": {"Model": "Test Camera"},
            }
        ],
        "ip_events": [
            {"ip_address": "198.51.100.7", "port": 443, "event_name": "Upload", "at": "2026-05-01T09:59:00Z"}
        ],
    }
    created = client.post("/v1/authority-reports", json=body, headers=platform)
    assert created.status_code == 201, created.text
    again = client.post("/v1/authority-reports", json=body, headers=platform)
    assert again.status_code == 200 and again.json()["reference"] == created.json()["reference"]
    reference = created.json()["reference"]
    row = service.get(db, reference)
    assert row.due_at == row.created_at + timedelta(hours=1)  # priority 1: immediately (operator's 1 h)

    pack = client.get(f"/v1/authority-reports/{reference}/nca-pack", headers=qa).json()
    documented = _documented_pack_fields()
    assert documented == list(nca.PACK_FIELDS) == list(pack)
    assert pack["priority"] == 1 and pack["priority_meaning"].startswith("immediate threat")
    assert pack["files"] == [
        {
            "file_name": "beach.jpg",
            "hashes": {"md5": "b" * 32, "sha256": "a" * 64},
            "classification": "B2",
            "uploaded_at": None,
        }
    ]
    assert pack["upload"]["events"][0]["port"] == 443
    assert pack["upload"]["exif"] == [{"sha256": "a" * 64, "exif": {"Model": "Test Camera"}}]
    assert pack["account"]["username"] == "lake_view" and pack["account"]["emails"] == ["u9@mail.example"]
    assert pack["reporter"] == {"name": "Rita Reporter", "email": "reports@platform.example", "telephone": None}

    # Overdue once its deadline passes unfiled; priority 3 gets the operator's 72 h.
    with factory() as session:
        stored = session.get_one(AuthorityReport, row.id)
        assert service.overdue(stored) is False
        assert service.overdue(stored, utcnow() + timedelta(hours=2)) is True
        stored.due_at = utcnow() - timedelta(minutes=1)
        session.commit()
    assert client.get(f"/v1/authority-reports/{reference}", headers=qa).json()["overdue"] is True
    assert nca.deadline(row.created_at, 3, settings.nca_priority_hours) == row.created_at + timedelta(hours=72)

    # Sent to the NCA's API (configurable endpoint and answer field); no longer overdue once filed.
    assert client.post(f"/v1/authority-reports/{reference}/submit", headers=qa).status_code == 200
    filed = service.advance(factory, settings, row.id)
    assert (filed.state, filed.remote_id) == ("submitted", "NCA-00001")
    assert Holder.nca.packs[0]["reference"] == reference and list(Holder.nca.packs[0]) == list(nca.PACK_FIELDS)
    assert client.get(f"/v1/authority-reports/{reference}", headers=qa).json()["overdue"] is False


def test_bad_input_gets_clear_errors_and_saves_nothing(
    client: TestClient, db: Session, settings: Settings, fake: FakeCyberTipline
) -> None:
    platform = _key(db, "platform", ["reports:write"])
    cases = [
        ({"external_id": "x", "authority": "fbi"}, "authority is one of ncmec, nca (got 'fbi')"),
        ({"external_id": "x", "facts": {"incident_type": "CSAM"}}, "incident_type is one of:"),
        ({"external_id": "x", "facts": {"incident_at": "2026-05-01T10:00:00"}}, "incident_at carries a time zone"),
        (
            {"external_id": "x", "files": [{"md5": "c" * 32, "classification": "C3"}]},
            "classification is A1, A2, B1 or B2",
        ),
        ({"external_id": "x", "files": [{"file_name": "a.png"}]}, "a file has at least one of md5, sha1, sha256"),
    ]
    for body, message in cases:
        answer = client.post("/v1/authority-reports", json=body, headers=platform)
        assert answer.status_code == 422 and message in answer.json()["detail"], (body, answer.text)
    assert db.scalar(select(AuthorityReport.id)) is None
    with pytest.raises(cybertipline.DocumentInvalid, match="has no time zone"):
        cybertipline.file_details_xml(
            "1", "f", cybertipline.FileFacts("a", None, None, None, None, [], utcnow().replace(tzinfo=None), {})
        )
    # Without credentials a submission stops at failed, saying how to store them.
    row, _ = service.create_from_api(
        db, settings, SYSTEM, owner="key:p", authority="ncmec", external_id="y", facts={}, files=[], events=[]
    )
    service.approve(db, settings, SYSTEM, row)
    db.commit()
    failed = service.advance(make_sessionmaker(db.get_bind()), settings, row.id)  # type: ignore[arg-type]
    assert failed.state == "failed"
    assert failed.last_error == "no ncmec credentials stored: run 'seawall authority-reports credentials ncmec'"


def test_documents_are_validated_against_the_operators_schema_when_present(
    db: Session, settings: Settings, factory: Any, fake: FakeCyberTipline, cli: Any
) -> None:
    """A tiny schema the fake serves stands in for NCMEC's (none is shipped): fetched with the CLI,
    then every document is checked against it before it is sent."""
    fake.xsd = (
        f'<?xml version="1.0"?><xs:schema xmlns:xs="{cybertipline.XSD_NAMESPACE}">'
        '<xs:element name="report"><xs:complexType><xs:sequence>'
        '<xs:element name="incidentSummary" type="xs:anyType"/>'
        '<xs:element name="reporter" type="xs:anyType"/>'
        "</xs:sequence></xs:complexType></xs:element></xs:schema>"
    ).encode()
    _credentials(db, settings, fake)
    fetched = cli(settings, "authority-reports", "fetch-xsd")
    assert fetched.exit_code == 0, fetched.output
    assert cybertipline.schema_path(settings.home).read_bytes() == fake.xsd
    case, _item, _data = _confirmed_platform_case(db, settings)
    row = _draft(db, case)  # its internetDetails is not in the tiny schema: refused before sending
    service.approve(db, settings, SYSTEM, row)
    db.commit()
    failed = service.advance(factory, settings, row.id)
    assert failed.state == "failed" and "fails NCMEC's schema (cybertipline.xsd)" in failed.last_error
    assert "submit" not in fake.calls


@pytest.fixture
def cli():  # type: ignore[no-untyped-def]
    from seawall.cli import app as cli_app
    from seawall.config import reset_settings

    def run(settings: Settings, *args: str, **extra: str) -> Any:
        env = {
            "SEAWALL_HOME": str(settings.home),
            "SEAWALL_DATABASE_URL": settings.database_url or "",
            "SEAWALL_SECRET_KEY": "test-secret-key-not-for-production",
            "SEAWALL_CYBERTIPLINE_URL": settings.cybertipline_url,
            "SEAWALL_FETCH_ALLOW_NETWORKS": '["127.0.0.1/32"]',
            "SEAWALL_REPORTING_REPORTER_EMAIL": "reports@platform.example",
            "SEAWALL_QUEUE_IMMEDIATE": "true",
            **extra,
        }
        reset_settings()
        from seawall import db as seawall_db

        seawall_db._default_engine = None  # type: ignore[attr-defined]
        try:
            return CliRunner().invoke(cli_app, list(args), env=env)
        finally:
            reset_settings()
            if seawall_db._default_engine is not None:  # type: ignore[attr-defined]
                seawall_db._default_engine.dispose()  # type: ignore[attr-defined]
            seawall_db._default_engine = None  # type: ignore[attr-defined]

    return run


# ---- console ----------------------------------------------------------------------------------


def _console_login(client: TestClient, db: Session, role: str) -> str:
    auth_service.create_user(db, SYSTEM, username=f"u-{role}", role=role, password="a long password")
    db.commit()
    page = client.get("/login", headers={"accept": "text/html"})
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = client.post(
        "/login",
        data={"username": f"u-{role}", "password": "a long password", "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    page = client.get("/authority-reports", headers={"accept": "text/html"})
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_console_forms_need_their_token_and_the_qa_role(
    client: TestClient, db: Session, settings: Settings, queued: list[tuple[int, float]]
) -> None:
    row, _ = service.create_from_api(
        db,
        settings,
        SYSTEM,
        owner="key:p",
        authority="nca",
        external_id="c1",
        facts={},
        files=[],
        events=[],
        priority=1,
    )
    db.commit()
    token = _console_login(client, db, "analyst")
    listing = client.get("/authority-reports")
    assert row.reference in listing.text and "overdue" not in listing.text
    detail = client.get(f"/authority-reports/{row.reference}")
    assert detail.status_code == 200 and "Submit to NCA" not in detail.text  # an analyst cannot submit
    url = f"/authority-reports/{row.reference}/submit"
    assert client.post(url, data={}, follow_redirects=False).status_code == 403  # no token
    assert client.post(url, data={"csrf_token": token}, follow_redirects=False).status_code == 403  # no qa role
    assert queued == []


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_senior_analyst_submits_a_draft_in_the_console(
    live_server: Any, page: Any, db: Session, settings: Settings, queued: list[tuple[int, float]]
) -> None:
    from conftest import save_screenshot

    row, _ = service.create_from_api(
        db,
        settings,
        SYSTEM,
        owner="key:p",
        authority="ncmec",
        external_id="b1",
        facts={
            "person": {"esp_identifier": "user-12", "screen_name": "river_walk"},
            "urls": ["https://photos.example/p/12"],
        },
        files=[
            service.ApiFile(sha256="d" * 64, file_name="river.jpg", classification="A2", annotations=["generativeAi"])
        ],
        events=[service.ApiEvent("203.0.113.9", "Upload", utcnow() - timedelta(hours=3), port=50000)],
    )
    auth_service.create_user(db, SYSTEM, username="senior1", role="senior_analyst", password="a long password 1")
    db.commit()
    page.goto(live_server.url + "/authority-reports")
    page.get_by_label("Username").fill("senior1")
    page.get_by_label("Password").fill("a long password 1")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/authority-reports")
    assert page.get_by_role("heading", level=1).inner_text() == "Authority reports"
    save_screenshot(page, "authority-reports-list")
    page.get_by_role("link", name=row.reference).click()
    assert "river_walk" in page.content() and "203.0.113.9" in page.content()
    save_screenshot(page, "authority-report-draft")
    page.get_by_role("button", name="Submit to NCMEC").click()
    page.wait_for_url(live_server.url + f"/authority-reports/{row.reference}")
    assert "approved" in page.locator("table.summary").inner_text()
    assert queued == [(row.id, 0.0)]


# ---- lawEnforcement, intendedRecipient, victim ------------------------------------------------

SECTIONS = {
    "urls": ["https://photos.example/p/77"],
    "person": {"esp_identifier": "user-77"},
    "law_enforcement": {
        "agency_name": "Example County Sheriff",
        "case_number": "EC-2026-0042",
        "officer": {"first_name": "Olive", "last_name": "Officer", "emails": ["o.officer@sheriff.example"]},
        "reported_to_le": True,
        "served_legal_process_international": True,
        "flea_country": "GB",
    },
    "intended_recipients": [{"esp_identifier": "user-78", "screen_name": "lake_view", "prior_reports": [123456]}],
    "victims": [
        {"person": {"first_name": "Vera", "age": 14}, "esp_identifier": "user-79", "school_name": "Hill School"},
        {"screen_name": "pine_cone"},
    ],
}


def test_law_enforcement_recipients_and_victims_are_sent_in_the_schemas_order(
    client: TestClient, db: Session, settings: Settings, factory: Any, fake: FakeCyberTipline
) -> None:
    platform = _key(db, "platform", ["reports:write"])
    created = client.post(
        "/v1/authority-reports", json={"external_id": "sec-1", "files": [{"md5": "a" * 32}]}, headers=platform
    )
    assert created.status_code == 201, created.text
    reference = created.json()["reference"]
    url = f"/v1/authority-reports/{reference}/facts"

    # Strict: each refusal says what is wrong, and none changes the draft.
    refusals = [
        ({"law_enforcement": {"case_number": "1"}}, "agency_name"),
        ({"law_enforcement": {"agency_name": "   "}}, "law_enforcement.agency_name is required"),
        (
            {"law_enforcement": {"agency_name": "A", "flea_country": "GB"}},
            "set served_legal_process_international to true with it",
        ),
        ({"law_enforcement": {"agency_name": "A", "flea_country": "gb"}}, "flea_country"),
        (
            {"victims": [{"esp_identifier": "u"}, {}]},
            "victims[1] names nobody: give at least one of person, esp_identifier, screen_name, display_names, "
            "profile_urls, school_name",
        ),
        ({"intended_recipients": [{"additional_info": "x"}]}, "intended_recipients[0] names nobody"),
        ({"victims": [{"person": {"emails": ["not-an-email"]}}]}, "emails"),
        (
            {"victims": [{"person": {"date_of_birth": "2999-01-01"}}]},
            "victims[0].person.date_of_birth is in the future",
        ),
        ({"victims": [{"person": {"age": -1}}]}, "age"),
        ({"victims": [{"nickname": "x"}]}, "nickname"),
    ]
    for facts, message in refusals:
        answer = client.post(url, json={"facts": facts}, headers=platform)
        assert answer.status_code == 422 and message in answer.text, (facts, answer.text)
    assert set(
        client.get(f"/v1/authority-reports/{reference}", headers=_key(db, "r", ["reports:read"])).json()["facts"]
    ) == {"incident_type", "incident_at", "platform", "reporter", "detection"}

    added = client.post(url, json={"facts": SECTIONS}, headers=platform)
    assert added.status_code == 200, added.text
    assert added.json()["facts"]["law_enforcement"]["flea_country"] == "GB"
    assert added.json()["facts"]["victims"][0]["person"] == {"first_name": "Vera", "age": 14}

    _credentials(db, settings, fake)
    row = service.get(db, reference)
    service.approve(db, settings, SYSTEM, row)
    db.commit()
    assert service.advance(factory, settings, row.id).state == "submitted"
    doc = fake.reports["100001"].document  # the fake checked every section's order and required children
    assert [child.tag for child in doc] == [
        "incidentSummary",
        "internetDetails",
        "lawEnforcement",
        "reporter",
        "personOrUserReported",
        "intendedRecipient",
        "victim",
        "victim",
    ]
    law = doc.find("lawEnforcement")
    assert [c.tag for c in law] == [
        "agencyName",
        "caseNumber",
        "officerContact",
        "reportedToLe",
        "servedLegalProcessInternational",
    ]
    assert law.findtext("officerContact/email") == "o.officer@sheriff.example"
    assert law.find("servedLegalProcessInternational").get("fleaCountry") == "GB"  # type: ignore[union-attr]
    assert law.findtext("servedLegalProcessInternational") == "true"
    recipient = doc.find("intendedRecipient")
    assert [c.tag for c in recipient] == ["espIdentifier", "screenName", "priorCTReports"]  # type: ignore[union-attr]
    first, second = doc.findall("victim")
    assert [c.tag for c in first] == ["victimPerson", "espIdentifier", "schoolName"]
    assert [c.tag for c in first.find("victimPerson")] == ["firstName", "age"]  # type: ignore[union-attr]
    assert [c.tag for c in second] == ["victimPerson", "screenName"]  # victimPerson is required, even empty

    # A later list replaces the earlier one (sending the same facts twice never doubles them).
    row2, _ = service.create_from_api(
        db,
        settings,
        SYSTEM,
        owner="key:platform",
        authority="ncmec",
        external_id="sec-2",
        facts={},
        files=[],
        events=[],
    )
    db.commit()
    url2 = f"/v1/authority-reports/{row2.reference}/facts"
    for _ in range(2):
        assert (
            client.post(url2, json={"facts": {"victims": [{"screen_name": "a"}]}}, headers=platform).status_code == 200
        )
    assert client.post(url2, json={"facts": {"victims": []}}, headers=platform).json()["facts"]["victims"] == []


def test_the_fake_refuses_sections_out_of_order_or_without_their_required_children() -> None:
    from tests.reporting.fake_cybertipline import Invalid, check_order

    head = (
        "<incidentSummary><incidentType>t</incidentType><incidentDateTime>2026-05-01T10:00:00+00:00"
        "</incidentDateTime></incidentSummary>"
    )
    reporter = "<reporter><reportingPerson><email>r@platform.example</email></reportingPerson></reporter>"
    law = "<lawEnforcement><agencyName>A</agencyName></lawEnforcement>"
    victim = "<victim><victimPerson/></victim>"
    check_order(SafeET.fromstring(f"<report>{head}{law}{reporter}{victim}</report>"))  # the right order
    bad = {
        f"<report>{head}{reporter}{law}</report>": "lawEnforcement is out of order",
        f"<report>{head}{victim}{reporter}</report>": "reporter is out of order",
        f"<report>{head}{reporter}<victim><schoolName>s</schoolName></victim></report>": "victimPerson is required",
        f"<report>{head}<lawEnforcement><caseNumber>1</caseNumber></lawEnforcement>{reporter}</report>": (
            "agencyName is required"
        ),
        f"<report>{head}<lawEnforcement><caseNumber>1</caseNumber><agencyName>A</agencyName></lawEnforcement>"
        f"{reporter}</report>": "agencyName is out of order",
        f"<report>{head}<lawEnforcement><agencyName>A</agencyName><reportedToLe>yes</reportedToLe>"
        f"</lawEnforcement>{reporter}</report>": "a boolean is true or false",
        f"<report>{head}{law}{law}{reporter}</report>": "lawEnforcement appears twice",
    }
    for document, message in bad.items():
        with pytest.raises(Invalid, match=re.escape(message)):
            check_order(SafeET.fromstring(document))


# ---- cancel, and a fileinfo whose answer was lost ----------------------------------------------


def _opened(
    db: Session, settings: Settings, factory: Any, monkeypatch: pytest.MonkeyPatch, seed: int
) -> AuthorityReport:
    """A decision's report submitted at NCMEC and left unfinished (the worker stopped after submit)."""
    case, _item, _data = _confirmed_platform_case(db, settings, seed=seed)
    row = _draft(db, case)
    service.approve(db, settings, SYSTEM, row)
    db.commit()

    def crash(step: str) -> None:
        raise KeyboardInterrupt("stopped after submit")

    monkeypatch.setattr(service, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        service.advance(factory, settings, row.id)
    monkeypatch.setattr(service, "after_step", lambda step: None)
    with factory() as session:  # the stopped worker's lease is over
        session.get_one(AuthorityReport, row.id).lease_until = None
        session.commit()
    return row


def test_cancel_a_report_opened_at_ncmec_through_the_api_cli_and_console(
    client: TestClient,
    db: Session,
    settings: Settings,
    factory: Any,
    fake: FakeCyberTipline,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
) -> None:
    _credentials(db, settings, fake)
    row = _opened(db, settings, factory, monkeypatch, seed=5)
    qa = _key(db, "senior", ["qa", "reports:read"])
    writer = _key(db, "platform-w", ["reports:write", "reports:read"])
    url = f"/v1/authority-reports/{row.reference}/cancel"
    assert client.post(url, headers=writer).status_code == 403
    answer = client.post(url, headers=qa)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["state"], answer.json()["remote_id"], answer.json()["half_finished"]) == (
        "cancelled",
        "100001",
        False,
    )
    assert fake.reports["100001"].state == "cancelled" and fake.calls[-1] == "cancel"
    assert answer.json()["last_request_id"] == f"req-{len(fake.calls):04d}"
    calls = len(fake.calls)
    assert client.post(url, headers=qa).json()["state"] == "cancelled" and len(fake.calls) == calls  # idempotent
    assert service.advance(factory, settings, row.id, now=utcnow() + timedelta(hours=2)).state == "cancelled"
    with factory() as check:
        assert _actions(check, "authority_report.")[-1] == "authority_report.cancel"
        event = check.scalars(select(AuditEvent).where(AuditEvent.action == "authority_report.cancel")).one()
        assert (event.actor_type, event.actor, event.object_id) == ("key", "senior", row.reference)
    # Retracting it afterwards changes nothing; submitting it again is refused.
    assert client.post(f"/v1/authority-reports/{row.reference}/retract", headers=qa).json()["state"] == "cancelled"
    refused = client.post(f"/v1/authority-reports/{row.reference}/submit", headers=qa)
    assert refused.status_code == 409 and "is cancelled: only a draft is submitted" in refused.text

    # Only a report opened at NCMEC: a draft has nothing there, a filed one cannot be cancelled.
    draft, _ = service.create_from_api(
        db, settings, SYSTEM, owner="key:p", authority="ncmec", external_id="d1", facts={}, files=[], events=[]
    )
    db.commit()
    not_opened = client.post(f"/v1/authority-reports/{draft.reference}/cancel", headers=qa)
    assert not_opened.status_code == 409
    assert "is draft and not opened at NCMEC: there is nothing to cancel there" in not_opened.json()["detail"]
    assert client.post("/v1/authority-reports/AR-0000000000/cancel", headers=qa).status_code == 404

    # The CLI, on a second opened report; then a filed one is refused.
    row2 = _opened(db, settings, factory, monkeypatch, seed=6)
    done = cli(settings, "authority-reports", "cancel", row2.reference)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"reference": row2.reference, "state": "cancelled", "remote_id": "100002"}
    row3 = _opened(db, settings, factory, monkeypatch, seed=7)
    assert service.advance(factory, settings, row3.id, now=utcnow() + timedelta(hours=1)).state == "submitted"
    filed = cli(settings, "authority-reports", "cancel", row3.reference)
    assert filed.exit_code == 1 and "was filed (ncmec id 100003): a filed report cannot be cancelled" in filed.stderr

    # The console: a form with the page's CSRF token, for the qa role.
    row4 = _opened(db, settings, factory, monkeypatch, seed=8)
    token = _console_login(client, db, "senior_analyst")
    page = client.get(f"/authority-reports/{row4.reference}")
    assert "Cancel at NCMEC" in page.text
    form = f"/authority-reports/{row4.reference}/cancel"
    assert client.post(form, data={}, follow_redirects=False).status_code == 403  # no token
    assert fake.reports["100004"].state == "open"
    sent = client.post(form, data={"csrf_token": token}, follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"] == f"/authority-reports/{row4.reference}"
    assert fake.reports["100004"].state == "cancelled"
    assert "Cancel at NCMEC" not in client.get(f"/authority-reports/{row4.reference}").text


def test_a_lost_fileinfo_answer_is_resent_once_and_a_refusal_says_what_to_do(
    db: Session, settings: Settings, factory: Any, fake: FakeCyberTipline, monkeypatch: pytest.MonkeyPatch
) -> None:
    case, _item, _data = _confirmed_platform_case(db, settings, seed=9)
    _credentials(db, settings, fake)
    row = _draft(db, case)
    service.approve(db, settings, SYSTEM, row)
    db.commit()
    original = cybertipline.CyberTiplineClient.fileinfo

    def lost(self: Any, document: bytes) -> Any:
        original(self, document)  # NCMEC takes the details …
        raise cybertipline.CyberTiplineError("/fileinfo: ReadTimeout", retryable=True)  # … the answer is lost

    monkeypatch.setattr(cybertipline.CyberTiplineClient, "fileinfo", lost)
    first = service.advance(factory, settings, row.id)
    assert (first.state, first.remote_id) == ("opened", "100001")
    (file_id,) = fake.reports["100001"].files
    assert fake.reports["100001"].files[file_id]["details"] is not None
    monkeypatch.setattr(cybertipline.CyberTiplineClient, "fileinfo", original)
    second = service.advance(factory, settings, row.id, now=utcnow() + timedelta(hours=1))
    assert second.state == "failed" and fake.calls == ["submit", "upload", "fileinfo", "fileinfo"]
    assert second.last_error.startswith(
        "/fileinfo: File details already given (code 4000: invalid request) [Request-ID req-0004] — "
    )
    assert (
        f"file {file_id} was uploaded by an earlier attempt, which may have sent its details and lost NCMEC's answer"
        in second.last_error
    )
    assert f"'seawall authority-reports cancel {row.reference}'" in second.last_error
    assert fake.submits == 1 and len(fake.reports["100001"].files) == 1  # never a second report or upload
    assert service.cancel(factory, settings, SYSTEM, row.reference).state == "cancelled"
    assert fake.reports["100001"].state == "cancelled"


def test_the_authorities_are_reached_only_where_the_fetch_rules_allow(fake_url: str) -> None:
    """The clients are built by seawall.fetch: an address the rules refuse is a clear, final error."""
    from seawall.fetch import AddressRules

    client = cybertipline.CyberTiplineClient(f"{fake_url}/ispws", "u", "p", rules=AddressRules(()))
    with client, pytest.raises(cybertipline.CyberTiplineError) as refused:
        client.status()
    assert "127.0.0.1 is not a public address (SEAWALL_FETCH_ALLOW_NETWORKS)" in str(refused.value)
    assert refused.value.retryable is False
    with pytest.raises(nca.NcaError, match="is not a public address") as nca_refused:
        nca.submit(f"{fake_url}/api/reports", "t", {}, reference_field="x", timeout=5, rules=AddressRules(()))
    assert nca_refused.value.retryable is False
