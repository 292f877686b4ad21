"""Retention and legal hold over the evidence store.

An object's ``retain_until`` is set when the report it backs is filed (``SEAWALL_RETENTION_DAYS``
by jurisdiction: a year by default, the REPORT Act's and the UK regulations' minimum). The purge
destroys what expired, one audit event per object (what, why, when: never content), and never
anything under a **legal hold** on a case: the case's own evidence, its items' and its authority
reports'. Authority report rows (the references) are never purged.

The purge works in batches, each its own transaction; a crash loses at most the batch in flight,
and the next run starts over from what is still due (files of rows already marked deleted are
removed by the evidence sweep). Each batch first takes the audit chain's head lock, which placing a
hold also takes, and only then reads the holds: a hold committed before the batch is always seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.evidence import service as evidence
from seawall.evidence.models import EvidenceObject
from seawall.hotline.models import Case, CaseItem
from seawall.reporting.models import AuthorityReport, LegalHold
from seawall.reporting.service import NotFound, ReportingError

MAX_REASON = 2000


def _case(session: Session, reference: str) -> Case:
    case = session.scalar(select(Case).where(Case.reference == reference))
    if case is None:
        raise NotFound(f"no case {reference!r}")
    return case


def place_hold(session: Session, actor: Principal, case_reference: str, reason: str) -> LegalHold:
    reason = (reason or "").strip()
    if not reason:
        raise ReportingError("a legal hold says why (the order or request it answers)")
    if len(reason) > MAX_REASON:
        raise ReportingError(f"the reason is longer than {MAX_REASON} characters")
    case = _case(session, case_reference)
    audit.record(session, actor, "legal_hold.place", "case", case.reference, {"reason": reason})
    hold = LegalHold(case_id=case.id, reason=reason, created_by=actor.name, created_at=utcnow())
    session.add(hold)
    session.flush()
    return hold


def release_hold(session: Session, actor: Principal, hold_id: int) -> LegalHold:
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound(f"no legal hold {hold_id}")
    if hold.released_at is None:
        audit.record(session, actor, "legal_hold.release", "legal_hold", hold.id, {"case_id": hold.case_id})
        hold.released_at, hold.released_by = utcnow(), actor.name
    return hold


def holds(session: Session, *, live_only: bool = True) -> list[LegalHold]:
    query = select(LegalHold).order_by(LegalHold.id)
    if live_only:
        query = query.where(LegalHold.released_at.is_(None))
    return list(session.scalars(query))


def held_subjects(session: Session) -> set[str]:
    """Evidence subjects under a live hold: each held case, its items, its authority reports."""
    cases = set(session.scalars(select(LegalHold.case_id).where(LegalHold.released_at.is_(None))))
    if not cases:
        return set()
    subjects = {f"case:{c}" for c in cases}
    subjects |= {f"item:{i}" for i in session.scalars(select(CaseItem.item_id).where(CaseItem.case_id.in_(cases)))}
    subjects |= {
        f"authority_report:{r}"
        for r in session.scalars(select(AuthorityReport.id).where(AuthorityReport.case_id.in_(cases)))
    }
    return subjects


@dataclass
class PurgeResult:
    purged: int = 0
    held: int = 0  # expired, kept under a legal hold


def purge(
    factory: sessionmaker[Session], settings: Settings, *, now: datetime | None = None, batch: int = 200
) -> PurgeResult:
    """Destroy every evidence object whose retention ended, except under a legal hold."""
    moment = now or utcnow()
    result = PurgeResult()
    after = ""
    while True:
        with factory() as session:
            ids = list(
                session.scalars(
                    select(EvidenceObject.id)
                    .where(
                        EvidenceObject.retain_until <= moment,
                        EvidenceObject.deleted_at.is_(None),
                        EvidenceObject.id > after,
                    )
                    .order_by(EvidenceObject.id)
                    .limit(batch)
                )
            )
        if not ids:
            return result
        after = ids[-1]
        with transaction(factory) as session:
            audit.record(session, SYSTEM, "evidence.purge", "evidence", "", {"candidates": len(ids)})
            held = held_subjects(session)  # after the head lock: a hold placed before now is seen
            for row in session.scalars(select(EvidenceObject).where(EvidenceObject.id.in_(ids))):
                if row.deleted_at is not None or row.retain_until is None or row.retain_until > moment:
                    continue  # changed since it was listed
                if row.subject in held:
                    result.held += 1
                    continue
                evidence.delete(
                    session,
                    settings,
                    row.id,
                    actor=SYSTEM,
                    reason=f"retention ended {row.retain_until:%Y-%m-%d}",
                )
                result.purged += 1
