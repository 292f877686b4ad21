"""Intake: the partner API, the public form and status page, deduplication into cases, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.hotline import capture, intake
from seawall.hotline.models import Case, Report, ReportSignal

MD5 = "0" * 31 + "1"


def _key(db: Session, name: str, scopes: list[str]) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The cases handed to capture (instead of the task queue)."""
    cases: list[int] = []
    monkeypatch.setattr(capture, "scheduler", cases.append)
    return cases


def test_partner_reports_dedupe_into_cases_and_resubmissions_are_idempotent(
    client: TestClient, db: Session, scheduled: list[int]
) -> None:
    partner = _key(db, "platform-a", ["reports:write"])
    other = _key(db, "platform-b", ["reports:write"])
    first = client.post(
        "/v1/reports",
        json={"url": "HTTPS://gallery.example:443/albums/x.jpg?utm_source=mail", "external_id": "a-1"},
        headers=partner,
    )
    assert first.status_code == 201
    body = first.json()
    assert re.fullmatch(r"R-[0-9A-Z]{5}-[0-9A-Z]{5}", body["reference"]) and re.fullmatch(r"\d{8}", body["pin"])
    assert body["status"] == "received"
    again = client.post(
        "/v1/reports", json={"url": "https://elsewhere.example/", "external_id": "a-1"}, headers=partner
    )
    assert (again.status_code, again.json()) == (
        200,
        {"reference": body["reference"], "pin": None, "status": "received"},
    )
    # Another partner, the same page spelled differently: a report of its own, in the same case.
    second = client.post("/v1/reports", json={"url": "https://gallery.example/albums/x.jpg"}, headers=other)
    assert second.status_code == 201
    db.rollback()
    reports = db.scalars(select(Report).order_by(Report.id)).all()
    assert [(r.channel, r.partner, r.external_id) for r in reports] == [
        ("partner", "key:platform-a", "a-1"),
        ("partner", "key:platform-b", None),
    ]
    assert reports[0].case_id == reports[1].case_id
    [case] = db.scalars(select(Case)).all()
    assert (case.url_key, case.kind, case.state) == ("https://gallery.example/albums/x.jpg", "url", "open")
    assert scheduled == [case.id]  # captured once, after commit

    mine = client.get(f"/v1/reports/{body['reference']}", headers=partner).json()
    assert (mine["status"], mine["case"], mine["external_id"]) == ("received", case.reference, "a-1")
    assert client.get(f"/v1/reports/{body['reference']}", headers=other).status_code == 404
    assert client.get("/v1/reports/R-00000-00000", headers=partner).status_code == 404


def test_hash_reports_refusals_and_batches(client: TestClient, db: Session, scheduled: list[int]) -> None:
    partner = _key(db, "platform", ["reports:write"])
    hashes = client.post(
        "/v1/reports", json={"signals": [{"signal_type": "MD5", "value": MD5.upper()}]}, headers=partner
    )
    assert hashes.status_code == 201
    for bad, message in [
        ({"url": "javascript:alert(1)"}, "not a web address Seawall can check"),
        ({"url": "ftp://files.example/a"}, "not a web address Seawall can check: unsupported URL scheme 'ftp'"),
        ({}, "a report names a URL or carries hashes"),
        ({"url": "https://a.example/", "site_type": "moon"}, "site_type is one of image_host"),
        ({"signals": [{"signal_type": "pdq", "value": "zz"}]}, "pdq: expected 64 hex digits, got 2"),
    ]:
        refused = client.post("/v1/reports", json=bad, headers=partner)
        assert refused.status_code == 422 and refused.json()["detail"].startswith(message), (bad, refused.text)
    batch = client.post(
        "/v1/reports/batch",
        json={"reports": [{"url": "https://a.example/1"}, {"url": "mailto:x@example"}, {"url": "https://a.example/2"}]},
        headers=partner,
    ).json()["results"]
    assert [r["error"] is None for r in batch] == [True, False, True]
    assert batch[1]["error"].startswith("not a web address Seawall can check: unsupported URL 'mailto:x@example'")
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Report)) == 3
    [signal] = db.scalars(select(ReportSignal)).all()
    assert (signal.signal_type, signal.value) == ("md5", MD5)
    kinds = db.execute(select(Case.kind, func.count()).group_by(Case.kind)).all()
    assert dict(kinds) == {"hashes": 1, "url": 2}
    assert len(scheduled) == 2  # the hash case has no page to capture
    assert (
        client.post("/v1/reports", json={"url": "https://a.example/"}, headers=_key(db, "m", ["match"])).status_code
        == 403
    )


