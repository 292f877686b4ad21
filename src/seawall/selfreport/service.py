"""Self-reports: intake through the hotline, entries in the ``self-report`` list, status, withdrawal.

Nothing a young person is told depends on whether a hash was known before: every submission gets
its own entries (their external id names the report), so the answer, the list and a withdrawal are
the same whether or not another report or list already had the hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import utcnow
from seawall.hotline import intake
from seawall.hotline.models import Case, Report
from seawall.lists import service as lists
from seawall.lists.models import Entry, HashList
from seawall.lists.records import EntryRecord
from seawall.matching.service import MIN_PDQ_QUALITY
from seawall.selfreport.schemas import SelfReportIn

LIST_NAME: Final = "self-report"
SOURCE: Final = "self-report"
PENDING: Final = "pending"
#: Who files a self-report: the audit log records the channel, never a person.
SELF_REPORTER = Principal(kind="public", name="self-report page", scopes=frozenset())
# The list is the hotline's: the system creates it on the first self-report and changes its entries.
SELF_REPORTER_LIST_OWNER = Principal(kind="system", name="self-report", scopes=frozenset({"admin"}))
# What the status page says, furthest first.
RECEIVED, CHECKED, SHARED, WITHDRAWN = "received", "checked", "shared with platforms", "withdrawn"
STAGES: Final = (RECEIVED, CHECKED, SHARED)
# Case states in which the hotline has not looked yet.
_UNCHECKED = ("open", "captured")


class SelfReportError(ValueError):
    """A self-report that cannot be taken; the message is for the young person."""


@dataclass(frozen=True)
class Received:
    case: str  # the report's reference: what the young person keeps with the PIN
    pin: str


def external_id(reference: str) -> str:
    return f"{SOURCE}:{reference}"


def self_report_list(session: Session) -> HashList:
    """The ``self-report`` hash list, created on first use (a concurrent first use is tolerated)."""
    try:
        return lists.get_list(session, LIST_NAME)
    except lists.ListNotFound:
        pass
    try:
        with session.begin_nested():
            return lists.create_list(
                session,
                SELF_REPORTER_LIST_OWNER,
                name=LIST_NAME,
                kind="hash",
                source=SOURCE,
                description="Hashes young people sent of their own pictures (self-report page). "
                "Entries labelled 'pending' are not yet checked by the hotline.",
            )
    except (IntegrityError, lists.ListError):
        return lists.get_list(session, LIST_NAME)


def video_id(reference: str, number: int) -> str:
    """The external id of the n-th video's vPDQ frames (1-based): matching counts a listed video's
    frames per external id, so each video needs its own."""
    return f"{external_id(reference)}#video{number}"


def vpdq_records(data: SelfReportIn, reference: str, labels: tuple[str, ...], note: str) -> list[EntryRecord]:
    """One ``vpdq`` entry per distinct good-quality frame hash of each video, as a listed video is
    stored: frames sharing an external id. Frames under the quality floor are left out: vPDQ
    compares only good frames, and a listed frame that can never match would lower the share of
    the video a platform's upload is found to cover."""
    out: list[EntryRecord] = []
    videos = 0
    for f in data.files:
        if not f.vpdq:
            continue
        videos += 1
        good = dict.fromkeys(x.pdq.lower() for x in f.vpdq if x.quality >= MIN_PDQ_QUALITY)
        out.extend(
            EntryRecord(
                signal_type="vpdq",
                value=value,
                labels=labels,
                source=SOURCE,
                external_id=video_id(reference, videos),
                note=note,
            )
            for value in good
        )
    return out


def signals_of(data: SelfReportIn) -> list[tuple[str, str]]:
    """The submitted hashes as (signal type, value), normalised, each once."""
    out: list[tuple[str, str]] = []
    for f in data.files:
        out.append(("md5", f.md5.lower()))
        out.append(("sha256", f.sha256.lower()))
        if f.pdq is not None:
            out.append(("pdq", f.pdq.lower()))
    return list(dict.fromkeys(out))


