"""The append-only, hash-chained audit log: record, verify, export."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seawall.auth.models import AuditEvent, AuditHead
from seawall.auth.permissions import Principal
from seawall.db import utcnow

GENESIS_HASH = "0" * 64


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
    """The bytes an event's hash covers: every field, in a fixed order and encoding."""
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


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(
        canonical_event(
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
    ).hexdigest()


def record(
    session: Session,
    actor: Principal,
    action: str,
    object_type: str = "",
    object_id: str | int = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event in the caller's transaction, so it commits or rolls back with the change."""
    # Updating the head row first takes its write lock: concurrent appenders queue behind it
    # (PostgreSQL row lock, SQLite write lock) instead of forking the chain.
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    head = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
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
    event.hash = event_hash(event)
    session.add(event)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=event.hash))
    session.flush()
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None  # the event the problem was found at

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} events verified"
        return f"audit chain BROKEN at event {self.seq}: {self.problem} ({self.checked} events verified before it)"


def iter_events(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> ChainReport:
    """Walk the chain from the start and name the first event that was altered, deleted or moved."""
    expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0
    previous_time: datetime | None = None
    for event in iter_events(session):
        if event.seq != expected_seq:
            missing = (
                f"event {expected_seq} is missing"
                if event.seq == expected_seq + 1
                else f"events {expected_seq}-{event.seq - 1} are missing"
            )
            return ChainReport(False, checked, f"{missing} (deleted); the chain resumes at {event.seq}", expected_seq)
        if event_hash(event) != event.hash:
            return ChainReport(False, checked, "its content was altered (it no longer matches its hash)", event.seq)
        if event.prev_hash != expected_prev:
            return ChainReport(
                False,
                checked,
                f"it does not follow event {event.seq - 1} (that event was altered, or this one inserted out of order)",
                event.seq,
            )
        if previous_time is not None and event.occurred_at < previous_time:
            return ChainReport(False, checked, "it is dated before the event it follows (out of order)", event.seq)
        previous_time = event.occurred_at
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    head = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one_or_none()
    if head is not None and (head.seq != expected_seq - 1 or head.hash != expected_prev):
        if head.seq >= expected_seq:
            return ChainReport(
                False, checked, f"events {expected_seq}-{head.seq} at the end are missing (deleted)", expected_seq
            )
        return ChainReport(False, checked, "the chain does not end where its head says it ends", expected_seq - 1)
    return ChainReport(True, checked)


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
                },
                sort_keys=True,
                ensure_ascii=False,
            )
            + "\n"
        )
        count += 1
    return count
