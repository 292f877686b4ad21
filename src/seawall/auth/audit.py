"""The append-only audit log: record, verify, checkpoint, export.

Three layers, each against a stronger attacker:

- a SHA-256 chain (``hash`` covers the event and ``prev_hash``) names damage, gaps and reordering;
- an HMAC of every event (``mac``) with the *audit key*, a file outside the database
  (``SEAWALL_AUDIT_KEY_FILE``), names an event rewritten by someone who can write the database but
  not read the key, even when every later hash and the head were recomputed;
- signed checkpoints of the head (Ed25519, the *signing key* beside the audit key), appended by the
  worker to a file in SEAWALL_HOME and to the log, name a chain cut back below a checkpoint (which
  the layers above cannot see). A third party holding only the public key can check them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seawall.auth.models import AuditEvent, AuditHead
from seawall.auth.permissions import Principal
from seawall.config import Settings, get_settings
from seawall.db import utcnow

GENESIS_HASH = "0" * 64
_KEY_ID_LABEL = b"seawall audit key id"
# Signed before the checkpoint's JSON, so a signature made for anything else never passes for one.
CHECKPOINT_CONTEXT = b"seawall-audit-checkpoint-v1\n"


class AuditKeyError(Exception):
    """The audit key or the signing key is missing, unreadable or not this chain's own: a
    configuration problem to fix, not evidence of tampering."""


# ---- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditKey:
    """The chain's HMAC key; ``key_id`` names it without revealing it (kept in the head row and checkpoints)."""

    secret: bytes = field(repr=False)
    path: Path
    key_id: str

    @classmethod
    def from_secret(cls, secret: bytes, path: Path) -> AuditKey:
        return cls(secret, path, hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16])

    def mac(self, canonical: bytes) -> str:
        return hmac.new(self.secret, canonical, hashlib.sha256).hexdigest()


def key_path(settings: Settings) -> Path:
    return settings.audit_key_file or settings.home / "audit.key"


def signing_key_path(settings: Settings) -> Path:
    return settings.audit_signing_key_file or settings.home / "audit-signing.key"


def public_key_path(settings: Settings) -> Path:
    return signing_key_path(settings).with_suffix(".pub")


def checkpoint_path(settings: Settings) -> Path:
    return settings.audit_checkpoint_file or settings.home / "audit-checkpoints.jsonl"