def _form_token(page: Any) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, page.text
    return match.group(1)


def test_public_form_gives_a_reference_and_pin_and_the_status_page_says_only_the_state(
    client: TestClient, db: Session, settings: Settings, scheduled: list[int]
) -> None:
    page = client.get("/report", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'name="url"' in page.text
    sent = client.post(
        "/report",
        data={
            "url": "https://forum.example/t/1",
            "content_type": "images",
            "site_type": "forum",
            "description": "the third post",
            "contact": "reporter@example.org",
            "csrf_token": _form_token(page),
        },
        headers={"accept": "text/html"},
    )
    assert sent.status_code == 200
    reference = re.search(r'id="reference">(R-[0-9A-Z-]+)<', sent.text)
    pin = re.search(r'id="pin">(\d{8})<', sent.text)
    assert reference and pin
    db.rollback()
    row = db.scalar(select(Report))
    assert row is not None and (row.channel, row.site_type, row.content_type) == ("public", "forum", "images")
    assert row.contact_sealed and "reporter@example.org" not in row.contact_sealed
    assert intake.contact_of(settings, row) == "reporter@example.org"
    raw = db.execute(text("SELECT contact_sealed, pin_hash FROM hotline_reports")).one()
    assert pin.group(1) not in raw.pin_hash
    audit = db.scalar(select(AuditEvent).where(AuditEvent.action == "report.create"))
    assert audit is not None and audit.actor == "public report form" and "reporter@" not in json.dumps(audit.details)

    status = client.get("/report/status", headers={"accept": "text/html"})
    answer = client.post(
        "/report/status",
        data={"reference": reference.group(1).lower(), "pin": pin.group(1), "csrf_token": _form_token(status)},
        headers={"accept": "text/html"},
    )
    assert answer.status_code == 200 and 'id="status">received<' in answer.text
    db.rollback()  # a fresh transaction: on SQLite a read that saw older data cannot then write
    db.execute(text("UPDATE hotline_cases SET state = 'notified'"))
    db.commit()
    answer = client.post(
        "/report/status",
        data={"reference": reference.group(1), "pin": pin.group(1), "csrf_token": _form_token(status)},
        headers={"accept": "text/html"},
    )
    assert 'id="status">action taken<' in answer.text
    for ref, code in ((reference.group(1), "00000000"), ("R-00000-00000", pin.group(1))):
        wrong = client.post(
            "/report/status",
            data={"reference": ref, "pin": code, "csrf_token": _form_token(status)},
            headers={"accept": "text/html"},
        )
        assert wrong.status_code == 404 and "could not find a report with that reference and PIN" in wrong.text
    forged = client.post("/report", data={"url": "https://forum.example/t/2"}, headers={"accept": "text/html"})
    assert forged.status_code == 403


def test_the_public_form_is_rate_limited_per_client(
    client: TestClient, db: Session, settings: Settings, scheduled: list[int]
) -> None:
    settings.public_report_limit = 2
    token = _form_token(client.get("/report", headers={"accept": "text/html"}))
    answers = [
        client.post(
            "/report", data={"url": f"https://site.example/{i}", "csrf_token": token}, headers={"accept": "text/html"}
        ).status_code
        for i in range(3)
    ]
    assert answers == [200, 200, 429]
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Report)) == 2
    stored = db.execute(text("SELECT key FROM rate_limit_windows")).scalars().all()
    assert stored and all("testclient" not in k and "127.0.0.1" not in k for k in stored)


