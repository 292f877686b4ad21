"""Authority reports: drafts from confirmed decisions or a platform's API call, a person's approval
(or the operator's auto-submit policy), and the submission state machine.

Submission is a series of steps, each one's outcome committed before the next begins, and no
transaction is open while the authority answers (:func:`advance`):

* CyberTipline: ``submit`` (its reportId is stored at once) → ``upload`` each file (its fileId
  stored) → ``fileinfo`` each file → ``finish``. A step that is recorded is never repeated, so a
  crash anywhere resumes where it stopped and never files a report twice: the only repeatable
  step is a ``submit`` whose answer was lost, and NCMEC deletes a report that was never finished
  (24 h after opening), so it never becomes a second filed report. A ``finish`` whose answer was
  lost is sent again and NCMEC's "already finished" (5102) counts as done. A report NCMEC holds
  unfinished shows as ``opened``, with its reportId: half-finished, and said so.
* NCA: one POST of the pack; its reference stored.

A failure NCMEC or the network may get past is retried through the task queue with exponential
back-off; others (validation, credentials) stop at ``failed`` with the error and the Request-ID.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.evidence import service as evidence
from seawall.evidence.models import EvidenceObject
from seawall.fetch import AddressRules
from seawall.hotline.classification import industry
from seawall.hotline.models import Assessment, Case, CaseItem, Item, Report, ReportSignal
from seawall.reporting import cybertipline, nca
from seawall.reporting.models import (
    AUTHORITIES,
    EVENT_NAMES,
    AuthorityCredential,
    AuthorityReport,
    AuthorityReportFile,
    IpCaptureEvent,
)
from seawall.secrets import decrypt_secret, encrypt_secret

log = logging.getLogger(__name__)

LEASE_SECONDS_PER_STEP = 120.0  # a claimed submission is left alone this long per step it may take
CLOCK_SLACK_SECONDS = 5.0
EDITABLE = ("draft", "failed")  # states whose facts may still change (failed: before anything was filed)
FLAG_FILE_ANNOTATIONS = {"self_generated": "possibleSelfProduction", "ai_generated": "generativeAi"}
FLAG_REPORT_ANNOTATIONS = {"sextortion": "sextortion"}
DEFAULT_INCIDENT_TYPE = cybertipline.INCIDENT_TYPES[0]
# A file uploaded in an earlier attempt whose fileinfo is not recorded: that attempt may have sent it
# and lost the answer. NCMEC takes a file's details once and names no "already given" code, so a
# refusal of the resend cannot be told from a real one: a person decides.
FILEINFO_IN_DOUBT = (
    " — file {file_id} was uploaded by an earlier attempt, which may have sent its details and lost "
    "NCMEC's answer (NCMEC takes a file's details once): ask NCMEC quoting the Request-ID; the report "
    "stays open and unfinished at NCMEC until it is cancelled ('seawall authority-reports cancel {reference}')"
)


class ReportingError(ValueError):
    """Bad input or a refused change; the message says what to do."""


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


# ---------------------------------------------------------------- credentials


def set_credentials(
    session: Session, settings: Settings, actor: Principal, authority: str, username: str, secret: str
) -> None:
    """Store an authority's login; the password (or token) encrypted, never shown or logged."""
    if authority not in AUTHORITIES:
        raise ReportingError(f"authority is one of {', '.join(AUTHORITIES)} (got {authority!r})")
    if not secret:
        raise ReportingError("the password (or token) is empty")
    row = session.get(AuthorityCredential, authority)
    sealed = encrypt_secret(settings, secret)
    if row is None:
        session.add(
            AuthorityCredential(authority=authority, username=username, secret_sealed=sealed, updated_by=actor.name)
        )
    else:
        row.username, row.secret_sealed, row.updated_at, row.updated_by = username, sealed, utcnow(), actor.name
    audit.record(session, actor, "authority.credentials", "authority", authority, {"username": username})
    session.flush()


def credentials(session: Session, settings: Settings, authority: str) -> tuple[str, str]:
    row = session.get(AuthorityCredential, authority)
    if row is None:
        raise ReportingError(
            f"no {authority} credentials stored: run 'seawall authority-reports credentials {authority}'"
        )
    return row.username, decrypt_secret(settings, row.secret_sealed)


# ---------------------------------------------------------------- drafts


def _new_reference() -> str:
    return f"AR-{secrets.token_hex(5).upper()}"


def _reporter(settings: Settings) -> dict[str, Any]:
    return {
        "first_name": settings.reporting_reporter_first_name,
        "last_name": settings.reporting_reporter_last_name,
        "email": settings.reporting_reporter_email,
        "phone": settings.reporting_reporter_phone,
    }


def due(settings: Settings, row: AuthorityReport) -> datetime | None:
    if row.authority != "nca":
        return None
    return nca.deadline(row.created_at, row.priority, settings.nca_priority_hours)


def get(session: Session, reference: str) -> AuthorityReport:
    row = session.scalar(select(AuthorityReport).where(AuthorityReport.reference == reference))
    if row is None:
        raise NotFound(f"no authority report {reference!r}")
    return row


def files_of(session: Session, row: AuthorityReport) -> list[AuthorityReportFile]:
    return list(
        session.scalars(
            select(AuthorityReportFile).where(AuthorityReportFile.report_id == row.id).order_by(AuthorityReportFile.id)
        )
    )


