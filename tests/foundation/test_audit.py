"""The audit chain: every change is recorded; tampering is found and named by `seawall audit verify`."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seawall import migrate
from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent, AuditHead
from seawall.auth.permissions import SYSTEM
from seawall.cli import app as cli_app
from seawall.config import get_settings, reset_settings
from seawall.db import UTCDateTime, make_engine, make_sessionmaker, utcnow

FORGED = (
    "its keyed MAC does not match: it was written or rewritten by someone without the audit key "
    "(its hash and those after it were recomputed)"
)


def _flat(text: str) -> str:
    return " ".join(text.split())


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
    assert "audit chain intact: 5 events verified with the audit key; no signed checkpoint yet" in _flat(result.output)
    buffer = io.StringIO()
    assert audit.export(db, buffer) == 5
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["prev_hash"] == "0" * 64 and lines[1]["prev_hash"] == lines[0]["hash"]
    assert lines[2]["details"] == {"n": 2, "note": "ünïcode ✓"}
    assert all(len(e["mac"]) == 64 and e["mac"] != e["hash"] for e in lines)


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


def test_edited_row_with_recomputed_hash_is_caught_by_its_mac(db: Session) -> None:
    _five_events(db)
    event = db.get(AuditEvent, 2)
    assert event is not None
    event.action = "test.forged"
    event.hash = audit.event_hash(event)
    db.commit()
    report = audit.verify(db)
    assert (report.ok, report.seq, report.checked) == (False, 2, 1)
    assert report.problem == FORGED


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
        "message": "audit chain intact: 6 events verified with the audit key; no signed checkpoint yet",
    }


# ---- a database-level attacker: the keyed MAC and the signed checkpoints --------------------------


def _rechain(db: Session) -> None:
    """What someone who can write the database (but has not the audit key) does to cover an edit:
    recompute every unkeyed hash from the start, relink, and move the head."""
    previous = audit.GENESIS_HASH
    for event in db.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all():
        event.prev_hash = previous
        event.hash = audit.event_hash(event)
        previous = event.hash
        db.flush()
    last = db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0
    db.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=last, hash=previous))
    db.commit()


def test_rewritten_event_with_every_later_hash_and_the_head_recomputed_is_named(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    db.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(details={"n": 2, "note": "nothing happened"}))
    _rechain(db)
    report = audit.verify(db)
    assert (report.ok, report.seq, report.checked, report.problem) == (False, 2, 1, FORGED)
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "audit chain BROKEN at event 2: its keyed MAC does not match" in _flat(result.output)


def test_cut_off_end_with_a_fixed_head_is_named_by_the_checkpoint(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    written = cli("audit", "checkpoint")
    assert written.exit_code == 0, written.output
    path = audit.checkpoint_path(get_settings())
    assert f"checkpoint written at event 5 to {path}" in _flat(written.output)
    [line] = path.read_text().splitlines()
    checkpoint = json.loads(line)
    assert json.loads(written.output.strip().splitlines()[-1]) == checkpoint
    assert (checkpoint["seq"], checkpoint["hash"]) == (5, db.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 5)))
    # Cut the last two events off and make the head agree: every remaining event and its MAC are genuine.
    db.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    _rechain(db)
    report = audit.verify(db)
    assert (report.ok, report.seq, report.checked, report.checkpoints) == (False, 4, 3, 1)
    assert report.problem == (
        f"events 4-5 are missing: the signed checkpoint of {checkpoint['at']} recorded the chain up to event 5 "
        "(the end was cut off)"
    )
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "BROKEN at event 4: events 4-5 are missing" in _flat(result.output)
    # It is the checkpoint that tells: without it, the shortened chain is consistent.
    path.rename(path.with_suffix(".moved"))
    assert audit.verify(db).ok


def test_cut_back_chain_written_again_is_named_and_never_signed(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    assert cli("audit", "checkpoint").exit_code == 0
    path = audit.checkpoint_path(get_settings())
    at = json.loads(path.read_text())["at"]
    db.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    _rechain(db)
    # The application goes on writing, with the real key: events 4 and 5 again, but other ones.
    audit.record(db, SYSTEM, "test.event", "thing", 40)
    audit.record(db, SYSTEM, "test.event", "thing", 50)
    db.commit()
    report = audit.verify(db)
    assert (report.ok, report.seq, report.checked) == (False, 5, 4)
    assert report.problem == (
        f"it is not the event the signed checkpoint of {at} recorded at this position "
        "(the chain was cut back and written again, or rewritten with the audit key)"
    )
    refused = cli("audit", "checkpoint")
    assert refused.exit_code == 1
    assert (
        f"no checkpoint written: audit chain BROKEN at event 5: event 5, signed in the checkpoint of {at}, was "
        "changed" in _flat(refused.output)
    )
    assert len(path.read_text().splitlines()) == 1


def test_checkpoint_written_only_over_new_events_and_only_over_an_intact_chain(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    assert "the audit chain is empty: nothing to checkpoint" in _flat(cli("audit", "checkpoint").output)
    _five_events(db)
    assert cli("audit", "checkpoint").exit_code == 0
    again = cli("audit", "checkpoint")
    assert again.exit_code == 0 and "no event since the checkpoint at event 5" in _flat(again.output)
    audit.record(db, SYSTEM, "test.event", "thing", 6)
    audit.record(db, SYSTEM, "test.event", "thing", 7)
    db.commit()
    db.execute(update(AuditEvent).where(AuditEvent.seq == 7).values(details={"n": 0}))
    _rechain(db)
    refused = cli("audit", "checkpoint")
    assert refused.exit_code == 1
    assert "no checkpoint written: audit chain BROKEN at event 7: its keyed MAC does not match" in _flat(refused.output)
    path = audit.checkpoint_path(get_settings())
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [5]


def test_altered_checkpoint_file_is_named(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    assert cli("audit", "checkpoint").exit_code == 0
    path = audit.checkpoint_path(get_settings())
    original = json.loads(path.read_text())
    signature = base64.b64decode(original["signature"])
    forged_signature = base64.b64encode(bytes([signature[0] ^ 1]) + signature[1:]).decode()
    cases = [
        ({**original, "signature": forged_signature}, 5),
        ({**original, "seq": 3}, 3),  # moved back, with the signature it had
        ({**original, "hash": "f" * 64}, 5),
    ]
    for altered, seq in cases:
        path.write_text(json.dumps(altered) + "\n")
        report = audit.verify(db)
        assert (report.ok, report.seq) == (False, seq)
        assert report.problem == (
            f"the checkpoint on line 1 of {path} (event {seq}, {original['at']}) has an invalid signature "
            "(the checkpoint file was altered)"
        )
    path.write_text(json.dumps(original) + "\nnot a checkpoint\n")
    report = audit.verify(db)
    assert not report.ok
    assert report.problem == f"line 2 of {path} is not a checkpoint (the checkpoint file was altered)"
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "audit chain BROKEN in its checkpoints: line 2 of" in _flat(result.output)


def test_wrong_or_missing_key_is_a_clear_error_not_tampering(  # type: ignore[no-untyped-def]
    db: Session, cli, client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _five_events(db)
    new = auth_service.create_api_key(db, SYSTEM, name="auditor-key", scopes=["audit:read"])
    db.commit()
    right = audit.load_key(get_settings())
    other = tmp_path / "other.key"
    other.write_text(secrets.token_hex(32))
    monkeypatch.setenv("SEAWALL_AUDIT_KEY_FILE", str(other))
    reset_settings()
    wrong = audit.load_key(get_settings())
    message = (
        f"the audit key at {other} (key id {wrong.key_id}) is not the key this audit chain was written with "
        f"(key id {right.key_id}): give this process the instance's audit key (SEAWALL_AUDIT_KEY_FILE)"
    )
    with pytest.raises(audit.AuditKeyError) as raised:
        audit.verify(db)
    assert str(raised.value) == message
    result = cli("audit", "verify")
    assert result.exit_code == 2
    assert _flat(result.output) == _flat(f"error: {message}") and "BROKEN" not in result.output
    # A process with the wrong key refuses to append rather than fork the chain with it.
    with pytest.raises(audit.AuditKeyError, match="is not the key this audit chain was written with"):
        audit.record(db, SYSTEM, "test.event")
    db.rollback()
    assert db.scalar(select(AuditHead.seq)) == 6
    # Over the API: the server's configuration is at fault, said as such.
    monkeypatch.setenv("SEAWALL_AUDIT_KEY_FILE", str(right.path))
    reset_settings()
    client.app.state.settings = client.app.state.settings.model_copy(update={"audit_key_file": other})
    answer = client.get("/v1/audit/verify", headers={"authorization": f"Bearer {new.secret}"})
    assert (answer.status_code, answer.json()) == (503, {"detail": message})
    # No key at all.
    monkeypatch.setenv("SEAWALL_AUDIT_KEY_FILE", str(tmp_path / "absent.key"))
    reset_settings()
    missing = cli("audit", "verify")
    assert missing.exit_code == 2
    assert f"error: no audit key at {tmp_path / 'absent.key'} (SEAWALL_AUDIT_KEY_FILE)" in _flat(missing.output)


def test_a_third_party_checks_checkpoints_with_the_public_key_alone(db: Session, cli) -> None:  # type: ignore[no-untyped-def]
    _five_events(db)
    assert cli("audit", "checkpoint").exit_code == 0
    printed = cli("audit", "public-key")
    assert printed.exit_code == 0 and printed.output.startswith("-----BEGIN PUBLIC KEY-----")
    settings = get_settings()
    assert audit.public_key_path(settings).read_text() == printed.output
    public = serialization.load_pem_public_key(printed.output.encode())
    assert isinstance(public, Ed25519PublicKey)
    line = json.loads(audit.checkpoint_path(settings).read_text())
    # The documented format: the context line, then the checkpoint's JSON without the signature.
    body = json.dumps({k: line[k] for k in ("at", "hash", "key_id", "seq")}, separators=(",", ":"))
    public.verify(base64.b64decode(line["signature"]), b"seawall-audit-checkpoint-v1\n" + body.encode())
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(line["signature"]), b"seawall-audit-checkpoint-v1\n" + body.encode() + b" ")
    # The secrets are the owner's alone.
    for path in (audit.key_path(settings), audit.signing_key_path(settings)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_migration_keys_the_events_written_before_it(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0004")
        events = sa.table(
            "audit_events",
            *(sa.column(n) for n in ("seq", "actor_type", "actor", "action", "object_type", "object_id")),
            sa.column("occurred_at", UTCDateTime()),
            sa.column("details", sa.JSON()),
            sa.column("prev_hash"),
            sa.column("hash"),
        )
        previous = audit.GENESIS_HASH
        with engine.begin() as c:
            for seq in (1, 2, 3):
                row = {
                    "seq": seq,
                    "occurred_at": utcnow(),
                    "actor_type": "system",
                    "actor": "system",
                    "action": "test.before",
                    "object_type": "thing",
                    "object_id": str(seq),
                    "details": {"n": seq},
                    "prev_hash": previous,
                }
                previous = hashlib.sha256(audit.canonical_event(**row)).hexdigest()
                c.execute(sa.insert(events).values(**row, hash=previous))
            c.execute(sa.text("UPDATE audit_head SET seq = 3, hash = :h WHERE id = 1"), {"h": previous})
        migrate.upgrade(engine)
        with make_sessionmaker(engine)() as session:
            report = audit.verify(session)
            assert (report.ok, report.checked) == (True, 3)
            assert session.scalar(select(AuditHead.key_id)) == audit.load_key(get_settings()).key_id
            audit.record(session, SYSTEM, "test.after")
            session.commit()
            assert audit.verify(session).checked == 4
        migrate.downgrade(engine, "0004")
        migrate.upgrade(engine)
    finally:
        engine.dispose()
