"""The evidence vault under authority reporting: key rotation (data keys re-wrapped, files
untouched), a wrong or missing key, tampering after rotation, the retention purge with and
without a legal hold, one audit event per purged object, and a purge that crashes midway and
resumes. (Round trip and tampering of the store itself: tests/evidence/test_store.py.)"""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_sessionmaker, utcnow
from seawall.evidence import service as evidence
from seawall.evidence.models import EvidenceObject
from seawall.hotline import capture, intake
from seawall.hotline.models import Case, CaseItem, Item
from seawall.reporting import retention

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
KEY_C = base64.b64encode(b"C" * 32).decode()


@pytest.fixture(autouse=True)
def no_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "scheduler", lambda case_id: None)


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def _with(settings: Settings, key: str, previous: str | None = None) -> Settings:
    return settings.model_copy(
        update={"evidence_key": SecretStr(key), "evidence_previous_keys": SecretStr(previous) if previous else None}
    )


def test_rotation_rewraps_data_keys_and_leaves_the_files_alone(
    db: Session, settings: Settings, factory: sessionmaker[Session]
) -> None:
    old = _with(settings, KEY_A)
    ids = [
        evidence.put(
            db, old, os.urandom(64) + bytes([n]), media_type="image/png", purpose="capture", subject=f"item:{n}"
        )
        for n in range(3)
    ]
    orphan = evidence.put(
        db,
        _with(settings, KEY_C),
        b"sealed with a key nobody configured",
        media_type="text/plain",
        purpose="capture",
        subject="item:9",
    )
    db.commit()
    plain = {i: evidence.get(db, old, i) for i in ids}
    files = {i: evidence.backend(settings).read(i) for i in ids}

    new = _with(settings, KEY_B, previous=KEY_A)
    done = evidence.rotate(factory, new, SYSTEM, batch=2)
    assert done.rewrapped == 3
    assert done.missing_keys == {evidence._key_id(b"C" * 32): 1}
    assert {i: evidence.backend(settings).read(i) for i in ids} == files  # content untouched
    only_new = _with(settings, KEY_B)
    db.rollback()  # a fresh snapshot: the work ran in other sessions
    assert {i: evidence.get(db, only_new, i) for i in ids} == plain
    assert evidence.rotate(factory, new, SYSTEM).rewrapped == 0  # nothing left to do: runs again harmlessly

    # The old key alone no longer opens them, and says which key they need.
    with pytest.raises(evidence.EvidenceError) as wrong:
        evidence.get(db, old, ids[0])
    assert f"was sealed with master key {evidence._key_id(b'B' * 32)}, which is not configured" in str(wrong.value)
    with pytest.raises(evidence.EvidenceError, match="which is not configured"):
        evidence.get(db, only_new, orphan)
    # A re-wrapped key altered in the row is refused, never used.
    row = db.get_one(EvidenceObject, ids[1])
    wrapped = bytearray(base64.b64decode(row.wrapped_key))
    wrapped[-1] ^= 1
    row.wrapped_key = base64.b64encode(bytes(wrapped)).decode()
    db.commit()
    with pytest.raises(evidence.EvidenceError, match="its data key does not open with master key"):
        evidence.get(db, only_new, ids[1])
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "evidence.rotate")).all()
    counts = [e.details["rewrapped"] for e in events]  # one event per batch of at most 2
    assert sum(counts) == 3 and max(counts) <= 2
    with pytest.raises(evidence.EvidenceError, match="key 1 of SEAWALL_EVIDENCE_PREVIOUS_KEYS is not base64"):
        evidence.keyring(_with(settings, KEY_B, previous="not base64!"))


def _case_with_item(db: Session, settings: Settings, n: int) -> tuple[Case, str, str]:
    """A case, its item, and two stored objects of the item (capture and thumbnail), both expired."""
    done = intake.submit(db, settings, SYSTEM, intake.ReportIn(channel="public", url=f"https://pics.example/{n}"))
    item = Item(sha256=f"{n:064x}", md5=f"{n:032x}", sha1=f"{n:040x}", media="image", mime="image/png", size=10)
    db.add(item)
    db.flush()
    db.add(CaseItem(case_id=done.case.id, item_id=item.id))
    media = evidence.put(
        db, settings, b"benign picture %d" % n, media_type="image/png", purpose="capture", subject=f"item:{item.id}"
    )
    thumb = evidence.put(
        db,
        settings,
        b"benign thumbnail %d" % n,
        media_type="image/jpeg",
        purpose="thumbnail",
        subject=f"item:{item.id}",
    )
    for object_id in (media, thumb):
        db.get_one(EvidenceObject, object_id).retain_until = utcnow() - timedelta(days=1)
    db.commit()
    return done.case, media, thumb


def _purge_events(db: Session) -> list[dict[str, Any]]:
    rows = db.scalars(select(AuditEvent).where(AuditEvent.action == "evidence.delete").order_by(AuditEvent.seq))
    return [{"id": e.object_id, **e.details} for e in rows]