def events_of(session: Session, row: AuthorityReport) -> list[IpCaptureEvent]:
    return list(
        session.scalars(select(IpCaptureEvent).where(IpCaptureEvent.report_id == row.id).order_by(IpCaptureEvent.at))
    )


def _file_from_item(item: Item, decision: Assessment | None) -> AuthorityReportFile:
    flags = set(decision.flags or []) if decision is not None else set()
    annotations = sorted({FLAG_FILE_ANNOTATIONS[f] for f in flags if f in FLAG_FILE_ANNOTATIONS})
    if decision is not None and decision.age_band == "0-2":
        annotations.append("infant")
    classification = industry(decision.outcome, decision.category, decision.age_band) if decision is not None else None
    extension = {"image/png": "png", "image/jpeg": "jpg", "video/mp4": "mp4"}.get(item.mime, "bin")
    return AuthorityReportFile(
        item_id=item.id,
        evidence_id=item.evidence_id,
        file_name=f"item-{item.id}.{extension}",
        media_type=item.mime or "application/octet-stream",
        md5=item.md5,
        sha1=item.sha1,
        sha256=item.sha256,
        classification=classification,
        annotations=sorted(set(annotations)),
        exif={},
    )


def _decision_of(session: Session, item: Item, fallback: Assessment) -> Assessment | None:
    if item.assessment_id is None:
        return fallback if fallback.subject == "case" else None
    return session.get(Assessment, item.assessment_id)


@dataclass
class Drafted:
    reports: list[AuthorityReport] = field(default_factory=list)
    auto: bool = False


def draft_from_decision(
    session: Session, settings: Settings, actor: Principal, decision: Assessment, cases: list[Case]
) -> Drafted:
    """Drafts (one per case and configured authority) for a decision that just became final.

    Called by the hotline's QA inside its transaction; it only writes rows: nothing is sent until
    the transaction commits, and then only through the task queue."""
    done = Drafted()
    if decision.outcome != "csam":
        return done
    for case in cases:
        reports = list(session.scalars(select(Report).where(Report.case_id == case.id).order_by(Report.id)))
        platform = next((r for r in reports if r.channel == "match"), None)
        if platform is None and not settings.reporting_operator_is_reporter:
            continue  # the hotline's own case, and the operator does not report those itself
        for authority in settings.reporting_authorities:
            if authority not in AUTHORITIES:
                log.warning("SEAWALL_REPORTING_AUTHORITIES names %r, which is not one of %s", authority, AUTHORITIES)
                continue
            row = _draft_for_case(session, settings, actor, authority, decision, case, reports, platform)
            if row is not None:
                done.reports.append(row)
    if done.reports and settings.reporting_auto_submit:
        done.auto = True
        for row in done.reports:
            if row.state != "draft":
                continue
            try:
                approve(session, settings, SYSTEM, row, policy=True)
            except ReportingError as exc:  # the draft stays for a person; the confirmation goes on
                row.last_error = str(exc)
                log.warning("authority report %s not auto-submitted: %s", row.reference, exc)
    return done


def _draft_for_case(
    session: Session,
    settings: Settings,
    actor: Principal,
    authority: str,
    decision: Assessment,
    case: Case,
    reports: list[Report],
    platform: Report | None,
) -> AuthorityReport | None:
    key = f"case:{case.id}"
    row = session.scalar(
        select(AuthorityReport).where(AuthorityReport.authority == authority, AuthorityReport.dedupe_key == key)
    )
    if row is not None and row.state not in ("draft",):
        return None  # already on its way (or filed): a later decision does not change what was sent
    first_seen = min((r.reported_at for r in reports), default=case.opened_at)
    flags = set(decision.flags or [])
    facts: dict[str, Any] = dict(row.facts) if row is not None else {}
    facts.update(
        {
            "incident_type": facts.get("incident_type") or DEFAULT_INCIDENT_TYPE,
            "incident_at": first_seen.isoformat(),
            "platform": settings.reporting_platform,
            "annotations": sorted({FLAG_REPORT_ANNOTATIONS[f] for f in flags if f in FLAG_REPORT_ANNOTATIONS}),
            "urls": [case.url] if case.url else [],
            "reporter": _reporter(settings),
            "detection": "hash match reviewed by a person" if platform is not None else "report reviewed by a person",
        }
    )
    if row is None:
        row = AuthorityReport(
            reference=_new_reference(),
            authority=authority,
            state="draft",
            source="decision",
            dedupe_key=key,
            owner=platform.partner if platform is not None else None,
            case_id=case.id,
            jurisdiction=settings.reporting_jurisdiction,
            facts=facts,
            priority=2 if any(r.urgent for r in reports) else 3,
            created_at=utcnow(),
            attempts=0,
            last_error="",
        )
        session.add(row)
        session.flush()
    row.facts, row.assessment_id, row.updated_at = facts, decision.id, utcnow()
    row.due_at = due(settings, row)
    _refresh_files(session, row, case, decision)
    audit.record(
        session,
        actor,
        "authority_report.draft",
        "authority_report",
        row.reference,
        {"authority": authority, "case": case.reference, "assessment": decision.id},
    )
    return row