def submit(session: Session, settings: Settings, data: SelfReportIn) -> Received:
    """Take a self-report in (the caller commits): a hash-only case in the hotline's queues and the
    hashes in the ``self-report`` list, labelled pending unless the setting says otherwise."""
    if not data.consent:
        raise SelfReportError("Please tick the box to say you agree before sending.")
    signals = signals_of(data)
    videos = sum(1 for f in data.files if f.vpdq)
    frames = f", {videos} video(s) as {sum(len(f.vpdq or ()) for f in data.files)} hashed frames" if videos else ""
    try:
        done = intake.submit(
            session,
            settings,
            SELF_REPORTER,
            intake.ReportIn(
                channel="self_report",
                age_band=data.age_band,
                description=f"Self-report: {len(data.files)} file(s) hashed on the young person's device{frames}.",
                signals=signals,
            ),
        )
    except intake.IntakeError as exc:
        raise SelfReportError(str(exc)) from None
    assert done.pin is not None  # a new report always has one
    hash_list = self_report_list(session)
    labels = ("self-report", PENDING) if settings.self_report_pending else ("self-report",)
    records = [
        EntryRecord(
            signal_type=kind,
            value=value,
            labels=labels,
            source=SOURCE,
            external_id=external_id(done.report.reference),
            note=f"case {done.case.reference}",
        )
        for kind, value in signals
    ]
    records += vpdq_records(data, done.report.reference, labels, f"case {done.case.reference}")
    lists.add_entries(
        session, SELF_REPORTER_LIST_OWNER, hash_list, records, description=f"self-report {done.report.reference}"
    )
    return Received(case=done.report.reference, pin=done.pin)


def _entries(session: Session, reference: str) -> list[Entry]:
    return list(
        session.scalars(
            select(Entry)
            .join(HashList, HashList.id == Entry.list_id)
            .where(
                HashList.name == LIST_NAME,
                or_(
                    Entry.external_id == external_id(reference),
                    Entry.external_id.startswith(external_id(reference) + "#video", autoescape=True),
                ),
            )
        )
    )


def status(session: Session, report: Report) -> str:
    """Where a self-report is: received, checked (the hotline looked), shared with platforms (its
    entries are active and no longer pending), or withdrawn."""
    if report.withdrawn_at is not None:
        return WITHDRAWN
    entries = _entries(session, report.reference)
    if entries and all(e.status == "active" and PENDING not in (e.labels or []) for e in entries):
        return SHARED
    case = session.get(Case, report.case_id) if report.case_id is not None else None
    if case is not None and case.state not in _UNCHECKED:
        return CHECKED
    return RECEIVED


def status_by_pin(session: Session, reference: str, pin: str) -> str | None:
    """The status of a self-report, or None when the case number and PIN do not belong together
    (the same answer for an unknown case as for a wrong PIN, and for another channel's report)."""
    report = intake.report_by_pin(session, reference, pin)
    if report is None or report.channel != "self_report":
        return None
    return status(session, report)


def withdraw(session: Session, reference: str, pin: str) -> bool:
    """Withdraw a self-report (the caller commits): its hashes are retracted from the list, which
    every feed follower and exchange then reads as a retraction. False for a wrong case number or PIN."""
    report = intake.report_by_pin(session, reference, pin)
    if report is None or report.channel != "self_report":
        return False
    if report.withdrawn_at is None:
        report.withdrawn_at = utcnow()
    entries = [e for e in _entries(session, report.reference) if e.status != "retracted"]
    retracted = 0
    if entries:
        retracted = lists.set_status(
            session, SELF_REPORTER_LIST_OWNER, entries, "retracted", reason="withdrawn by the young person"
        )
    audit.record(
        session,
        SELF_REPORTER,
        "selfreport.withdraw",
        "report",
        report.id,
        {"reference": report.reference, "retracted": retracted},
    )
    session.flush()
    return True


def help_lines(settings: Settings) -> list[tuple[str, list[dict[str, str]]]]:
    """The configured help lines by country, the hotline's own country first."""
    own = settings.hotline_country.upper()
    countries = sorted(settings.self_report_help, key=lambda c: (c.upper() != own, c.upper()))
    return [(c.upper(), settings.self_report_help[c]) for c in countries]