def test_reports_cli(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, scheduled: list[int]) -> None:
    from seawall.cli import app as cli_app
    from seawall.config import reset_settings

    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_SECRET_KEY", "cli-test-secret")
    reset_settings()
    runner = CliRunner()
    made = runner.invoke(cli_app, ["reports", "create", "https://a.example/1", "HTTPS://a.example/1#top", "nope://x"])
    assert made.exit_code == 1, made.output
    lines = [json.loads(line) for line in made.output.strip().splitlines()]
    assert [line.get("new_case") for line in lines] == [True, False, None]
    assert lines[0]["case"] == lines[1]["case"] and lines[2]["error"].startswith("not a web address")
    listed = runner.invoke(cli_app, ["reports", "ls", "--status", "received"])
    assert listed.exit_code == 0 and listed.output.count("import") == 2
    shown = runner.invoke(cli_app, ["reports", "show", lines[0]["reference"].lower()])
    assert shown.exit_code == 0 and f"case: {lines[0]['case']} (open); public status: received" in shown.output
    reset_settings()


def test_matches_a_policy_sends_to_review_become_hotline_reports_once_per_content_and_caller(
    client: TestClient, db: Session, scheduled: list[int]
) -> None:
    from seawall.lists import service as lists_service
    from seawall.lists.records import EntryRecord
    from seawall.matching import policies

    known_a, known_c = "a" * 32, "c" * 32
    hashes = lists_service.create_list(db, SYSTEM, name="known", kind="hash")
    lists_service.add_entries(
        db, SYSTEM, hashes, [EntryRecord("md5", known_a, category="A"), EntryRecord("md5", known_c)]
    )
    urls = lists_service.create_list(db, SYSTEM, name="known-urls", kind="url")
    lists_service.add_entries(db, SYSTEM, urls, [EntryRecord("url", "https://pics.example/album/9")])
    words = lists_service.create_list(db, SYSTEM, name="terms", kind="keyword")
    lists_service.add_entries(db, SYSTEM, words, [EntryRecord("keyword", "benignterm")])
    policies.upsert_policy(
        db, SYSTEM, name="to-review", position=10, conditions={}, actions=[{"type": "review", "queue": "default"}]
    )
    db.commit()
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
    platform = _key(db, "platform", ["match"])
    other = _key(db, "other-platform", ["match"])

    for headers in (platform, platform, other):  # the second is a repeat: the same report
        answer = client.get("/v1/match", params={"signal_type": "md5", "value": known_a}, headers=headers)
        assert [a["type"] for a in answer.json()["actions"]] == ["review"]
    client.get("/v1/match", params={"signal_type": "md5", "value": known_c}, headers=platform)
    client.post("/v1/match/url", json={"url": "https://pics.example/album/9"}, headers=platform)
    text_match = client.post("/v1/match/text", json={"text": "a benignterm here"}, headers=platform).json()
    assert [m["list"] for m in text_match["matches"]] == ["terms"]  # matched, but nothing to report

    db.rollback()
    rows = db.scalars(select(Report).order_by(Report.id)).all()
    assert [(r.channel, r.partner, r.url, r.urgent) for r in rows] == [
        ("match", "key:platform", None, True),  # category A goes first
        ("match", "key:other-platform", None, True),
        ("match", "key:platform", None, False),
        ("match", "key:platform", "https://pics.example/album/9", False),
    ]
    signals = [
        [(s.signal_type, s.value) for s in db.scalars(select(ReportSignal).where(ReportSignal.report_id == r.id))]
        for r in rows
    ]
    assert signals == [[("md5", known_a)], [("md5", known_a)], [("md5", known_c)], []]
    assert rows[0].description.startswith("rule 'to-review' (position 10) → review: list=known")
    cases = {c.id: c.kind for c in db.scalars(select(Case))}
    assert sorted(cases.values()) == ["hashes", "hashes", "hashes", "url"]
    assert scheduled == [rows[3].case_id]  # the URL's page is captured