def _refresh_files(session: Session, row: AuthorityReport, case: Case, decision: Assessment) -> None:
    """The draft's files: the case's items confirmed as CSAM; hash-only content as additional info."""
    for old in files_of(session, row):
        if old.item_id is not None:  # the hotline's own; files the platform added stay
            session.delete(old)
    items = list(
        session.scalars(select(Item).join(CaseItem, CaseItem.item_id == Item.id).where(CaseItem.case_id == case.id))
    )
    for item in items:
        decision_of_item = _decision_of(session, item, decision)
        if decision_of_item is None or decision_of_item.outcome != "csam":
            continue
        file = _file_from_item(item, decision_of_item)
        file.report_id = row.id
        session.add(file)
    signals = list(
        session.execute(
            select(ReportSignal.signal_type, ReportSignal.value)
            .join(Report, Report.id == ReportSignal.report_id)
            .where(Report.case_id == case.id)
            .order_by(ReportSignal.signal_type, ReportSignal.value)
        )
    )
    if signals and not items:
        hashes = ", ".join(f"{t}:{v}" for t, v in signals)
        row.facts = {**row.facts, "additional_info": f"Matched content (hashes, file not held): {hashes}"[:3000]}
    session.flush()


@dataclass
class ApiFile:
    md5: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    file_name: str = ""
    classification: str | None = None
    annotations: list[str] = field(default_factory=list)
    uploaded_at: datetime | None = None
    exif: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiEvent:
    ip_address: str
    event_name: str
    at: datetime
    port: int | None = None
    possible_proxy: bool = False


def _check_facts(facts: dict[str, Any]) -> None:
    incident_type = facts.get("incident_type")
    if incident_type is not None and incident_type not in cybertipline.INCIDENT_TYPES:
        raise ReportingError(f"incident_type is one of: {'; '.join(cybertipline.INCIDENT_TYPES)}")
    unknown = set(facts.get("annotations") or []) - set(cybertipline.REPORT_ANNOTATIONS)
    if unknown:
        raise ReportingError(f"unknown report annotation(s): {', '.join(sorted(unknown))}")
    at = facts.get("incident_at")
    if at is not None:
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ReportingError("incident_at carries a time zone (e.g. 2026-05-01T10:00:00+00:00)")
        if moment > utcnow():
            raise ReportingError("incident_at must be in the past")
    _check_sections(facts)


_ACCOUNT_FIELDS = ("person", "esp_identifier", "screen_name", "display_names", "profile_urls")


def _check_sections(facts: dict[str, Any]) -> None:
    """The rules of lawEnforcement, intendedRecipient and victim the field types cannot say."""
    law = facts.get("law_enforcement")
    if law is not None:
        if not str(law.get("agency_name") or "").strip():
            raise ReportingError("law_enforcement.agency_name is required (the agency's name)")
        if law.get("flea_country") and law.get("served_legal_process_international") is not True:
            raise ReportingError(
                "law_enforcement.flea_country names the country whose agency served legal process: "
                "set served_legal_process_international to true with it"
            )
    for section, extra in (("intended_recipients", ()), ("victims", ("school_name",))):
        for index, entry in enumerate(facts.get(section) or []):
            where = f"{section}[{index}]"
            names = (*_ACCOUNT_FIELDS, *extra)
            if not any(entry.get(name) for name in names):
                raise ReportingError(f"{where} names nobody: give at least one of {', '.join(names)}")
            born = (entry.get("person") or {}).get("date_of_birth")
            if born is not None and str(born) > utcnow().date().isoformat():
                raise ReportingError(f"{where}.person.date_of_birth is in the future")


def _add_files_and_events(session: Session, row: AuthorityReport, files: list[ApiFile], events: list[ApiEvent]) -> None:
    import ipaddress

    for f in files:
        if not (f.md5 or f.sha1 or f.sha256):
            raise ReportingError("a file has at least one of md5, sha1, sha256")
        if f.classification is not None and f.classification not in cybertipline.INDUSTRY_CLASSIFICATIONS:
            raise ReportingError(f"classification is A1, A2, B1 or B2 (got {f.classification!r})")
        unknown = set(f.annotations) - set(cybertipline.FILE_ANNOTATIONS)
        if unknown:
            raise ReportingError(f"unknown file annotation(s): {', '.join(sorted(unknown))}")
        session.add(
            AuthorityReportFile(
                report_id=row.id,
                md5=f.md5,
                sha1=f.sha1,
                sha256=f.sha256,
                file_name=f.file_name,
                classification=f.classification,
                annotations=sorted(set(f.annotations)),
                uploaded_at=f.uploaded_at,
                exif=f.exif,
            )
        )
    for e in events:
        try:
            ipaddress.ip_address(e.ip_address)
        except ValueError:
            raise ReportingError(f"{e.ip_address!r} is not an IPv4 or IPv6 address") from None
        if e.event_name not in EVENT_NAMES:
            raise ReportingError(f"event_name is one of {', '.join(EVENT_NAMES)} (got {e.event_name!r})")
        if e.at.tzinfo is None:
            raise ReportingError("an IP capture event's time carries a time zone")
        if e.port is not None and not 1 <= e.port <= 65535:
            raise ReportingError(f"port {e.port} is not 1 to 65535")
        session.add(
            IpCaptureEvent(
                report_id=row.id,
                ip_address=e.ip_address,
                port=e.port,
                event_name=e.event_name,
                at=e.at,
                possible_proxy=e.possible_proxy,
            )
        )
    session.flush()


