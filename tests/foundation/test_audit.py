"""The audit chain: every change is recorded; tampering is found and named by `seawall audit verify`."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.cli import app as cli_app
from seawall.config import reset_settings


def _five_events(db: Session) -> None:
    for i in range(5):
        audit.record(db, SYSTEM, "test.event", "thing", i, {"n": i, "note": "ünïcode ✓"})
    db.commit()


@pytest.fixture
def cli(database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    reset_settings()
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli_app, list(args))
    reset_settings()


def test_untouched_chain_verifies_and_exports(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    report = audit.verify(db)
    assert (report.ok, report.checked, report.problem) == (True, 5, None)
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "audit chain intact: 5 events verified" in result.output
    buffer = io.StringIO()
    assert audit.export(db, buffer) == 5
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["prev_hash"] == "0" * 64 and lines[1]["prev_hash"] == lines[0]["hash"]
    assert lines[2]["details"] == {"n": 2, "note": "ünïcode ✓"}


def test_edited_row_is_named(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    db.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(details={"n": 99, "note": "ünïcode ✓"}))
    db.commit()
    report = audit.verify(db)
    assert (report.ok, report.seq, report.checked) == (False, 3, 2)
    assert report.problem == "its content was altered (it no longer matches its hash)"
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "audit chain BROKEN at event 3: its content was altered" in " ".join(result.output.split())


def test_edited_row_with_recomputed_hash_is_caught_at_the_next(db: Session) -> None:
    _five_events(db)
    event = db.get(AuditEvent, 2)
    assert event is not None
    event.action = "test.forged"
    event.hash = audit.event_hash(event)
    db.commit()
    report = audit.verify(db)
    assert (report.ok, report.seq) == (False, 3)
    assert report.problem == "it does not follow event 2 (that event was altered, or this one inserted out of order)"


def test_deleted_row_is_named(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    db.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    db.commit()
    report = audit.verify(db)
    assert (report.ok, report.seq) == (False, 2)
    assert report.problem == "event 2 is missing (deleted); the chain resumes at 3"
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "event 2 is missing (deleted)" in " ".join(result.output.split())


def test_deleted_last_rows_are_named(db: Session) -> None:
    _five_events(db)
    db.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    db.commit()
    report = audit.verify(db)
    assert (report.ok, report.seq, report.checked) == (False, 4, 3)
    assert report.problem == "events 4-5 at the end are missing (deleted)"


def test_reordered_rows_are_named(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    db.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(seq=-1))
    db.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(seq=2))
    db.execute(update(AuditEvent).where(AuditEvent.seq == -1).values(seq=3))
    db.commit()
    report = audit.verify(db)
    assert (report.ok, report.seq) == (False, 2)
    assert report.problem == "its content was altered (it no longer matches its hash)"
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "BROKEN at event 2" in result.output


def test_every_service_change_is_audited_in_the_same_transaction(db: Session) -> None:
    auth_service.create_user(db, SYSTEM, username="dora", role="auditor", password="long enough pw")
    db.rollback()  # the change and its event go together
    assert db.scalars(select(AuditEvent)).all() == []
    auth_service.create_user(db, SYSTEM, username="dora", role="auditor", password="long enough pw")
    auth_service.create_api_key(db, SYSTEM, name="k", scopes=["match"])
    auth_service.revoke_api_key(db, SYSTEM, "k")
    auth_service.set_user_disabled(db, SYSTEM, "dora", True)
    db.commit()
    rows = db.execute(select(AuditEvent.action, AuditEvent.actor, AuditEvent.details).order_by(AuditEvent.seq)).all()
    assert [r.action for r in rows] == ["user.create", "key.create", "key.revoke", "user.disable"]
    assert rows[0].details == {"role": "auditor", "username": "dora"}
    assert {r.actor for r in rows} == {"system"}
    assert audit.verify(db).ok


def test_audit_verify_over_api_for_auditors(client, db: Session) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    new = auth_service.create_api_key(db, SYSTEM, name="auditor-key", scopes=["audit:read"])
    db.commit()
    body = client.get("/v1/audit/verify", headers={"authorization": f"Bearer {new.secret}"}).json()
    assert body == {
        "ok": True,
        "checked": 6,
        "problem": None,
        "seq": None,
        "message": "audit chain intact: 6 events verified",
    }