def _write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` whole with ``data``, unless it exists: of two processes racing, one wins and
    both then read the winner's file (a half-written key is never seen)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


_keys: dict[Path, AuditKey] = {}


def load_key(settings: Settings, *, create: bool = False) -> AuditKey:
    """The audit key from its file (created 0600 when ``create`` and absent); cached per path."""
    path = key_path(settings)
    cached = _keys.get(path)
    if cached is not None:
        return cached
    if create and not path.exists():
        _write_new(path, secrets.token_hex(32).encode() + b"\n")
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise AuditKeyError(
            f"no audit key at {path} (SEAWALL_AUDIT_KEY_FILE): the chain can only be checked with the key "
            "it was written with"
        ) from None
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key at {path}: {exc}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 32:
        raise AuditKeyError(f"{path} is not an audit key (64 or more hexadecimal digits expected)")
    key = _keys[path] = AuditKey.from_secret(secret, path)
    return key


def mismatch(key: AuditKey, chain_key_id: str) -> AuditKeyError:
    return AuditKeyError(
        f"the audit key at {key.path} (key id {key.key_id}) is not the key this audit chain was written with "
        f"(key id {chain_key_id}): give this process the instance's audit key (SEAWALL_AUDIT_KEY_FILE)"
    )


def load_signing_key(settings: Settings, *, create: bool = False) -> Ed25519PrivateKey:
    """The Ed25519 key that signs checkpoints (created 0600 when ``create`` and absent, its public
    key written beside it as ``.pub``)."""
    path = signing_key_path(settings)
    if create and not path.exists():
        _write_new(
            path,
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise AuditKeyError(f"no checkpoint signing key at {path} (SEAWALL_AUDIT_SIGNING_KEY_FILE)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise AuditKeyError(f"cannot read the checkpoint signing key at {path}: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} is not an Ed25519 private key")
    public = public_key_path(settings)
    if not public.exists():
        _write_new(public, public_pem(private.public_key()), mode=0o644)
    return private


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(settings: Settings) -> Ed25519PublicKey | None:
    """The key checkpoints are checked with: from the signing key, else its ``.pub`` file; None if neither."""
    if signing_key_path(settings).exists():
        return load_signing_key(settings).public_key()
    path = public_key_path(settings)
    if not path.exists():
        return None
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditKeyError(f"cannot read the checkpoint public key at {path}: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise AuditKeyError(f"{path} is not an Ed25519 public key")
    return public


# ---- recording -------------------------------------------------------------------------------


def _json_safe(details: dict[str, Any] | None) -> dict[str, Any]:
    # Store exactly what is hashed: a JSON round trip turns dates, sets and the like into text.
    return json.loads(json.dumps(details or {}, sort_keys=True, default=str))


def canonical_event(
    *,
    seq: int,
    occurred_at: datetime,
    actor_type: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any],
    prev_hash: str,
) -> bytes:
    """The bytes an event's hash and MAC cover: every field, in a fixed order and encoding."""
    body = {
        "seq": seq,
        "occurred_at": occurred_at.isoformat(timespec="microseconds"),
        "actor_type": actor_type,
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "details": details,
        "prev_hash": prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_bytes(event: AuditEvent) -> bytes:
    return canonical_event(
        seq=event.seq,
        occurred_at=event.occurred_at,
        actor_type=event.actor_type,
        actor=event.actor,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        details=event.details,
        prev_hash=event.prev_hash,
    )


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(event_bytes(event)).hexdigest()


def record(
    session: Session,
    actor: Principal,
    action: str,
    object_type: str = "",
    object_id: str | int = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event in the caller's transaction, so it commits or rolls back with the change.

    Raises AuditKeyError (and so refuses the change) when this process's audit key is not the chain's.
    """
    # Updating the head row first takes its write lock: concurrent appenders queue behind it
    # (PostgreSQL row lock, SQLite write lock) instead of forking the chain.
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    head = session.execute(select(AuditHead.seq, AuditHead.hash, AuditHead.key_id).where(AuditHead.id == 1)).one()
    # The first event of a new chain chooses the key (creating it if need be); later ones must use it.
    key = load_key(get_settings(), create=head.key_id is None)
    if head.key_id is not None and head.key_id != key.key_id:
        raise mismatch(key, head.key_id)
    event = AuditEvent(
        seq=head.seq,
        occurred_at=utcnow(),
        actor_type=actor.kind,
        actor=actor.name,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=_json_safe(details),
        prev_hash=head.hash,
    )
    canonical = event_bytes(event)
    event.hash = hashlib.sha256(canonical).hexdigest()
    event.mac = key.mac(canonical)
    session.add(event)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=event.hash, key_id=key.key_id))
    session.flush()
    return event


# ---- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at a moment, signed: one JSON line of the checkpoint file (and of the log)."""

    seq: int
    hash: str
    at: str  # ISO 8601, UTC
    key_id: str  # the audit key the chain was written with
    signature: str = ""  # base64 Ed25519 signature of signed_bytes()

    def signed_bytes(self) -> bytes:
        body = {"seq": self.seq, "hash": self.hash, "at": self.at, "key_id": self.key_id}
        return CHECKPOINT_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed_with(self, private: Ed25519PrivateKey) -> Checkpoint:
        return replace(self, signature=base64.b64encode(private.sign(self.signed_bytes())).decode())

    def verifies(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(base64.b64decode(self.signature, validate=True), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointLine:
    number: int  # 1-based line number in the file
    checkpoint: Checkpoint | None  # None: the line is not a checkpoint at all
    valid: bool  # its signature verifies with the public key

    def problem(self, path: Path) -> str | None:
        if self.checkpoint is None:
            return f"line {self.number} of {path} is not a checkpoint (the checkpoint file was altered)"
        if not self.valid:
            return (
                f"the checkpoint on line {self.number} of {path} (event {self.checkpoint.seq}, {self.checkpoint.at}) "
                "has an invalid signature (the checkpoint file was altered)"
            )
        return None


def _parse_checkpoint(text: str) -> Checkpoint | None:
    try:
        data = json.loads(text)
        checkpoint = Checkpoint(
            seq=data["seq"], hash=data["hash"], at=data["at"], key_id=data["key_id"], signature=data["signature"]
        )
    except (ValueError, KeyError, TypeError):
        return None
    fields_ok = isinstance(checkpoint.seq, int) and all(
        isinstance(v, str) for v in (checkpoint.hash, checkpoint.at, checkpoint.key_id, checkpoint.signature)
    )
    return checkpoint if fields_ok else None


def read_checkpoints(settings: Settings) -> list[CheckpointLine]:
    """Every line of the checkpoint file, each checked against the public key."""
    path = checkpoint_path(settings)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyError(f"cannot read the checkpoint file {path}: {exc}") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not numbered:
        return []
    public = load_public_key(settings)
    if public is None:
        raise AuditKeyError(
            f"{path} holds checkpoints but there is no public key to check them with at {public_key_path(settings)}"
        )
    lines = []
    for number, line in numbered:
        checkpoint = _parse_checkpoint(line)
        lines.append(CheckpointLine(number, checkpoint, checkpoint is not None and checkpoint.verifies(public)))
    return lines


def _append_line(path: Path, line: str) -> None:
    # One write on an O_APPEND descriptor: concurrent writers never interleave within a line.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None  # the event the problem was found at
    checkpoints: int = 0  # signed checkpoints the chain was compared with

    def describe(self) -> str:
        if self.ok:
            agree = {0: "no signed checkpoint yet", 1: "1 signed checkpoint agrees"}.get(
                self.checkpoints, f"{self.checkpoints} signed checkpoints agree"
            )
            return f"audit chain intact: {self.checked} events verified with the audit key; {agree}"
        where = f"at event {self.seq}" if self.seq is not None else "in its checkpoints"
        return f"audit chain BROKEN {where}: {self.problem} ({self.checked} events verified before it)"


def iter_events(session: Session, batch: int = 1000, after: int = 0) -> Iterator[AuditEvent]:
    last = after
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


@dataclass
class _Walk:
    """Where a walk along the chain got to: the first problem, or the last event seen."""

    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    problem: str | None = None
    seq: int | None = None


def _walk(
    session: Session,
    key: AuditKey,
    *,
    after: int = 0,
    prev_hash: str = GENESIS_HASH,
    until: int | None = None,
    checkpoints: dict[int, list[Checkpoint]] | None = None,
) -> _Walk:
    """Check the events after ``after`` (up to ``until``) in order: each present, intact, linked to
    the one before, carrying the audit key's MAC, and equal to any checkpoint taken at it."""
    walk = _Walk(last_seq=after, last_hash=prev_hash)
    previous_time: datetime | None = None
    for event in iter_events(session, after=after):
        if until is not None and event.seq > until:
            break
        expected = walk.last_seq + 1
        if event.seq != expected:
            missing = (
                f"event {expected} is missing"
                if event.seq == expected + 1
                else (f"events {expected}-{event.seq - 1} are missing")
            )
            walk.problem, walk.seq = f"{missing} (deleted); the chain resumes at {event.seq}", expected
            return walk
        canonical = event_bytes(event)
        problem = None
        if hashlib.sha256(canonical).hexdigest() != event.hash:
            problem = "its content was altered (it no longer matches its hash)"
        elif event.prev_hash != walk.last_hash:
            problem = (
                f"it does not follow event {event.seq - 1} (that event was altered, or this one inserted out of order)"
            )
        elif not event.mac or not hmac.compare_digest(key.mac(canonical), event.mac):
            problem = (
                "its keyed MAC does not match: it was written or rewritten by someone without the audit key "
                "(its hash and those after it were recomputed)"
            )
        elif previous_time is not None and event.occurred_at < previous_time:
            problem = "it is dated before the event it follows (out of order)"
        else:
            for checkpoint in (checkpoints or {}).get(event.seq, []):
                if checkpoint.hash != event.hash:
                    problem = (
                        f"it is not the event the signed checkpoint of {checkpoint.at} recorded at this position "
                        "(the chain was cut back and written again, or rewritten with the audit key)"
                    )
        if problem is not None:
            walk.problem, walk.seq = problem, event.seq
            return walk
        previous_time = event.occurred_at
        walk.last_seq, walk.last_hash = event.seq, event.hash
        walk.checked += 1
    return walk


def _head(session: Session) -> Any:
    return session.execute(
        select(AuditHead.seq, AuditHead.hash, AuditHead.key_id).where(AuditHead.id == 1)
    ).one_or_none()


def _head_problem(head: Any, walk: _Walk) -> tuple[str, int] | None:
    """Whether the head row agrees with where the chain ends."""
    if head is None or (head.seq == walk.last_seq and head.hash == walk.last_hash):
        return None
    if head.seq > walk.last_seq:
        return f"events {walk.last_seq + 1}-{head.seq} at the end are missing (deleted)", walk.last_seq + 1
    return "the chain does not end where its head says it ends", walk.last_seq


def verify(session: Session, settings: Settings | None = None) -> ChainReport:
    """Walk the whole chain with the audit key and compare it with every signed checkpoint; name the
    first event altered, deleted, moved, forged or cut off. Raises AuditKeyError when the key is
    missing or is not the chain's (a configuration problem, not tampering)."""
    settings = settings or get_settings()
    key = load_key(settings)
    lines = read_checkpoints(settings)
    head = _head(session)
    good = [line.checkpoint for line in lines if line.valid and line.checkpoint is not None]
    if head is not None and head.key_id is not None and head.key_id != key.key_id:
        if not any(c.key_id == key.key_id for c in good):
            raise mismatch(key, head.key_id)
        # Checkpoints signed for this key prove the chain was written with it: the head row was edited.
        return ChainReport(False, 0, f"the chain's key id in the database was changed to {head.key_id}", None)
    path = checkpoint_path(settings)
    for line in lines:
        problem = line.problem(path)
        if problem is not None:
            return ChainReport(False, 0, problem, line.checkpoint.seq if line.checkpoint else None)
    for checkpoint in good:
        if checkpoint.key_id != key.key_id:
            return ChainReport(
                False,
                0,
                f"the signed checkpoint of {checkpoint.at} was made for the chain of another audit key "
                f"(key id {checkpoint.key_id})",
                checkpoint.seq,
            )
    by_seq: dict[int, list[Checkpoint]] = {}
    for checkpoint in good:
        by_seq.setdefault(checkpoint.seq, []).append(checkpoint)
    walk = _walk(session, key, checkpoints=by_seq)
    if walk.problem is not None:
        return ChainReport(False, walk.checked, walk.problem, walk.seq, len(good))
    at_head = _head_problem(head, walk)
    if at_head is not None:
        return ChainReport(False, walk.checked, at_head[0], at_head[1], len(good))
    beyond = [c for c in good if c.seq > walk.last_seq]
    if beyond:
        furthest = max(beyond, key=lambda c: c.seq)
        first = walk.last_seq + 1
        missing = f"event {first} is" if first == furthest.seq else f"events {first}-{furthest.seq} are"
        return ChainReport(
            False,
            walk.checked,
            f"{missing} missing: the signed checkpoint of {furthest.at} recorded the chain up to event "
            f"{furthest.seq} (the end was cut off)",
            first,
            len(good),
        )
    return ChainReport(True, walk.checked, checkpoints=len(good))


@dataclass(frozen=True)
class CheckpointOutcome:
    report: ChainReport  # the check of the events the checkpoint covers
    checkpoint: Checkpoint | None = None  # the checkpoint written; None when none was
    message: str = ""


def write_checkpoint(session: Session, settings: Settings | None = None) -> CheckpointOutcome:
    """Sign the chain's head and append it to the checkpoint file, after checking the events since the
    last checkpoint (a rewritten or cut-back chain is never signed). Nothing is written when no event
    was added since. Raises AuditKeyError on a missing or wrong key."""
    settings = settings or get_settings()
    key = load_key(settings)
    signer = load_signing_key(settings, create=True)
    lines = read_checkpoints(settings)
    path = checkpoint_path(settings)
    for line in lines:
        problem = line.problem(path)
        if problem is not None:
            report = ChainReport(False, 0, problem, line.checkpoint.seq if line.checkpoint else None)
            return CheckpointOutcome(report, message=f"no checkpoint written: {report.describe()}")
    head = _head(session)
    if head is None or head.seq == 0:
        return CheckpointOutcome(ChainReport(True, 0), message="the audit chain is empty: nothing to checkpoint")
    if head.key_id is not None and head.key_id != key.key_id:
        raise mismatch(key, head.key_id)
    good = [line.checkpoint for line in lines if line.checkpoint is not None and line.checkpoint.key_id == key.key_id]
    last = max(good, key=lambda c: c.seq, default=None)
    if last is not None:
        # The last checkpoint's event must still be there, as it was: the walk resumes from it.
        anchor = session.scalar(select(AuditEvent).where(AuditEvent.seq == last.seq))
        intact = (
            anchor is not None
            and anchor.hash == last.hash
            and hmac.compare_digest(key.mac(event_bytes(anchor)), anchor.mac or "")
        )
        if not intact:
            change = "is missing" if anchor is None else "was changed"
            report = ChainReport(
                False, 0, f"event {last.seq}, signed in the checkpoint of {last.at}, {change}", last.seq, len(good)
            )
            return CheckpointOutcome(report, message=f"no checkpoint written: {report.describe()}")
        walk = _walk(session, key, after=last.seq, prev_hash=last.hash, until=head.seq)
    else:
        walk = _walk(session, key, until=head.seq)
    found: tuple[str, int | None] | None = (
        (walk.problem, walk.seq) if walk.problem is not None else _head_problem(head, walk)
    )
    if found is not None:
        report = ChainReport(False, walk.checked, found[0], found[1], len(good))
        return CheckpointOutcome(report, message=f"no checkpoint written: {report.describe()}")
    report = ChainReport(True, walk.checked, checkpoints=len(good))
    if last is not None and last.seq == head.seq:
        return CheckpointOutcome(report, message=f"no event since the checkpoint at event {last.seq}")
    checkpoint = Checkpoint(
        seq=head.seq, hash=head.hash, at=utcnow().isoformat(timespec="seconds"), key_id=key.key_id
    ).signed_with(signer)
    _append_line(path, json.dumps(checkpoint.as_dict(), sort_keys=True))
    return CheckpointOutcome(report, checkpoint, f"checkpoint written at event {checkpoint.seq} to {path}")


# ---- export ----------------------------------------------------------------------------------


def export(session: Session, out: TextIO) -> int:
    """Write every event as one JSON line, in chain order; returns the count."""
    count = 0
    for event in iter_events(session):
        out.write(
            json.dumps(
                {
                    "seq": event.seq,
                    "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
                    "actor_type": event.actor_type,
                    "actor": event.actor,
                    "action": event.action,
                    "object_type": event.object_type,
                    "object_id": event.object_id,
                    "details": event.details,
                    "prev_hash": event.prev_hash,
                    "hash": event.hash,
                    "mac": event.mac,
                },
                sort_keys=True,
                ensure_ascii=False,
            )
            + "\n"
        )
        count += 1
    return count


def search(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[AuditEvent]:
    """Events newest first, filtered (an action ending in ``.`` matches by prefix: ``user.``), a page
    of ``limit`` before the sequence number ``before``."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(
            AuditEvent.action.startswith(action) if action.endswith(".") else AuditEvent.action == action
        )
    if object_type:
        query = query.where(AuditEvent.object_type == object_type)
    if object_id:
        query = query.where(AuditEvent.object_id == object_id)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    return list(session.scalars(query))