def create_from_api(
    session: Session,
    settings: Settings,
    actor: Principal,
    *,
    owner: str,
    authority: str,
    external_id: str,
    facts: dict[str, Any],
    files: list[ApiFile],
    events: list[ApiEvent],
    priority: int = 3,
) -> tuple[AuthorityReport, bool]:
    """A platform's own draft; the same external id from the same caller is the same draft."""
    if authority not in AUTHORITIES:
        raise ReportingError(f"authority is one of {', '.join(AUTHORITIES)} (got {authority!r})")
    if priority not in nca.PRIORITY_MEANINGS:
        raise ReportingError("priority is 1, 2 or 3")
    _check_facts(facts)
    key = f"key:{owner}:{external_id}"[:120]
    existing = session.scalar(
        select(AuthorityReport).where(AuthorityReport.authority == authority, AuthorityReport.dedupe_key == key)
    )
    if existing is not None:
        return existing, False
    base = {
        "incident_type": DEFAULT_INCIDENT_TYPE,
        "incident_at": utcnow().isoformat(),
        "platform": settings.reporting_platform,
        "reporter": _reporter(settings),
        "detection": "reported by the platform",
    }
    row = AuthorityReport(
        reference=_new_reference(),
        authority=authority,
        state="draft",
        source="api",
        dedupe_key=key,
        owner=owner,
        jurisdiction=settings.reporting_jurisdiction,
        facts={**base, **facts},
        priority=priority,
        created_at=utcnow(),
        updated_at=utcnow(),
        attempts=0,
        last_error="",
    )
    session.add(row)
    session.flush()
    row.due_at = due(settings, row)
    _add_files_and_events(session, row, files, events)
    audit.record(session, actor, "authority_report.create", "authority_report", row.reference, {"authority": authority})
    return row, True


def add_facts(
    session: Session,
    actor: Principal,
    row: AuthorityReport,
    *,
    facts: dict[str, Any],
    files: list[ApiFile],
    events: list[ApiEvent],
    priority: int | None = None,
) -> AuthorityReport:
    """What the platform knows and the hotline does not (the account, its IP events), added to a draft."""
    if row.state not in EDITABLE or row.remote_id is not None:
        raise Conflict(f"authority report {row.reference} is {row.state}: only a draft takes more facts")
    _check_facts(facts)
    merged = dict(row.facts)
    for name, value in facts.items():
        if name == "person":
            merged["person"] = {**(merged.get("person") or {}), **value}
        else:
            merged[name] = value
    row.facts, row.updated_at = merged, utcnow()
    if priority is not None:
        if priority not in nca.PRIORITY_MEANINGS:
            raise ReportingError("priority is 1, 2 or 3")
        row.priority = priority
    _add_files_and_events(session, row, files, events)
    audit.record(
        session,
        actor,
        "authority_report.update",
        "authority_report",
        row.reference,
        {"fields": sorted(facts), "files": len(files), "events": len(events), "priority": priority},
    )
    return row


def may_act_on(principal: Principal, row: AuthorityReport) -> bool:
    """A platform's key acts only on the drafts it filed (or that its matches led to); the hotline's
    people (the 'qa' scope) on every one."""
    from seawall.hotline.intake import partner_name

    return principal.can("qa") or (row.owner is not None and row.owner == partner_name(principal))


# ---------------------------------------------------------------- approval and the queue


def approve(
    session: Session, settings: Settings, actor: Principal, row: AuthorityReport, *, policy: bool = False
) -> None:
    """A person's (or the auto-submit policy's) go-ahead: the submission starts once this commits."""
    if row.state == "failed" and row.remote_id is None:
        row.state = "draft"  # a failed draft is approved again after its facts were fixed
    if row.state == "failed" and row.remote_id is not None:
        row.state = "opened"  # resume the report the authority holds
        row.attempts, row.next_attempt_at, row.last_error = 0, utcnow(), ""
        audit.record(session, actor, "authority_report.resume", "authority_report", row.reference, {})
        _after_commit(session, row.id, 0.0)
        return
    if row.state != "draft":
        raise Conflict(f"authority report {row.reference} is {row.state}: only a draft is submitted")
    if row.authority == "ncmec":
        try:
            cybertipline.report_xml(row.facts, [])  # refuse now what NCMEC would refuse later
        except cybertipline.DocumentInvalid as exc:
            raise ReportingError(f"authority report {row.reference} cannot be submitted: {exc}") from None
    now = utcnow()
    row.state, row.approved_by, row.approved_at = "approved", actor.name, now
    row.attempts, row.next_attempt_at, row.last_error = 0, now, ""
    audit.record(session, actor, "authority_report.approve", "authority_report", row.reference, {"policy": policy})
    session.flush()
    _after_commit(session, row.id, 0.0)


def queue_submission(report_id: int, delay: float) -> None:
    """Hand a submission to the task queue (tests replace ``scheduler`` to drive it themselves)."""
    from seawall.reporting.tasks import submit_authority_report

    if delay > 0:
        submit_authority_report.schedule((report_id,), delay=delay)
    else:
        submit_authority_report(report_id)


scheduler: Callable[[int, float], None] = queue_submission


def _after_commit(session: Session, report_id: int, delay: float) -> None:
    event.listen(session, "after_commit", lambda _s: scheduler(report_id, delay), once=True)


def backoff(settings: Settings, attempts: int) -> float:
    return float(min(settings.reporting_retry_base_seconds * (2 ** max(0, attempts - 1)), 6 * 3600))