def test_purge_destroys_what_expired_except_under_a_legal_hold(
    db: Session, settings: Settings, factory: sessionmaker[Session]
) -> None:
    free, free_media, free_thumb = _case_with_item(db, settings, 1)
    held, held_media, held_thumb = _case_with_item(db, settings, 2)
    kept = evidence.put(db, settings, b"not expired", media_type="text/plain", purpose="capture", subject="item:77")
    unscheduled = evidence.put(db, settings, b"no schedule", media_type="text/plain", purpose="capture", subject="x:1")
    db.get_one(EvidenceObject, kept).retain_until = utcnow() + timedelta(days=30)
    hold = retention.place_hold(db, SYSTEM, held.reference, "preservation request 2026-17")
    db.commit()

    result = retention.purge(factory, settings)
    assert (result.purged, result.held) == (2, 2)
    db.rollback()  # a fresh snapshot: the work ran in other sessions
    gone = {free_media, free_thumb}
    for object_id in gone:
        assert db.get_one(EvidenceObject, object_id).deleted_at is not None
        assert not evidence.backend(settings).path(object_id).exists()  # the bytes are destroyed
    for object_id in (held_media, held_thumb, kept, unscheduled):
        assert db.get_one(EvidenceObject, object_id).deleted_at is None
        assert evidence.get(db, settings, object_id)
    events = _purge_events(db)
    assert {e["id"] for e in events} == gone and len(events) == 2
    for event in events:  # what, why, when: never content
        assert set(event) == {"id", "purpose", "subject", "sha256", "reason"}
        assert event["reason"].startswith("retention ended ")
    with pytest.raises(retention.ReportingError, match="a legal hold says why"):
        retention.place_hold(db, SYSTEM, free.reference, "  ")

    retention.release_hold(db, SYSTEM, hold.id)
    db.commit()
    again = retention.purge(factory, settings)
    assert (again.purged, again.held) == (2, 0)
    db.rollback()
    assert len(_purge_events(db)) == 4
    actions = [e for e in db.scalars(select(AuditEvent.action)) if e.startswith("legal_hold.")]
    assert actions == ["legal_hold.place", "legal_hold.release"]


def test_a_purge_that_crashes_midway_resumes_without_repeating_or_touching_holds(
    db: Session, settings: Settings, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = [o for n in range(3) for o in _case_with_item(db, settings, n + 10)[1:]]
    held_case, *held_objects = _case_with_item(db, settings, 20)
    retention.place_hold(db, SYSTEM, held_case.reference, "court order")
    db.commit()
    real_delete = evidence.delete
    calls = {"n": 0}

    def crashing(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("the worker died")
        real_delete(*args, **kwargs)

    monkeypatch.setattr(evidence, "delete", crashing)
    with pytest.raises(KeyboardInterrupt):
        retention.purge(factory, settings, batch=3)
    db.rollback()  # a fresh snapshot: the work ran in other sessions
    # The batches before the crash committed, the one in flight rolled back whole.
    before = len(_purge_events(db))
    assert 0 < before < len(objects)
    monkeypatch.setattr(evidence, "delete", real_delete)
    result = retention.purge(factory, settings, batch=3)
    assert (result.purged, result.held) == (len(objects) - before, 2)
    db.rollback()
    events = _purge_events(db)
    assert sorted(e["id"] for e in events) == sorted(objects)  # each once, never the held ones
    db.rollback()  # a fresh snapshot: the work ran in other sessions
    assert all(db.get_one(EvidenceObject, o).deleted_at is None for o in held_objects)


def test_the_worker_has_the_purge_scheduled(settings: Settings) -> None:
    from seawall.reporting import tasks
    from seawall.tasks import TASK_MODULES

    assert "seawall.reporting.tasks" in TASK_MODULES
    assert tasks.purge_evidence.name == "reporting.purge_evidence"
    assert Path(tasks.__file__).name == "tasks.py"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_object_store_backend_against_a_loopback_s3_server(db: Session, settings: Settings, tmp_path: Path) -> None:
    """moto's S3-compatible server on 127.0.0.1 stands in for the object store (s3fs through fsspec)."""
    import json

    import fsspec
    from moto.server import ThreadedMotoServer

    from servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        options = {
            "key": "test-key",
            "secret": "test-secret",
            "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
        }
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="test-key",
            aws_secret_access_key="test-secret",
            region_name="us-east-1",
        ).create_bucket(Bucket="evidence-bucket")
        s3 = settings.model_copy(
            update={
                "evidence_store_url": "s3://evidence-bucket/seawall",
                "evidence_store_options": SecretStr(json.dumps(options)),
            }
        )
        picture = b"benign meadow picture bytes" * 10
        object_id = evidence.put(db, s3, picture, media_type="image/png", purpose="capture", subject="item:1")
        db.commit()
        row = db.get_one(EvidenceObject, object_id)
        assert row.backend == "fsspec"
        stored_path = f"evidence-bucket/seawall/{object_id[:2]}/{object_id[2:4]}/{object_id}"
        fs.invalidate_cache()
        stored = fs.cat_file(stored_path)
        assert picture not in stored and stored.startswith(evidence.MAGIC)  # only ciphertext leaves
        assert evidence.get(db, s3, object_id) == picture
        with pytest.raises(evidence.EvidenceError, match="kept in the fsspec store, and this instance is configured"):
            evidence.get(db, settings, object_id)  # the local-disk configuration cannot find it
        tampered = bytearray(stored)
        tampered[-1] ^= 1
        fs.pipe_file(stored_path, bytes(tampered))
        with pytest.raises(evidence.EvidenceError, match="failed its integrity check"):
            evidence.get(db, s3, object_id)
        evidence.delete(db, s3, object_id, actor=SYSTEM, reason="test")
        db.commit()
        fs.invalidate_cache()
        assert not fs.exists(stored_path)
    finally:
        server.stop()
