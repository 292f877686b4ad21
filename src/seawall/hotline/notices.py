"""Notice and takedown: a XARF notice to the host of confirmed content in the hotline's own country,
re-checks until the content is gone, a reminder and then escalation when it stays.

**Open.** ``open_notice`` runs in QA's transaction when a confirmed ``csam`` case is hosted in
``SEAWALL_HOTLINE_COUNTRY``. It only writes: the notice row (the XARF document, the recipient from the
abuse-contact directory, ``pending``), the case ``notified``, an audit event. The send is queued once
that transaction commits.

**Send.** The worker claims the notice (a compare-and-set on ``send_attempts`` that also moves
``next_check_at`` past the attempt's time, so a second worker leaves it), sends with no transaction
open — by SMTP (``hotline.mail``), or as a POST of the XARF JSON to the host's API endpoint through
the SSRF-safe client when the directory names one — and records the outcome only if the claim is
still its own. Failures retry after ``SEAWALL_NOTICE_RETRY_BASE_SECONDS``, doubling; after
``SEAWALL_NOTICE_MAX_ATTEMPTS`` the notice is ``failed``.

**Re-check.** A sent notice is re-checked on ``SEAWALL_NOTICE_RECHECK_SCHEDULE`` (seconds after
sending; the last interval repeats): each check is ``capture.run_capture(purpose="recheck")``. The first
that finds the content gone (404/410/451, the name gone, or none of the case's items on the page)
makes the notice ``removed`` with ``removed_at`` and ``takedown_seconds`` (sent → found gone), and the
case ``removed``. A check that finds it still there sends one reminder after
``SEAWALL_NOTICE_REMINDER_AFTER_SECONDS`` and escalates after ``SEAWALL_NOTICE_ESCALATE_AFTER_SECONDS``
(state ``escalated``, an audit event, and the law-enforcement package when
``SEAWALL_NOTICE_ESCALATION_FOLDER`` is set); an escalated notice is still re-checked until removed.
A check that could not fetch the page proves nothing and only schedules the next.

**Nothing lost.** Every notice with something due has ``next_check_at`` set (the ``state,
next_check_at`` index); ``sweep`` (every minute in the worker) queues whatever is due, so a crashed
worker or a lost queue entry only delays a send or a check.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import event, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.fetch import AddressRules, FetchError, safe_client
from seawall.hotline import classification, mail, referrals, tracing, xarf
from seawall.hotline.models import Case, Host, Notice, Report
from seawall.redact import redact_text

log = logging.getLogger(__name__)

SMTP, API = "smtp", "api"
NOTICE_STATES = ("pending", "sent", "failed", "removed", "escalated", "closed")
# States in which a notice still has work to do (at most one such notice per case).
OPEN_STATES = ("pending", "sent", "escalated")
CHECKED_STATES = ("sent", "escalated")
FINAL_STATES = ("removed", "closed")
# Case states a notice moves on to "notified" (a case further on keeps its state).
_BEFORE_NOTIFIED = ("open", "captured", "assessed", "confirmed")
#: An attempt in flight keeps others off the row this long past its own time limit.
LEASE_MARGIN_SECONDS = 60.0
#: Work may start this much before its time (workers' clocks differ a little).
CLOCK_SLACK_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 6 * 3600.0


class NoticeError(ValueError):
    """A notice action that cannot be done as asked; the message says why."""


# ---- scheduling --------------------------------------------------------------------------------------


def queue_task(kind: str, notice_id: int, delay: float) -> None:
    """Hand a send or a re-check to the task queue (tests replace ``scheduler`` to drive them)."""
    from seawall.hotline.tasks import recheck_notice, send_notice

    task = send_notice if kind == "send" else recheck_notice
    if delay > 0:
        task.schedule((notice_id,), delay=delay)
    else:
        task(notice_id)


scheduler: Callable[[str, int, float], None] = queue_task


def after_commit(session: Session, kind: str, notice_id: int) -> None:
    """Queue the work once this transaction commits (before, a worker could not see the row)."""
    event.listen(session, "after_commit", lambda _s: scheduler(kind, notice_id, 0.0), once=True)


def recheck_offsets(settings: Settings) -> list[float]:
    """The re-check times after sending, in seconds (the setting's values, each above zero)."""
    values = [float(v) for v in settings.notice_recheck_schedule.split(",") if v.strip()]
    if not values or any(v <= 0 for v in values):
        raise NoticeError("SEAWALL_NOTICE_RECHECK_SCHEDULE is seconds above zero, e.g. 3600,21600,86400")
    return values


def next_check(settings: Settings, sent_at: datetime, now: datetime) -> datetime:
    """The first re-check time after ``now``: each offset after sending, then the last one repeating."""
    offsets = recheck_offsets(settings)
    for offset in offsets:
        due = sent_at + timedelta(seconds=offset)
        if due > now:
            return due
    last = offsets[-1]
    steps = int(((now - sent_at).total_seconds() - last) // last) + 1
    return sent_at + timedelta(seconds=last + steps * last)


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: base, 2 base, 4 base … capped at 6 hours."""
    return float(min(settings.notice_retry_base_seconds * (2 ** max(0, attempts - 1)), MAX_BACKOFF_SECONDS))


# ---- the XARF document ---------------------------------------------------------------------------------


def reporter(settings: Settings) -> dict[str, str]:
    return xarf.party(settings.hotline_name, settings.notice_from)


def _first_channel(session: Session, case: Case) -> str:
    channel = session.scalar(select(Report.channel).where(Report.case_id == case.id).order_by(Report.id).limit(1))
    return channel or "public"


def xarf_classification(outcome: str, category: str | None, age_band: str | None, flags: list[str]) -> str | None:
    """The industry scale (A1/A2/B1/B2) XARF's ``classification`` takes; ``baseline`` when only the
    INTERPOL baseline is known; None when the assessment says neither."""
    mapped = classification.classify(outcome, category, age_band, flags)
    if mapped.industry is not None:
        return mapped.industry
    return "baseline" if mapped.interpol == "baseline" else None


def build_document(
    session: Session, settings: Settings, case: Case, host: Host | None, now: datetime
) -> dict[str, Any]:
    """The case's XARF v4 content/csam report: URL, classification, detection method, hash values."""
    assessment = referrals.case_assessment(session, case)
    rows = referrals.case_items(session, case)
    abuse = [item for _, item, applied in rows if applied is not None and applied.outcome == "csam"]
    if not abuse:  # a case assessed on its own: every item not assessed as something else
        abuse = [item for _, item, applied in rows if applied is None]
    items = [{"md5": i.md5, "sha1": i.sha1, "sha256": i.sha256, "pdq": i.pdq, "media": i.media} for i in abuse]
    capture = referrals.last_capture(session, case)
    checked = (capture.fetched_at or capture.finished_at) if capture is not None else None
    mapped = (
        classification.classify(assessment.outcome, assessment.category, assessment.age_band, assessment.flags or [])
        if assessment is not None
        else None
    )
    tags = []
    if mapped is not None and mapped.interpol:
        tags.append(f"interpol:{mapped.interpol}")
    if mapped is not None and mapped.uk_category:
        tags.append(f"uk-category:{mapped.uk_category.lower()}")
    url = case.url or ""
    return xarf.build(
        reporter=reporter(settings),
        url=url,
        source=case.hosting_ip or xarf.ascii_host(url),
        occurred_at=checked or case.opened_at,
        classification=xarf_classification(
            assessment.outcome, assessment.category, assessment.age_band, list(assessment.flags or [])
        )
        if assessment is not None
        else None,
        detection_method=xarf.DETECTION_BY_CHANNEL.get(_first_channel(session, case), "user_report"),
        items=items,
        verified_at=checked,
        hosting_provider=host.name if host is not None else case.hosting_as_name,
        asn=case.hosting_asn,
        country=case.hosting_country,
        case_reference=case.reference,
        description=(
            f"Child sexual abuse material assessed by {settings.hotline_name} analysts and confirmed by a second "
            f"analyst (case {case.reference}). Hash values only; no media is attached. Please remove the content."
        ),
        tags=tags,
    )


# ---- open a notice --------------------------------------------------------------------------------------


def _host_of(session: Session, case: Case) -> Host | None:
    if case.host_id is not None:
        found = session.get(Host, case.host_id)
        if found is not None:
            return found
    return tracing.host_for(session, case.hosting_asn, urlsplit(case.url or "").hostname)


def _route(notice: Notice, host: Host | None, now: datetime) -> bool:
    """Address the notice to the host's API endpoint or abuse address; False (and why) when it has neither."""
    if host is None:
        notice.last_error = "no abuse contact for this host in the directory yet: add one (seawall hosts import)"
        return False
    notice.host_id, notice.language = host.id, (host.language or "en")[:8]
    if host.api_endpoint:
        notice.channel, notice.recipient = API, host.api_endpoint
    elif host.abuse_email:
        notice.channel, notice.recipient = SMTP, host.abuse_email
    else:
        notice.last_error = f"the directory's entry {host.name!r} has no abuse email or API endpoint"
        return False
    notice.last_error, notice.next_check_at = "", now
    return True


def open_notice(session: Session, settings: Settings, actor: Principal, case: Case) -> Notice:
    """Create the notice for a confirmed case hosted in the hotline's country, in the caller's
    transaction (rows only: the worker sends it once this commits). A case with a notice under way
    keeps that one."""
    existing = session.scalar(
        select(Notice).where(Notice.case_id == case.id, Notice.state.in_(OPEN_STATES)).order_by(Notice.id).limit(1)
    )
    if existing is not None:
        return existing
    now = utcnow()
    host = _host_of(session, case)
    notice = Notice(
        case_id=case.id,
        channel=SMTP,
        recipient="",
        language="en",
        document=build_document(session, settings, case, host, now),
        state="pending",
        created_at=now,
    )
    routed = _route(notice, host, now)
    session.add(notice)
    session.flush()
    if case.state in _BEFORE_NOTIFIED:
        case.state, case.updated_at, case.version = "notified", now, case.version + 1
    audit.record(
        session,
        actor,
        "notice.open",
        "notice",
        notice.id,
        {
            "case": case.reference,
            "channel": notice.channel if routed else None,
            "recipient": notice.recipient or None,
            "host": host.name if host is not None else None,
            "report_id": notice.document.get("report_id"),
            "waiting": notice.last_error or None,
        },
    )
    if routed:
        after_commit(session, "send", notice.id)
    return notice


# ---- sending ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outgoing:
    """What one attempt sends, read in the claiming transaction."""

    channel: str
    recipient: str
    document: dict[str, Any]
    subject: str
    body: str
    attempt: int
    lease: datetime | None  # None: a reminder (claimed by its reminded_at)
    reminder: bool
    problem: str = ""


@dataclass(frozen=True)
class _Answer:
    ok: bool
    error: str = ""
    message_id: str | None = None


def _hash_lines(document: dict[str, Any]) -> str:
    lines = []
    for n, entry in enumerate(document.get("content_items") or [], 1):
        values = entry.get("hash_values", {})
        lines.append(f"  {n}. {entry.get('media_type') or 'file'}")
        lines.extend(f"     {name:<6} {values[name]}" for name in ("sha256", "sha1", "md5", "pdq") if values.get(name))
    return "\n".join(lines) or "  (none recorded)"


def _template_values(settings: Settings, notice: Notice, case: Case, document: dict[str, Any]) -> dict[str, str]:
    return {
        "hotline": settings.hotline_name,
        "contact": settings.notice_from or "",
        "url": str(document.get("url", "")),
        "domain": str(document.get("domain", "")),
        "case": case.reference,
        "report_id": str(document.get("report_id", "")),
        "classification": str(document.get("classification") or "-"),
        "address": case.hosting_ip or "-",
        "verified_at": str(document.get("verified_at") or document.get("timestamp") or "-"),
        "sent_at": xarf.when(notice.sent_at) if notice.sent_at is not None else "-",
        "hashes": _hash_lines(document),
    }


def _prepare(
    session: Session, settings: Settings, notice: Notice, attempt: int, lease: datetime | None, reminder: bool
) -> _Outgoing:
    case = session.get_one(Case, notice.case_id)
    # Who we are is read at each send: a setting fixed after the notice opened (SEAWALL_NOTICE_FROM) counts.
    document = {**notice.document, "reporter": reporter(settings), "sender": reporter(settings)}
    if document != notice.document:
        notice.document = document
    values = _template_values(settings, notice, case, document)
    problem = ""
    try:
        subject, body, _ = mail.render(notice.language, values, reminder=reminder)
    except mail.MailError as exc:  # a broken template: the attempt fails with the reason, nothing is lost
        subject, body, problem = "", "", str(exc)
    problems = xarf.problems(document)
    if problems:
        problem = f"the XARF report is not valid: {'; '.join(problems)}"
    if notice.channel == SMTP and not settings.notice_from:
        problem = "no sender address: set SEAWALL_NOTICE_FROM"
    return _Outgoing(notice.channel, notice.recipient, document, subject, body, attempt, lease, reminder, problem)


def _claim_send(session: Session, settings: Settings, notice_id: int, now: datetime) -> _Outgoing | None:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise LookupError(f"no notice {notice_id}")
    if notice.state != "pending" or not notice.recipient or notice.next_check_at is None:
        return None
    if notice.next_check_at > now + timedelta(seconds=CLOCK_SLACK_SECONDS):
        return None  # not due, or another attempt is in flight
    lease = now + timedelta(seconds=4 * settings.notice_timeout_seconds + LEASE_MARGIN_SECONDS)
    claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Notice)
        .where(Notice.id == notice_id, Notice.send_attempts == notice.send_attempts)
        .values(send_attempts=notice.send_attempts + 1, next_check_at=lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    session.refresh(notice)
    return _prepare(session, settings, notice, notice.send_attempts, lease, reminder=False)


def _claim_reminder(session: Session, settings: Settings, notice_id: int, now: datetime) -> _Outgoing | None:
    claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Notice)
        .where(Notice.id == notice_id, Notice.state == "sent", Notice.reminded_at.is_(None))
        .values(reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    notice = session.get_one(Notice, notice_id)
    session.refresh(notice)
    return _prepare(session, settings, notice, notice.send_attempts, None, reminder=True)


def _deliver(settings: Settings, outgoing: _Outgoing) -> _Answer:
    if outgoing.problem:
        return _Answer(False, outgoing.problem)
    if outgoing.channel == API:
        return _post(settings, outgoing)
    sender = settings.notice_from or ""
    try:
        message, message_id = mail.build_message(
            sender=sender,
            recipient=outgoing.recipient,
            subject=outgoing.subject,
            body=outgoing.body,
            document=outgoing.document,
            sender_domain=sender.rpartition("@")[2],
        )
        sent = mail.send(settings, message, sender, outgoing.recipient, message_id)
    except mail.MailError as exc:
        return _Answer(False, redact_text(str(exc))[:1000])
    except (ValueError, TypeError, UnicodeError) as exc:  # a header the e-mail library refuses (a newline …)
        return _Answer(False, redact_text(f"the message could not be built: {type(exc).__name__}: {exc}")[:1000])
    return _Answer(True, "", sent.message_id[:255])


def _post(settings: Settings, outgoing: _Outgoing) -> _Answer:
    body = json.dumps(outgoing.document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {"content-type": "application/json", "accept": "application/json", "user-agent": "Seawall-Notice"}
    try:
        # No redirects: the report goes where the directory says, or nowhere.
        with safe_client(AddressRules.from_settings(settings), timeout=settings.notice_timeout_seconds) as client:
            response = client.post(outgoing.recipient, content=body, headers=headers)
    except FetchError as exc:
        return _Answer(False, str(exc)[:1000])
    except httpx.HTTPError as exc:
        return _Answer(False, redact_text(f"{type(exc).__name__}: {exc}")[:1000])
    if not 200 <= response.status_code < 300:
        return _Answer(False, redact_text(f"HTTP {response.status_code}: {response.text[:300]}"))
    try:
        answer = response.json()
    except ValueError:
        answer = None
    reference = None
    if isinstance(answer, dict):
        for key in ("id", "reference", "report_id", "ticket"):
            if isinstance(answer.get(key), str | int) and not isinstance(answer.get(key), bool):
                reference = str(answer[key])[:255]
                break
    return _Answer(True, "", reference)


def _record_send(
    factory: sessionmaker[Session], settings: Settings, notice_id: int, outgoing: _Outgoing, answer: _Answer
) -> tuple[str, float] | None:
    """Store the attempt's outcome, if the claim is still this attempt's; the follow-up to queue, or None."""
    with transaction(factory) as session:
        notice = session.get_one(Notice, notice_id)
        now = utcnow()
        details: dict[str, Any] = {"channel": outgoing.channel, "recipient": outgoing.recipient}
        if outgoing.reminder:
            if answer.ok:
                notice.last_error = ""
                details["id"] = answer.message_id
                audit.record(session, SYSTEM, "notice.remind", "notice", notice.id, details)
            else:
                notice.reminded_at, notice.last_error = None, f"reminder not sent: {answer.error}"
                details["error"] = answer.error
                audit.record(session, SYSTEM, "notice.remind_failed", "notice", notice.id, details)
            return None
        if notice.send_attempts != outgoing.attempt or notice.next_check_at != outgoing.lease:
            return None
        details["attempt"] = outgoing.attempt
        if answer.ok:
            notice.state, notice.sent_at, notice.last_error, notice.message_id = "sent", now, "", answer.message_id
            notice.next_check_at = next_check(settings, now, now)
            audit.record(session, SYSTEM, "notice.send", "notice", notice.id, {**details, "id": answer.message_id})
            return "recheck", max(0.0, (notice.next_check_at - now).total_seconds())
        notice.last_error = answer.error
        audit.record(session, SYSTEM, "notice.send_failed", "notice", notice.id, {**details, "error": answer.error})
        if outgoing.attempt >= settings.notice_max_attempts:
            notice.state, notice.next_check_at = "failed", None
            log.warning("notice %s: giving up after %s attempts: %s", notice_id, outgoing.attempt, answer.error)
            return None
        delay = backoff(settings, outgoing.attempt)
        notice.next_check_at = now + timedelta(seconds=delay)
        return "send", delay


def send(factory: sessionmaker[Session], settings: Settings, notice_id: int, now: datetime | None = None) -> Notice:
    """Try a pending notice's send once; on failure schedule the next try. Three steps, so no
    transaction is open while the SMTP server or the host's API answers."""
    with transaction(factory) as session:
        outgoing = _claim_send(session, settings, notice_id, now or utcnow())
    if outgoing is not None:
        answer = _deliver(settings, outgoing)
        follow = _record_send(factory, settings, notice_id, outgoing, answer)
        if follow is not None:
            scheduler(follow[0], notice_id, follow[1])
    with factory() as session:
        return session.get_one(Notice, notice_id)


def remind(factory: sessionmaker[Session], settings: Settings, notice_id: int) -> bool:
    """Send the notice's reminder (once): True if it went."""
    with transaction(factory) as session:
        outgoing = _claim_reminder(session, settings, notice_id, utcnow())
    if outgoing is None:
        return False
    answer = _deliver(settings, outgoing)
    _record_send(factory, settings, notice_id, outgoing, answer)
    return answer.ok


# ---- re-checks --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    case_id: int
    attempt: int
    lease: datetime


def _claim_check(session: Session, settings: Settings, notice_id: int, now: datetime, force: bool) -> _Check | None:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise LookupError(f"no notice {notice_id}")
    if notice.state not in CHECKED_STATES or notice.next_check_at is None:
        return None
    if not force and notice.next_check_at > now + timedelta(seconds=CLOCK_SLACK_SECONDS):
        return None
    lease = now + timedelta(seconds=settings.capture_timeout_seconds + LEASE_MARGIN_SECONDS)
    claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Notice)
        .where(Notice.id == notice_id, Notice.checks == notice.checks)
        .values(checks=notice.checks + 1, next_check_at=lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    return _Check(notice.case_id, notice.checks + 1, lease)


@dataclass
class CheckOutcome:
    """What one re-check found and did."""

    notice_id: int
    checked: bool = False
    state: str = ""  # the capture's: done, gone, failed, busy
    gone: bool = False
    present_items: list[int] = field(default_factory=list)
    error: str = ""
    reminded: bool = False
    escalated: bool = False
    package: str | None = None


def _record_check(
    factory: sessionmaker[Session],
    settings: Settings,
    notice_id: int,
    check: _Check,
    outcome: CheckOutcome,
    capture_id: int | None,
) -> list[str] | None:
    """Store the check's findings if the claim is still its own (None: it is not); the follow-ups."""
    with transaction(factory) as session:
        notice = session.get_one(Notice, notice_id)
        if notice.checks != check.attempt or notice.next_check_at != check.lease:
            return None
        now = utcnow()
        audit.record(
            session,
            SYSTEM,
            "notice.recheck",
            "notice",
            notice.id,
            {
                "check": check.attempt,
                "capture": capture_id,
                "state": outcome.state,
                "gone": outcome.gone,
                "present_items": outcome.present_items,
                "error": outcome.error or None,
            },
        )
        sent_at = notice.sent_at or notice.created_at
        if outcome.gone:
            notice.state, notice.removed_at, notice.next_check_at, notice.last_error = "removed", now, None, ""
            notice.takedown_seconds = max(0, round((now - sent_at).total_seconds()))
            case = session.get_one(Case, notice.case_id)
            if case.state in ("confirmed", "notified"):
                case.state, case.updated_at, case.version = "removed", now, case.version + 1
            audit.record(
                session,
                SYSTEM,
                "notice.removed",
                "notice",
                notice.id,
                {"case": case.reference, "takedown_seconds": notice.takedown_seconds, "capture": capture_id},
            )
            return []
        notice.next_check_at = next_check(settings, sent_at, now)
        if outcome.state != "done":  # the page could not be fetched: that proves nothing either way
            notice.last_error = f"re-check {check.attempt} proved nothing: {outcome.error or outcome.state}"[:2000]
            return []
        notice.last_error = ""
        age = (now - sent_at).total_seconds()
        if notice.escalated_at is None and age >= settings.notice_escalate_after_seconds:
            notice.state, notice.escalated_at = "escalated", now
            case = session.get_one(Case, notice.case_id)
            audit.record(
                session,
                SYSTEM,
                "notice.escalate",
                "notice",
                notice.id,
                {
                    "case": case.reference,
                    "after_seconds": round(age),
                    "to": "law enforcement",
                    "package_folder": str(settings.notice_escalation_folder)
                    if settings.notice_escalation_folder
                    else None,
                },
            )
            return ["escalate"]
        if notice.state == "sent" and notice.reminded_at is None and age >= settings.notice_reminder_after_seconds:
            return ["remind"]
        return []


def _escalation_package(factory: sessionmaker[Session], settings: Settings, notice_id: int) -> str | None:
    """The case's law-enforcement package, written under SEAWALL_NOTICE_ESCALATION_FOLDER (if set)."""
    from seawall.hotline import le_export

    if settings.notice_escalation_folder is None:
        return None
    with factory() as session:
        notice = session.get_one(Notice, notice_id)
        reference = session.get_one(Case, notice.case_id).reference
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    out = Path(settings.notice_escalation_folder).expanduser() / f"{reference}-notice-{notice_id}-{stamp}"
    try:
        package = le_export.export(factory, settings, SYSTEM, [reference], out)
    except (le_export.ExportError, OSError) as exc:
        log.error("notice %s: the law-enforcement package was not written: %s", notice_id, exc)
        with transaction(factory) as session:
            session.get_one(Notice, notice_id).last_error = f"escalated; the package was not written: {exc}"[:2000]
        return None
    return str(package.folder)


def recheck(
    factory: sessionmaker[Session],
    settings: Settings,
    notice_id: int,
    *,
    force: bool = False,
    now: datetime | None = None,
    verify: Any = True,
) -> CheckOutcome:
    """Re-check a sent notice's content if a check is due (or ``force``): a capture compared with the
    case's items, then removal, a reminder or escalation as the findings and the clock say."""
    from seawall.hotline import capture

    outcome = CheckOutcome(notice_id)
    with transaction(factory) as session:
        check = _claim_check(session, settings, notice_id, now or utcnow(), force)
    if check is None:
        return outcome
    outcome.checked = True
    capture_id = None
    try:
        result = capture.run_capture(
            factory, settings, check.case_id, purpose="recheck", notice_id=notice_id, verify=verify
        )
    except Exception as exc:  # recorded as a check that proved nothing; the next one comes as scheduled
        log.exception("notice %s: re-check failed", notice_id)
        outcome.state, outcome.error = "failed", redact_text(f"{type(exc).__name__}: {exc}")[:1000]
    else:
        capture_id = result.capture_id
        outcome.state, outcome.error = result.state, result.error
        outcome.gone = result.content_gone()
        outcome.present_items = list(result.present_items)
    follow = _record_check(factory, settings, notice_id, check, outcome, capture_id)
    if follow is None:
        return outcome
    if "remind" in follow:
        outcome.reminded = remind(factory, settings, notice_id)
    if "escalate" in follow:
        outcome.escalated = True
        outcome.package = _escalation_package(factory, settings, notice_id)
    with factory() as session:
        notice = session.get_one(Notice, notice_id)
        if notice.state in CHECKED_STATES and notice.next_check_at is not None:
            scheduler("recheck", notice_id, max(0.0, (notice.next_check_at - utcnow()).total_seconds()))
    return outcome


# ---- the sweep ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    routed: int
    sends: list[int]
    checks: list[int]


def sweep(factory: sessionmaker[Session], settings: Settings, now: datetime | None = None) -> SweepReport:
    """One pass (the worker runs it every minute): address notices waiting for an abuse contact, and
    queue every send and re-check that is due — those a crashed worker or a lost queue entry left."""
    now = now or utcnow()
    horizon = now + timedelta(seconds=CLOCK_SLACK_SECONDS)
    with transaction(factory) as session:
        routed = 0
        waiting = session.scalars(
            select(Notice).where(Notice.state == "pending", Notice.recipient == "", Notice.next_check_at.is_(None))
        ).all()
        for notice in waiting:
            case = session.get_one(Case, notice.case_id)
            if _route(notice, _host_of(session, case), now):
                routed += 1
                audit.record(session, SYSTEM, "notice.route", "notice", notice.id, {"recipient": notice.recipient})
        session.flush()
        sends = list(
            session.scalars(
                select(Notice.id)
                .where(Notice.state == "pending", Notice.next_check_at <= horizon)
                .order_by(Notice.next_check_at)
            )
        )
        checks = list(
            session.scalars(
                select(Notice.id)
                .where(Notice.state.in_(CHECKED_STATES), Notice.next_check_at <= horizon)
                .order_by(Notice.next_check_at)
            )
        )
    for notice_id in sends:
        scheduler("send", notice_id, 0.0)
    for notice_id in checks:
        scheduler("recheck", notice_id, 0.0)
    return SweepReport(routed, sends, checks)


# ---- what analysts do: look, re-check now, send again, close ---------------------------------------------------


def get_notice(session: Session, notice_id: int) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise LookupError(f"no notice {notice_id}")
    return notice


def list_notices(
    session: Session,
    *,
    state: str | None = None,
    case: str | None = None,
    channel: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[tuple[Notice, Case, Host | None]]:
    if state is not None and state not in NOTICE_STATES:
        raise NoticeError(f"state is one of {', '.join(NOTICE_STATES)}")
    if channel is not None and channel not in (SMTP, API):
        raise NoticeError("channel is smtp or api")
    query = (
        select(Notice, Case, Host)
        .join(Case, Case.id == Notice.case_id)
        .outerjoin(Host, Host.id == Notice.host_id)
        .order_by(Notice.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if state:
        query = query.where(Notice.state == state)
    if case:
        query = query.where(Case.reference == case.strip().upper())
    if channel:
        query = query.where(Notice.channel == channel)
    return [(n, c, h) for n, c, h in session.execute(query).all()]


def as_dict(notice: Notice, case: Case, host: Host | None, *, document: bool = False) -> dict[str, Any]:
    """A notice as the API and the CLI show it."""
    shown: dict[str, Any] = {
        "id": notice.id,
        "case": case.reference,
        "url": case.url,
        "host": host.name if host is not None else None,
        "channel": notice.channel,
        "recipient": notice.recipient,
        "language": notice.language,
        "state": notice.state,
        "report_id": (notice.document or {}).get("report_id"),
        "created_at": notice.created_at,
        "sent_at": notice.sent_at,
        "send_attempts": notice.send_attempts,
        "last_error": notice.last_error,
        "message_id": notice.message_id,
        "checks": notice.checks,
        "next_check_at": notice.next_check_at,
        "reminded_at": notice.reminded_at,
        "escalated_at": notice.escalated_at,
        "removed_at": notice.removed_at,
        "closed_at": notice.closed_at,
        "takedown_seconds": notice.takedown_seconds,
    }
    if document:
        shown["document"] = notice.document
    return shown


def with_case(session: Session, notice: Notice) -> tuple[Notice, Case, Host | None]:
    host = session.get(Host, notice.host_id) if notice.host_id is not None else None
    return notice, session.get_one(Case, notice.case_id), host


def request_recheck(session: Session, actor: Principal, notice_id: int, *, queue: bool = True) -> Notice:
    """Make a re-check due now (queued once the caller commits, unless the caller runs it itself)."""
    notice = get_notice(session, notice_id)
    if notice.state not in CHECKED_STATES:
        raise NoticeError(f"notice {notice_id} is {notice.state}: only a sent or escalated notice is re-checked")
    notice.next_check_at = utcnow()
    audit.record(session, actor, "notice.recheck_requested", "notice", notice.id, {})
    if queue:
        after_commit(session, "recheck", notice.id)
    return notice


def retry(session: Session, actor: Principal, notice_id: int, *, queue: bool = True) -> Notice:
    """Send a pending or failed notice now, with a fresh attempt budget (queued once the caller
    commits, unless the caller sends it itself)."""
    notice = get_notice(session, notice_id)
    if notice.state not in ("pending", "failed"):
        raise NoticeError(f"notice {notice_id} is {notice.state}: it was sent already")
    now = utcnow()
    if not notice.recipient:
        case = session.get_one(Case, notice.case_id)
        if not _route(notice, _host_of(session, case), now):
            raise NoticeError(notice.last_error)
    before = notice.state
    notice.state, notice.send_attempts, notice.next_check_at, notice.last_error = "pending", 0, now, ""
    audit.record(session, actor, "notice.retry", "notice", notice.id, {"from": before})
    if queue:
        after_commit(session, "send", notice.id)
    return notice


def close(session: Session, actor: Principal, notice_id: int, comment: str = "") -> Notice:
    """Stop following a notice (an analyst's decision: the host answered, the case went elsewhere …)."""
    notice = get_notice(session, notice_id)
    if notice.state in FINAL_STATES:
        raise NoticeError(f"notice {notice_id} is {notice.state} already")
    comment = (comment or "").strip()
    if len(comment) > 2000:
        raise NoticeError("the comment is longer than 2000 characters")
    now = utcnow()
    before = notice.state
    notice.state, notice.closed_at, notice.next_check_at = "closed", now, None
    case = session.get_one(Case, notice.case_id)
    if case.state == "notified":
        case.state, case.closed_at, case.updated_at, case.version = "closed", now, now, case.version + 1
    audit.record(session, actor, "notice.close", "notice", notice.id, {"from": before, "comment": comment})
    return notice