def requeue_overdue(session: Session, now: datetime | None = None) -> list[int]:
    """Submissions whose next step is due but that no worker holds (a lost task, a crash)."""
    moment = now or utcnow()
    ids = list(
        session.scalars(
            select(AuthorityReport.id)
            .where(
                AuthorityReport.state.in_(("approved", "opened")),
                AuthorityReport.next_attempt_at <= moment - timedelta(seconds=120),
            )
            .order_by(AuthorityReport.id)
            .limit(1000)
        )
    )
    for report_id in ids:
        scheduler(report_id, 0.0)
    return ids


# ---------------------------------------------------------------- submission


@dataclass(frozen=True)
class _Work:
    """What one attempt needs, read in the claiming transaction."""

    report_id: int
    reference: str
    authority: str
    attempt: int
    lease: datetime
    remote_id: str | None
    facts: dict[str, Any]
    priority: int
    due_at: datetime | None
    files: list[dict[str, Any]]
    events: list[cybertipline.IpEvent]
    username: str
    secret: str


def _file_dict(f: AuthorityReportFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "item_id": f.item_id,
        "evidence_id": f.evidence_id,
        "file_name": f.file_name or f"file-{f.id}",
        "media_type": f.media_type,
        "md5": f.md5,
        "sha1": f.sha1,
        "sha256": f.sha256,
        "classification": f.classification,
        "annotations": list(f.annotations or []),
        "uploaded_at": f.uploaded_at.isoformat() if f.uploaded_at else None,
        "exif": dict(f.exif or {}),
        "remote_file_id": f.remote_file_id,
        "details_sent": f.details_sent,
    }


def _event(e: IpCaptureEvent) -> cybertipline.IpEvent:
    return cybertipline.IpEvent(e.ip_address, e.event_name, e.at, e.possible_proxy, e.port)


