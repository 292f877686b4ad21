"""The evidence store: envelope encryption at rest, integrity on every read, private files."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_sessionmaker
from seawall.evidence import service as evidence
from seawall.evidence.models import EvidenceObject
from seawall.media.synthetic import benign_image

KEY_A = SecretStr(base64.b64encode(bytes(range(32))).decode())
KEY_B = SecretStr(base64.b64encode(bytes(range(1, 33))).decode())


def _png(seed: int) -> bytes:
    out = io.BytesIO()
    benign_image(seed, 96, 64).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as session:
        yield session


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _contains(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in _files(folder) if needle in p.read_bytes()]


def test_round_trip_private_files_and_no_plaintext_on_disk(session: Session, settings: Settings) -> None:
    picture = _png(1)
    object_id = evidence.put(session, settings, picture, media_type="image/png", purpose="capture", subject="item:12")
    session.commit()

    assert evidence.get(session, settings, object_id) == picture
    row = session.get(EvidenceObject, object_id)
    assert row is not None
    assert (row.purpose, row.subject, row.media_type, row.size, row.sha256, row.backend) == (
        "capture",
        "item:12",
        "image/png",
        len(picture),
        hashlib.sha256(picture).hexdigest(),
        "local",
    )
    key_path = settings.home / "evidence.key"
    assert row.key_id == evidence.master_key(settings).id and len(row.key_id) == 16
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600  # made on first use, private from the start
    # The data key is only ever stored wrapped; the master key never reaches the database.
    master = base64.b64decode(key_path.read_text())
    assert master.hex() not in row.wrapped_key and base64.b64encode(master).decode() not in row.wrapped_key

    root = settings.home / "evidence"
    [stored] = _files(root)
    assert stored == root / object_id[:2] / object_id[2:4] / object_id
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stored.read_bytes().startswith(evidence.MAGIC)
    assert len(stored.read_bytes()) == len(picture) + 4 + 12 + 16  # magic, nonce, GCM tag: nothing else
    # Not the file, not a slice of it, anywhere in SEAWALL_HOME (the database included).
    for needle in (picture, picture[1000:1064], picture[-64:]):
        assert _contains(settings.home, needle) == []
    assert evidence.find(session, purpose="capture", subject="item:12") == row
    assert evidence.find(session, purpose="thumbnail", subject="item:12") is None


def test_a_wrong_or_missing_key_is_refused_with_a_clear_error(session: Session, settings: Settings) -> None:
    mine = settings.model_copy(update={"evidence_key": KEY_A})
    object_id = evidence.put(session, mine, b"benign bytes", media_type="text/plain", purpose="capture", subject="x:1")
    session.commit()
    assert not (settings.home / "evidence.key").exists()  # a configured key: no key file made

    other = settings.model_copy(update={"evidence_key": KEY_B})
    key_a, key_b = evidence.master_key(mine).id, evidence.master_key(other).id
    with pytest.raises(evidence.EvidenceError) as refused:
        evidence.get(session, other, object_id)
    assert str(refused.value) == (
        f"evidence {object_id} was sealed with master key {key_a}, which is not configured (configured: {key_b}); "
        "set SEAWALL_EVIDENCE_KEY or the key file to the key it was sealed with"
    )
    assert evidence.get(session, mine, object_id) == b"benign bytes"

    for bad, message in [
        ("not base64!", "SEAWALL_EVIDENCE_KEY is not base64; make a key with: python -c"),
        (base64.b64encode(b"short").decode(), "SEAWALL_EVIDENCE_KEY is 5 bytes, not 32; make a key with"),
    ]:
        with pytest.raises(evidence.EvidenceError, match=message.replace("(", r"\(")):
            evidence.put(
                session,
                settings.model_copy(update={"evidence_key": SecretStr(bad)}),
                b"x",
                media_type="text/plain",
                purpose="capture",
                subject="x:2",
            )


def test_tampering_with_a_file_or_a_row_is_detected(session: Session, settings: Settings) -> None:
    first = evidence.put(session, settings, _png(2), media_type="image/png", purpose="capture", subject="item:1")
    second = evidence.put(session, settings, _png(3), media_type="image/png", purpose="capture", subject="item:2")
    session.commit()
    store = evidence.backend(settings)
    path = store.path(first)
    original = path.read_bytes()

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(evidence.EvidenceError) as altered:
        evidence.get(session, settings, first)
    assert str(altered.value) == f"evidence {first} failed its integrity check: the stored file was altered or damaged"

    # Another object's file under this name: the id is authenticated with the bytes.
    path.write_bytes(store.path(second).read_bytes())
    with pytest.raises(evidence.EvidenceError, match="failed its integrity check"):
        evidence.get(session, settings, first)

    path.write_bytes(original[:20])
    with pytest.raises(evidence.EvidenceError, match="the stored file is not a sealed object"):
        evidence.get(session, settings, first)

    path.write_bytes(original)
    assert evidence.get(session, settings, first) == _png(2)

    row = session.get(EvidenceObject, first)
    assert row is not None
    wrapped = bytearray(base64.b64decode(row.wrapped_key))
    wrapped[-1] ^= 0x80
    row.wrapped_key = base64.b64encode(bytes(wrapped)).decode()
    session.commit()
    with pytest.raises(evidence.EvidenceError, match="its data key does not open with master key"):
        evidence.get(session, settings, first)

    path.unlink()
    with pytest.raises(evidence.EvidenceError, match=f"evidence {second}: its stored file is missing"):
        store.path(second).unlink()
        evidence.get(session, settings, second)
    with pytest.raises(evidence.EvidenceError, match=re.escape("no evidence object '../../etc/passwd'")):
        evidence.get(session, settings, "../../etc/passwd")


def test_delete_destroys_the_bytes_after_commit_and_keeps_the_record(session: Session, settings: Settings) -> None:
    object_id = evidence.put(session, settings, _png(4), media_type="image/png", purpose="capture", subject="item:9")
    session.commit()
    path = evidence.backend(settings).path(object_id)

    evidence.delete(session, settings, object_id, actor=SYSTEM, reason="test rollback")
    session.rollback()
    assert path.exists() and evidence.get(session, settings, object_id) == _png(4)

    evidence.delete(session, settings, object_id, actor=SYSTEM, reason="retention ended")
    assert path.exists()  # not before the commit
    session.commit()
    assert not path.exists()
    with pytest.raises(evidence.EvidenceError, match=f"evidence {object_id} was deleted on "):
        evidence.get(session, settings, object_id)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "evidence.delete")).one()
    assert (event.object_type, event.object_id, event.details["reason"], event.details["subject"]) == (
        "evidence",
        object_id,
        "retention ended",
        "item:9",
    )
    assert evidence.find(session, purpose="capture", subject="item:9") is None


def test_size_limit_and_sweep_of_files_without_rows(session: Session, settings: Settings) -> None:
    small = settings.model_copy(update={"max_file_bytes": 100})
    with pytest.raises(evidence.EvidenceError, match="101 bytes is over the 100-byte limit of one object"):
        evidence.seal(small, b"x" * 101, media_type="text/plain", purpose="capture", subject="x:1")
    with pytest.raises(evidence.EvidenceError, match="at least one byte"):
        evidence.seal(settings, b"", media_type="text/plain", purpose="capture", subject="x:1")

    kept = evidence.put(session, settings, b"kept", media_type="text/plain", purpose="capture", subject="x:1")
    session.commit()
    orphan = evidence.seal(settings, b"orphan", media_type="text/plain", purpose="capture", subject="x:2")
    store = evidence.backend(settings)
    assert evidence.sweep(session, settings) == 0  # young files may be writes in progress
    old = store.path(orphan.id).stat().st_mtime - 7200
    os.utime(store.path(orphan.id), (old, old))
    os.utime(store.path(kept), (old, old))
    assert evidence.sweep(session, settings) == 1
    assert not store.path(orphan.id).exists()
    assert evidence.get(session, settings, kept) == b"kept"
