"""Intake: reports from every channel, deduplicated into cases, with a reference and a PIN.

A report of a URL joins the case of that URL (by its normalised form) while the case is still being
worked on; otherwise it opens a new case, which is then captured in the background. A report that
carries only hashes (a partner's upload hashes, a child's self-report) opens a case of its own.
Whatever the channel, the reporter learns only what the public status page shows: received,
assessed, action taken, closed — never what was found.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import utcnow
from seawall.hotline.models import (
    AGE_BANDS,
    CHANNELS,
    CONTENT_TYPES,
    SITE_TYPES,
    Case,
    Report,
    ReportSignal,
)
from seawall.lists.urls import normalize_url
from seawall.secrets import decrypt_secret, encrypt_secret

log = logging.getLogger(__name__)
# Crockford's base32 without I, L, O, U: read aloud or typed from paper without confusion.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Cases that are still being worked on: a new report of the same URL joins them.
LIVE_CASE_STATES = ("open", "captured", "assessed", "confirmed", "notified", "referred")
MAX_DESCRIPTION = 5000
MAX_CONTACT = 320
MAX_SIGNALS = 100
_pins = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY_PIN = _pins.hash("00000000")

# What the public status page may say, by case state.
PUBLIC_STATUS = {
    "open": "received",
    "captured": "received",
    "assessed": "assessed",
    "confirmed": "assessed",
    "notified": "action taken",
    "referred": "action taken",
    "removed": "action taken",
    "closed": "closed",
}


class IntakeError(ValueError):
    """A report that cannot be taken as sent; the message says what to change."""


def new_reference(prefix: str) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{prefix}-{body[:5]}-{body[5:]}"


def new_pin() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(8))


@dataclass
class ReportIn:
    """A report as any channel hands it in."""

    channel: str
    url: str | None = None
    content_type: str | None = None
    site_type: str | None = None
    description: str = ""
    contact: str | None = None
    external_id: str | None = None
    urgent: bool = False
    age_band: str | None = None
    signals: list[tuple[str, str]] = field(default_factory=list)  # (signal type, value)


@dataclass(frozen=True)
class Submitted:
    report: Report
    case: Case
    pin: str | None  # None when the report existed already (a partner's resubmission)
    created: bool
    new_case: bool


def _clean(report: ReportIn) -> tuple[ReportIn, str | None]:
    """The report validated and normalised, and its URL's normalised key (None without a URL)."""
    from seawall.signals.base import get_signal_type

    if report.channel not in CHANNELS:
        raise IntakeError(f"unknown channel {report.channel!r}; channels: {', '.join(CHANNELS)}")
    url = (report.url or "").strip() or None
    url_key = None
    if url is not None:
        if len(url) > 2048:
            raise IntakeError("the URL is longer than 2048 characters")
        try:
            url_key = normalize_url(url)  # http and https only
        except ValueError as exc:
            raise IntakeError(f"not a web address Seawall can check: {exc}") from None
    if report.content_type is not None and report.content_type not in CONTENT_TYPES:
        raise IntakeError(f"content_type is one of {', '.join(CONTENT_TYPES)}")
    if report.site_type is not None and report.site_type not in SITE_TYPES:
        raise IntakeError(f"site_type is one of {', '.join(SITE_TYPES)}")
    if report.age_band is not None and report.age_band not in AGE_BANDS:
        raise IntakeError(f"age_band is one of {', '.join(AGE_BANDS)}")
    description = (report.description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise IntakeError(f"the description is longer than {MAX_DESCRIPTION} characters")
    contact = (report.contact or "").strip() or None
    if contact is not None and (len(contact) > MAX_CONTACT or "@" not in contact):
        raise IntakeError("the contact is an e-mail address")
    if report.external_id is not None and not 0 < len(report.external_id) <= 200:
        raise IntakeError("external_id is 1 to 200 characters")
    if len(report.signals) > MAX_SIGNALS:
        raise IntakeError(f"a report carries at most {MAX_SIGNALS} hashes")
    signals: list[tuple[str, str]] = []
    for signal_type, value in report.signals:
        try:
            kind = get_signal_type(signal_type)
            signals.append((kind.name, kind.validate(value)))
        except KeyError:
            raise IntakeError(f"unknown signal type {signal_type!r}") from None
        except ValueError as exc:
            raise IntakeError(str(exc)) from None
    if url is None and not signals:
        raise IntakeError("a report names a URL or carries hashes")
    cleaned = ReportIn(
        channel=report.channel,
        url=url,
        content_type=report.content_type,
        site_type=report.site_type,
        description=description,
        contact=contact,
        external_id=report.external_id,
        urgent=bool(report.urgent),
        age_band=report.age_band,
        signals=list(dict.fromkeys(signals)),
    )
    return cleaned, url_key


def url_hash(url_key: str) -> str:
    return hashlib.sha256(url_key.encode()).hexdigest()


def _live_case(session: Session, url_key: str) -> Case | None:
    return session.scalar(
        select(Case)
        .where(Case.url_hash == url_hash(url_key), Case.url_key == url_key, Case.state.in_(LIVE_CASE_STATES))
        .order_by(Case.id.desc())
        .limit(1)
    )


def _existing(session: Session, partner: str, external_id: str) -> Report | None:
    return session.scalar(select(Report).where(Report.partner == partner, Report.external_id == external_id))


def submit(
    session: Session,
    settings: Settings,
    actor: Principal,
    report: ReportIn,
    *,
    partner: str | None = None,
    capture: bool = True,
) -> Submitted:
    """Take a report in (the caller commits). ``partner``: who filed it, for a partner's own look-ups
    and resubmissions (a report with the same ``external_id`` from the same partner is the same
    report). A new URL case is captured once the transaction commits (``capture.schedule``), unless
    ``capture`` is False (demo data, whose example URLs cannot be fetched)."""
    cleaned, url_key = _clean(report)
    if partner is not None and cleaned.external_id is not None:
        found = _existing(session, partner, cleaned.external_id)
        if found is not None:
            case = session.get(Case, found.case_id) if found.case_id is not None else None
            if case is None:
                raise IntakeError(f"report {found.reference} has no case")  # never: cases are not deleted
            return Submitted(found, case, None, created=False, new_case=False)
    now = utcnow()
    case = _live_case(session, url_key) if url_key is not None else None
    new_case = case is None
    if case is None:
        case = Case(
            reference=new_reference("C"),
            kind="url" if url_key is not None else "hashes",
            url=cleaned.url,
            url_key=url_key,
            url_hash=url_hash(url_key) if url_key is not None else None,
            state="open",
            opened_at=now,
            updated_at=now,
        )
        session.add(case)
        session.flush()
    priority = _priority(cleaned)
    if priority > case.priority:
        case.priority = priority
    pin = new_pin()
    row = Report(
        reference=new_reference("R"),
        pin_hash=_pins.hash(pin),
        channel=cleaned.channel,
        case_id=case.id,
        url=cleaned.url,
        content_type=cleaned.content_type,
        site_type=cleaned.site_type,
        description=cleaned.description,
        contact_sealed=encrypt_secret(settings, cleaned.contact) if cleaned.contact else None,
        partner=partner,
        external_id=cleaned.external_id,
        urgent=cleaned.urgent,
        age_band=cleaned.age_band,
        reported_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # The same partner's same report, committed by a concurrent request a moment ago.
        raise IntakeError(f"report {cleaned.external_id!r} is being submitted already; send it again") from None
    for signal_type, value in cleaned.signals:
        session.add(ReportSignal(report_id=row.id, signal_type=signal_type, value=value))
    audit.record(
        session,
        actor,
        "report.create",
        "report",
        row.id,
        {
            "reference": row.reference,
            "case": case.reference,
            "channel": row.channel,
            "new_case": new_case,
            "signals": len(cleaned.signals),
        },
    )
    session.flush()
    if capture and new_case and case.kind == "url":
        from seawall.hotline import capture as capturing

        capturing.schedule_after_commit(session, case.id)
    return Submitted(row, case, pin, created=True, new_case=new_case)


def _priority(report: ReportIn) -> int:
    """Urgent reports and children's own reports go first."""
    if report.urgent:
        return 100
    if report.channel == "self_report":
        return 80
    return 0


def public_status(case: Case | None) -> str:
    return PUBLIC_STATUS.get(case.state, "received") if case is not None else "received"


def report_by_pin(session: Session, reference: str, pin: str) -> Report | None:
    """The report a reference and PIN belong to, or None (the same answer, and about the same time,
    for an unknown reference as for a wrong PIN)."""
    row = session.scalar(select(Report).where(Report.reference == reference.strip().upper()))
    try:
        _pins.verify(row.pin_hash if row is not None else _DUMMY_PIN, pin.strip())
    except (VerificationError, InvalidHashError):
        return None
    return row


def status_by_pin(session: Session, reference: str, pin: str) -> str | None:
    """The public status of a report, or None when the reference and PIN do not belong together
    (the same answer, and about the same time, for an unknown reference as for a wrong PIN)."""
    row = report_by_pin(session, reference, pin)
    if row is None:
        return None
    if row.withdrawn_at is not None:
        return "withdrawn"
    return public_status(session.get(Case, row.case_id) if row.case_id is not None else None)


def get_report(session: Session, reference: str) -> Report | None:
    return session.scalar(select(Report).where(Report.reference == reference.strip().upper()))


def report_for(session: Session, principal: Principal, reference: str) -> Report | None:
    """A report as the caller may see it: its own (a partner's), or any for the hotline's people
    (``reports:read`` in the console) and admins. None otherwise, as for a report that does not exist."""
    row = get_report(session, reference)
    if row is None:
        return None
    if (principal.kind == "user" and principal.can("reports:read")) or principal.can("admin"):
        return row
    if row.partner is not None and hmac.compare_digest(row.partner, partner_name(principal)):
        return row
    return None


def partner_name(principal: Principal) -> str:
    """How a report records the partner that filed it."""
    return f"{principal.kind}:{principal.name}"[:120]


def contact_of(settings: Settings, report: Report) -> str | None:
    return decrypt_secret(settings, report.contact_sealed) if report.contact_sealed else None


def list_reports(
    session: Session,
    *,
    status: str | None = None,
    channel: str | None = None,
    partner: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[tuple[Report, Case | None]]:
    """Reports newest first, with their cases; ``status`` is a public status or a case state."""
    query = select(Report, Case).outerjoin(Case, Case.id == Report.case_id).order_by(Report.id.desc()).limit(limit)
    if channel:
        query = query.where(Report.channel == channel)
    if partner:
        query = query.where(Report.partner == partner)
    if since is not None:
        query = query.where(Report.reported_at >= since)
    if status:
        states: Sequence[str] = [s for s, public in PUBLIC_STATUS.items() if public == status] or [status]
        query = query.where(Case.state.in_(states))
    return [(r, c) for r, c in session.execute(query).all()]


def signals_of(session: Session, report: Report) -> list[tuple[str, str]]:
    rows = session.execute(
        select(ReportSignal.signal_type, ReportSignal.value).where(ReportSignal.report_id == report.id)
    ).all()
    return [(t, v) for t, v in rows]


def signals_with_lists(session: Session, report: Report) -> list[tuple[str, str, list[str]]]:
    """A report's hashes, each with the lists that have an active entry of exactly that value (for
    the hotline's people: a hash-only case, a self-report, shows what it is already known as)."""
    from seawall.lists.models import Entry, HashList

    out = []
    for signal_type, value in signals_of(session, report):
        names = session.scalars(
            select(HashList.name)
            .join(Entry, Entry.list_id == HashList.id)
            .where(
                Entry.signal_type == signal_type,
                Entry.value == value,
                Entry.status == "active",
                HashList.deleted_at.is_(None),
                Entry.external_id != f"self-report:{report.reference}",  # not its own entries
            )
            .distinct()
        ).all()
        out.append((signal_type, value, sorted(names)))
    return out


# Signal types a match's report carries (the content's own hashes; vPDQ frames stay in the match log).
_MATCH_SIGNALS = ("md5", "sha1", "sha256", "pdq")


def escalate_match(
    session: Session,
    settings: Settings,
    actor: Principal,
    *,
    caller: str,
    signals: dict[str, list[str]],
    url: str | None,
    content_key: str,
    matches: list[dict[str, Any]],
    reasons: list[str],
) -> Report | None:
    """A match a policy sent to ``review``, as a hotline report (channel ``match``) in the caller's
    transaction. The same content matched again by the same caller is the same report (its
    ``external_id`` names the content), so repeats never flood the queue. None when the match carries
    neither a URL nor a hash to report (a keyword match), or the report could not be made (logged:
    the match itself is recorded whatever happens here)."""
    hashes = [(t, v) for t in _MATCH_SIGNALS for v in signals.get(t, [])[:1]]
    if url is None and not hashes:
        return None
    lists = sorted({str(m.get("list")) for m in matches})
    report = ReportIn(
        channel="match",
        url=url,
        description=("; ".join(reasons) or f"matched {', '.join(lists)}")[:MAX_DESCRIPTION],
        external_id=f"match:{content_key}",
        urgent=any(m.get("category") == "A" for m in matches),
        signals=hashes,
    )
    try:
        with session.begin_nested():
            return submit(session, settings, actor, report, partner=caller).report
    except IntakeError as exc:
        log.warning("a match sent to review was not reported to the hotline: %s", exc)
        return None