def _claim(session: Session, settings: Settings, report_id: int, now: datetime) -> _Work | None:
    row = session.get(AuthorityReport, report_id)
    if row is None:
        raise NotFound(f"no authority report {report_id}")
    if row.state not in ("approved", "opened"):
        return None
    if row.lease_until is not None and row.lease_until > now:
        return None  # another worker's attempt is in flight
    if row.next_attempt_at is not None and row.next_attempt_at > now + timedelta(seconds=CLOCK_SLACK_SECONDS):
        return None
    files = files_of(session, row)
    lease = now + timedelta(seconds=LEASE_SECONDS_PER_STEP * (3 + 2 * len(files)))
    claimed = session.execute(
        update(AuthorityReport)
        .where(AuthorityReport.id == row.id, AuthorityReport.attempts == row.attempts)
        .values(attempts=row.attempts + 1, lease_until=lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    username, secret = credentials(session, settings, row.authority)
    return _Work(
        report_id=row.id,
        reference=row.reference,
        authority=row.authority,
        attempt=row.attempts + 1,
        lease=lease,
        remote_id=row.remote_id,
        facts=dict(row.facts),
        priority=row.priority,
        due_at=row.due_at,
        files=[_file_dict(f) for f in files],
        events=[_event(e) for e in events_of(session, row)],
        username=username,
        secret=secret,
    )


def _mine(row: AuthorityReport, work: _Work) -> bool:
    return row.attempts == work.attempt and row.lease_until == work.lease


# Test hook: called with the name of each step once its outcome is recorded (a crash test raises here).
def _no_hook(_name: str) -> None:
    return None


after_step: Callable[[str], None] = _no_hook


def _record(factory: sessionmaker[Session], work: _Work, change: Callable[[Session, AuthorityReport], None]) -> bool:
    with transaction(factory) as session:
        row = session.get_one(AuthorityReport, work.report_id)
        if not _mine(row, work) or row.state not in ("approved", "opened"):
            return False  # another attempt took over, or a person retracted it meanwhile
        change(session, row)
        row.updated_at = utcnow()
        return True


_STEP_ERRORS = (cybertipline.CyberTiplineError, nca.NcaError, cybertipline.DocumentInvalid, evidence.EvidenceError)


def advance(
    factory: sessionmaker[Session], settings: Settings, report_id: int, now: datetime | None = None
) -> AuthorityReport:
    """Take the submission as far as it goes in one attempt; schedule a retry or stop at ``failed``."""
    with transaction(factory) as session:
        try:
            work = _claim(session, settings, report_id, now or utcnow())
        except ReportingError as exc:  # no credentials: a person must act
            row = session.get_one(AuthorityReport, report_id)
            row.state, row.last_error = "failed", str(exc)
            work = None
    if work is not None:
        try:
            if work.authority == "ncmec":
                _ncmec(factory, settings, work)
            else:
                _nca(factory, settings, work)
        except _STEP_ERRORS as exc:
            _failed(factory, settings, work, exc, now)
    with factory() as session:
        return session.get_one(AuthorityReport, report_id)


def _failed(
    factory: sessionmaker[Session], settings: Settings, work: _Work, exc: Exception, now: datetime | None
) -> None:
    retryable = bool(getattr(exc, "retryable", False))
    request_id = getattr(exc, "request_id", None)
    delay: float | None = None

    def change(session: Session, row: AuthorityReport) -> None:
        nonlocal delay
        row.last_error, row.lease_until = str(exc)[:2000], None
        if request_id:
            row.last_request_id = request_id
        if retryable and work.attempt < settings.reporting_max_attempts:
            delay = backoff(settings, work.attempt)
            row.next_attempt_at = (now or utcnow()) + timedelta(seconds=delay)
        else:
            row.state, row.next_attempt_at = "failed", None
        audit.record(
            session,
            SYSTEM,
            "authority_report.attempt_failed",
            "authority_report",
            row.reference,
            {"attempt": work.attempt, "error": row.last_error, "request_id": request_id, "retry_in": delay},
        )

    if _record(factory, work, change) and delay is not None:
        scheduler(work.report_id, delay)


def _ncmec(factory: sessionmaker[Session], settings: Settings, work: _Work) -> None:
    xsd = cybertipline.schema_path(settings.home)
    with cybertipline.CyberTiplineClient(
        settings.cybertipline_url,
        work.username,
        work.secret,
        rules=AddressRules.from_settings(settings),
        timeout=settings.cybertipline_timeout_seconds,
    ) as client:
        remote_id = work.remote_id
        if remote_id is None:
            document = cybertipline.report_xml(work.facts, work.events)
            cybertipline.validate(document, xsd)
            answer = client.submit(document)
            remote_id = answer.report_id
            assert remote_id is not None

            def opened(session: Session, row: AuthorityReport) -> None:
                row.state, row.remote_id, row.opened_at = "opened", remote_id, utcnow()
                row.last_request_id = answer.request_id
                audit.record(
                    session,
                    SYSTEM,
                    "authority_report.open",
                    "authority_report",
                    row.reference,
                    {"remote_id": remote_id, "request_id": answer.request_id},
                )

            if not _record(factory, work, opened):
                return
            after_step("submit")
        upload_event = next((e for e in work.events if e.event_name == "Upload"), None)
        for f in work.files:
            if f["evidence_id"] is None:
                continue  # hash only: named in additionalInfo, no file to send
            file_id = f["remote_file_id"]
            if file_id is None:
                with factory() as session:
                    data = evidence.get(session, settings, f["evidence_id"])
                answer = client.upload(remote_id, f["file_name"], data, f["media_type"])
                file_id = answer.file_id

                def uploaded(session: Session, row: AuthorityReport, f: dict[str, Any] = f, a: Any = answer) -> None:
                    stored = session.get_one(AuthorityReportFile, f["id"])
                    stored.remote_file_id, stored.remote_md5 = a.file_id, a.hash
                    audit.record(  # a read of media, for the authority: logged like every other
                        session,
                        SYSTEM,
                        "evidence.read",
                        "evidence",
                        f["evidence_id"],
                        {"purpose": "authority_report", "report": work.reference, "remote_file_id": a.file_id},
                    )

                if not _record(factory, work, uploaded):
                    return
                after_step("upload")
            if not f["details_sent"]:
                facts = cybertipline.FileFacts(
                    file_name=f["file_name"],
                    md5=f["md5"],
                    sha1=f["sha1"],
                    sha256=f["sha256"],
                    classification=f["classification"],
                    annotations=f["annotations"],
                    uploaded_at=datetime.fromisoformat(f["uploaded_at"]) if f["uploaded_at"] else None,
                    exif=f["exif"],
                    upload_event=upload_event,
                )
                document = cybertipline.file_details_xml(
                    remote_id, str(file_id), facts, classify=settings.cybertipline_hash_sharing_mou
                )
                cybertipline.validate(document, xsd)
                try:
                    client.fileinfo(document)
                except cybertipline.CyberTiplineError as exc:
                    if f["remote_file_id"] is not None and not exc.retryable:
                        exc.args = (f"{exc}{FILEINFO_IN_DOUBT.format(file_id=file_id, reference=work.reference)}",)
                    raise

                def detailed(session: Session, row: AuthorityReport, f: dict[str, Any] = f) -> None:
                    session.get_one(AuthorityReportFile, f["id"]).details_sent = True

                if not _record(factory, work, detailed):
                    return
                after_step("fileinfo")
        try:
            done = client.finish(remote_id)
            request_id, file_ids = done.request_id, list(done.file_ids)
        except cybertipline.CyberTiplineError as exc:
            if exc.code != cybertipline.ALREADY_FINISHED:
                raise
            request_id, file_ids = exc.request_id, []  # our earlier finish went through; its answer was lost
        after_step("finish-sent")
    _filed(factory, settings, work, request_id, {"files": file_ids})


def _nca(factory: sessionmaker[Session], settings: Settings, work: _Work) -> None:
    if work.remote_id is not None:
        _filed(factory, settings, work, None, {})
        return
    if not settings.nca_api_url:
        raise nca.NcaError("no NCA API endpoint is configured (SEAWALL_NCA_API_URL); export the pack for the portal")
    document = pack_of(work)
    reference = nca.submit(
        settings.nca_api_url,
        work.secret,
        document,
        reference_field=settings.nca_reference_field,
        timeout=settings.cybertipline_timeout_seconds,
        rules=AddressRules.from_settings(settings),
    )

    def opened(session: Session, row: AuthorityReport) -> None:
        row.remote_id, row.opened_at = reference, utcnow()

    if _record(factory, work, opened):
        _filed(factory, settings, work, None, {"nca_reference": reference})


def pack_of(work: _Work) -> dict[str, Any]:
    return nca.pack(
        reference=work.reference,
        priority=work.priority,
        due_at=work.due_at,
        facts=work.facts,
        files=work.files,
        events=[
            {
                "ip_address": e.ip_address,
                "port": e.port,
                "event_name": e.event_name,
                "at": e.at.isoformat(),
                "possible_proxy": e.possible_proxy,
            }
            for e in work.events
        ],
        earlier=[],
    )


def export_pack(session: Session, settings: Settings, actor: Principal, row: AuthorityReport) -> dict[str, Any]:
    """The NCA pack of a report, for the NCA's portal (an audited read of report data)."""
    files = [_file_dict(f) for f in files_of(session, row)]
    events = [
        {
            "ip_address": e.ip_address,
            "port": e.port,
            "event_name": e.event_name,
            "at": e.at.isoformat(),
            "possible_proxy": e.possible_proxy,
        }
        for e in events_of(session, row)
    ]
    earlier = [
        {"authority": other.authority, "reference": other.remote_id or other.reference}
        for other in session.scalars(
            select(AuthorityReport).where(
                AuthorityReport.case_id == row.case_id,
                AuthorityReport.id != row.id,
                AuthorityReport.state == "submitted",
            )
        )
        if row.case_id is not None
    ]
    audit.record(session, actor, "authority_report.export", "authority_report", row.reference, {"format": "nca-json"})
    return nca.pack(
        reference=row.reference,
        priority=row.priority,
        due_at=row.due_at or due(settings, row),
        facts=dict(row.facts),
        files=files,
        events=events,
        earlier=earlier,
    )


def retention_days(settings: Settings, jurisdiction: str) -> int:
    return int(settings.retention_days.get(jurisdiction, settings.retention_default_days))


def _filed(
    factory: sessionmaker[Session], settings: Settings, work: _Work, request_id: str | None, details: dict[str, Any]
) -> None:
    """The report is filed: its state, and the retention of its evidence from today."""

    document = (
        cybertipline.report_xml(work.facts, work.events)
        if work.authority == "ncmec"
        else json.dumps(pack_of(work), sort_keys=True).encode()
    )
    sealed = evidence.seal(
        settings,
        document,
        media_type="text/xml" if work.authority == "ncmec" else "application/json",
        purpose="authority_report",
        subject=f"authority_report:{work.report_id}",
    )

    def filed(session: Session, row: AuthorityReport) -> None:
        now = utcnow()
        row.state, row.submitted_at, row.lease_until, row.next_attempt_at = "submitted", now, None, None
        if request_id:
            row.last_request_id = request_id
        row.last_error = ""
        keep = now + timedelta(days=retention_days(settings, row.jurisdiction))
        row.retain_until = keep
        kept = evidence.record(session, sealed)
        row.document_id = kept.id
        # The files sent, everything kept for their items (captures, thumbnails), and the document.
        ids = [f["evidence_id"] for f in work.files if f["evidence_id"]] + [kept.id]
        subjects = [f"item:{f['item_id']}" for f in work.files if f["item_id"] is not None]
        for obj in session.scalars(
            select(EvidenceObject).where(
                or_(EvidenceObject.id.in_(ids), EvidenceObject.subject.in_(subjects)),
                EvidenceObject.deleted_at.is_(None),
            )
        ):
            obj.retain_until = keep if obj.retain_until is None else max(obj.retain_until, keep)
        audit.record(
            session,
            SYSTEM,
            "authority_report.submitted",
            "authority_report",
            row.reference,
            {"remote_id": row.remote_id, "request_id": request_id, "retain_until": keep.isoformat(), **details},
        )

    try:
        recorded = _record(factory, work, filed)
    except BaseException:
        evidence.discard(settings, sealed)
        raise
    if not recorded:
        evidence.discard(settings, sealed)


# ---------------------------------------------------------------- retraction


def retract(factory: sessionmaker[Session], settings: Settings, actor: Principal, reference: str) -> AuthorityReport:
    """Withdraw a report: a draft is simply withdrawn; one NCMEC holds unfinished is retracted there
    (NCMEC's /retract); a filed one cannot be withdrawn through the API."""
    with transaction(factory) as session:
        row = get(session, reference)
        if row.state == "submitted":
            raise Conflict(
                f"authority report {row.reference} was filed ({row.authority} id {row.remote_id}): a filed report "
                "cannot be retracted through the API; contact the authority quoting that id"
            )
        if row.state in ("retracted", "cancelled"):
            return row
        if row.lease_until is not None and row.lease_until > utcnow():
            raise Conflict(f"authority report {row.reference} is being submitted right now: try again in a minute")
        if row.remote_id is None or row.authority != "ncmec":
            row.state, row.retracted_at, row.next_attempt_at = "retracted", utcnow(), None
            audit.record(session, actor, "authority_report.retract", "authority_report", row.reference, {})
            return row
    return _withdraw_at_ncmec(factory, settings, actor, reference, "retract")


def cancel(factory: sessionmaker[Session], settings: Settings, actor: Principal, reference: str) -> AuthorityReport:
    """Cancel a report NCMEC holds unfinished (opened: submitted there, not finished) with NCMEC's
    /cancel. Only such a report: a draft has nothing at NCMEC to cancel (retract withdraws it), a
    filed one cannot be cancelled. The report ends ``cancelled``; nothing resumes it."""
    with transaction(factory) as session:
        row = get(session, reference)
        if row.state == "cancelled":
            return row
        if row.authority != "ncmec":
            raise Conflict(f"authority report {row.reference} is for the {row.authority.upper()}: only NCMEC cancels")
        if row.state == "submitted":
            raise Conflict(
                f"authority report {row.reference} was filed (ncmec id {row.remote_id}): a filed report cannot be "
                "cancelled; contact NCMEC quoting that id"
            )
        if row.state == "retracted":
            raise Conflict(f"authority report {row.reference} was already retracted")
        if row.remote_id is None:
            raise Conflict(
                f"authority report {row.reference} is {row.state} and not opened at NCMEC: there is nothing to "
                "cancel there (retract withdraws a draft)"
            )
    return _withdraw_at_ncmec(factory, settings, actor, reference, "cancel")


def _withdraw_at_ncmec(
    factory: sessionmaker[Session], settings: Settings, actor: Principal, reference: str, how: str
) -> AuthorityReport:
    """NCMEC's /retract or /cancel of a report it holds unfinished; the report held (its lease) while
    NCMEC is asked, so no worker finishes it meanwhile, and released whatever the answer."""
    with transaction(factory) as session:
        row = get(session, reference)
        if row.lease_until is not None and row.lease_until > utcnow():
            raise Conflict(f"authority report {row.reference} is being submitted right now: try again in a minute")
        if row.state not in ("opened", "failed", "approved") or row.remote_id is None:
            raise Conflict(f"authority report {row.reference} is {row.state}: it cannot be {how}ed now")
        remote_id, report_id = row.remote_id, row.id
        row.lease_until = utcnow() + timedelta(seconds=LEASE_SECONDS_PER_STEP)
        username, secret = credentials(session, settings, row.authority)

    def release() -> None:
        with transaction(factory) as session:
            session.get_one(AuthorityReport, report_id).lease_until = None

    request_id: str | None = None
    try:
        with cybertipline.CyberTiplineClient(
            settings.cybertipline_url,
            username,
            secret,
            rules=AddressRules.from_settings(settings),
            timeout=settings.cybertipline_timeout_seconds,
        ) as client:
            request_id = (client.retract(remote_id) if how == "retract" else client.cancel(remote_id)).request_id
    except cybertipline.CyberTiplineError as exc:
        if exc.code == cybertipline.ALREADY_FINISHED:
            release()
            raise Conflict(f"NCMEC says report {remote_id} was already filed: it cannot be {how}ed ({exc})") from None
        if exc.code != cybertipline.ALREADY_RETRACTED:  # "already retracted": an earlier call went through
            release()
            raise
        request_id = exc.request_id
    state = "retracted" if how == "retract" else "cancelled"
    with transaction(factory) as session:
        row = session.get_one(AuthorityReport, report_id)
        # retracted_at: when the report was withdrawn, by either call (the state says which)
        row.state, row.retracted_at, row.lease_until, row.next_attempt_at = state, utcnow(), None, None
        row.last_request_id = request_id or row.last_request_id
        audit.record(
            session,
            actor,
            f"authority_report.{how}",
            "authority_report",
            row.reference,
            {"remote_id": remote_id, "request_id": request_id},
        )
    with factory() as session:
        return session.get_one(AuthorityReport, report_id)


# ---------------------------------------------------------------- reading


def listing(
    session: Session, *, state: str | None = None, owner: str | None = None, limit: int = 100
) -> list[AuthorityReport]:
    query = select(AuthorityReport).order_by(AuthorityReport.id.desc()).limit(limit)
    if state:
        query = query.where(AuthorityReport.state == state)
    if owner is not None:
        query = query.where(AuthorityReport.owner == owner)
    return list(session.scalars(query))


def overdue(row: AuthorityReport, now: datetime | None = None) -> bool:
    """An NCA report past its priority's deadline and not filed yet."""
    closed = ("submitted", "retracted", "cancelled")
    return row.due_at is not None and row.state not in closed and (now or utcnow()) > row.due_at


def summary(session: Session, row: AuthorityReport) -> dict[str, Any]:
    """A report as the API, CLI and console show it (never credentials, never media)."""
    files = files_of(session, row)
    return {
        "reference": row.reference,
        "authority": row.authority,
        "state": row.state,
        "half_finished": row.state in ("opened", "failed") and row.remote_id is not None,
        "source": row.source,
        "case": session.get(Case, row.case_id).reference if row.case_id is not None else None,  # type: ignore[union-attr]
        "priority": row.priority,
        "due_at": row.due_at.isoformat() if row.due_at else None,
        "overdue": overdue(row),
        "remote_id": row.remote_id,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "last_error": row.last_error,
        "last_request_id": row.last_request_id,
        "created_at": row.created_at.isoformat(),
        "approved_by": row.approved_by,
        "submitted_at": row.submitted_at.isoformat() if row.submitted_at else None,
        "retracted_at": row.retracted_at.isoformat() if row.retracted_at else None,
        "retain_until": row.retain_until.isoformat() if row.retain_until else None,
        "facts": row.facts,
        "files": [
            {
                "file_name": f.file_name,
                "md5": f.md5,
                "sha1": f.sha1,
                "sha256": f.sha256,
                "classification": f.classification,
                "annotations": f.annotations,
                "uploaded": f.remote_file_id is not None,
                "details_sent": f.details_sent,
                "remote_file_id": f.remote_file_id,
            }
            for f in files
        ],
        "ip_events": [
            {"ip_address": e.ip_address, "port": e.port, "event_name": e.event_name, "at": e.at.isoformat()}
            for e in events_of(session, row)
        ],
    }


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)
