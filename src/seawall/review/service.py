"""The review console's logic: queues, claims, reveals, preferences and the analyst's exposure.

Grading and QA go through ``hotline.assessment`` (``assess_item``, ``assess_case``, ``qa``) so every
hotline rule holds: already-assessed content is never queued, inheritance, lists synced on the final
confirmation. This module decides who may work on what, and what that work costs them:

- **Claims**: a lock per item or case, held by one analyst until it expires
  (``review_claim_minutes``), is released, skipped (with a reason) or graded.
- **Reveals**: the original media are served only through a reveal: a row with a one-item secret
  URL, valid for ``review_reveal_minutes``, each an audit event; its end records how long it stayed
  revealed.
- **Exposure**: per analyst per day (the hotline's time zone): items viewed, reveals, revealed
  seconds, review time, breaks. Continuous work past the suggest limit shows a suggestion; past the
  enforce limit, or past the daily cap, the queues hand out no work until a gap of
  ``review_break_minutes`` (or the next day). Limits are settings, overridable per role.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import utcnow
from seawall.evidence import service as evidence
from seawall.hotline import assessment
from seawall.hotline.models import Assessment, Capture, Case, CaseItem, Item, Notice, Report, ReportSignal
from seawall.review.models import Claim, Exposure, Preference, Reveal, Skip

MAX_REASON = 500
MAX_BLUR = 24.0
QUEUE_PAGE = 50
NEAR_SCAN_LIMIT = 5000  # assessed items with a PDQ compared for "earlier assessments of near-same"
NEAR_DISTANCE = 31
URGENT = 100  # a case's priority: urgent (a category A match, a report marked urgent)
SELF_REPORT = 80


class ReviewError(ValueError):
    """Input that cannot be acted on; the message says what to change."""


class Held(RuntimeError):
    """Someone else holds the claim."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f"{claim.holder} is working on this {claim.subject} (claimed until {claim.expires_at:%H:%M} UTC)"
        )
        self.claim = claim


class NotHeld(RuntimeError):
    """The caller does not hold the claim it needs (it expired, or was never taken)."""


class OnBreak(RuntimeError):
    """The wellbeing limits refuse work now."""

    def __init__(self, state: Wellbeing) -> None:
        super().__init__(state.message)
        self.state = state


# ---- time -------------------------------------------------------------------------------------


def day_of(settings: Settings, when: datetime) -> str:
    """The hotline's calendar day of ``when`` (exposure counts in its days)."""
    return when.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d")


def day_start(settings: Settings, when: datetime) -> datetime:
    local = when.astimezone(ZoneInfo(settings.timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(ZoneInfo("UTC"))


# ---- wellbeing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    break_suggest_minutes: float
    break_enforce_minutes: float
    break_minutes: float
    daily_cap_hours: float


def limits_for(settings: Settings, role: str | None) -> Limits:
    """The wellbeing limits of a role: the settings, with the role's overrides."""
    base = {
        "break_suggest_minutes": settings.review_break_suggest_minutes,
        "break_enforce_minutes": settings.review_break_enforce_minutes,
        "break_minutes": settings.review_break_minutes,
        "daily_cap_hours": settings.review_daily_cap_hours,
    }
    for name, value in (settings.review_role_limits.get(role or "", {}) or {}).items():
        if name in base and isinstance(value, int | float) and value > 0:
            base[name] = float(value)
    return Limits(**base)


@dataclass(frozen=True)
class Wellbeing:
    state: str  # ok, suggest (a break is suggested), break (enforced), cap (the day's cap reached)
    continuous_seconds: float
    review_seconds: float
    revealed_seconds: float
    items_viewed: int
    breaks: int
    limits: Limits
    resume_at: datetime | None = None  # when an enforced break ends

    @property
    def refused(self) -> bool:
        return self.state in ("break", "cap")

    @property
    def message(self) -> str:
        if self.state == "cap":
            return f"You have reviewed for {self.limits.daily_cap_hours:g} hours today: that is the day's limit."
        if self.state == "break":
            return "You have been reviewing long enough without a pause: the queues hand out work again after a break."
        if self.state == "suggest":
            return f"You have been reviewing for {round(self.continuous_seconds / 60)} minutes: consider a break."
        return ""


def _exposure(session: Session, settings: Settings, user_id: int, now: datetime) -> Exposure | None:
    return session.scalar(select(Exposure).where(Exposure.user_id == user_id, Exposure.day == day_of(settings, now)))


def wellbeing(session: Session, settings: Settings, principal: Principal, now: datetime | None = None) -> Wellbeing:
    """Where the analyst stands against the limits now (reads only)."""
    now = now or utcnow()
    limits = limits_for(settings, principal.role)
    row = _exposure(session, settings, principal.id or 0, now)
    if row is None:
        return Wellbeing("ok", 0.0, 0.0, 0.0, 0, 0, limits)
    continuous = 0.0
    resume_at = None
    if row.last_active_at is not None and row.active_since is not None:
        gap = (now - row.last_active_at).total_seconds()
        if gap < limits.break_minutes * 60:
            continuous = (now - row.active_since).total_seconds()
            resume_at = row.last_active_at + timedelta(minutes=limits.break_minutes)
    state = "ok"
    if row.review_seconds >= limits.daily_cap_hours * 3600:
        state = "cap"
    elif continuous >= limits.break_enforce_minutes * 60:
        state = "break"
    elif continuous >= limits.break_suggest_minutes * 60:
        state = "suggest"
    return Wellbeing(
        state,
        continuous,
        row.review_seconds,
        row.revealed_seconds,
        row.items_viewed,
        row.breaks,
        limits,
        resume_at if state == "break" else None,
    )


def _exposure_for_update(session: Session, settings: Settings, user_id: int, now: datetime) -> Exposure:
    day = day_of(settings, now)
    row = session.scalar(select(Exposure).where(Exposure.user_id == user_id, Exposure.day == day).with_for_update())
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = Exposure(
                user_id=user_id, day=day, items_viewed=0, reveals=0, revealed_seconds=0.0, review_seconds=0.0, breaks=0
            )
            session.add(row)
            session.flush()
        return row
    except IntegrityError:  # another request of the same person made it first
        found = session.scalar(
            select(Exposure).where(Exposure.user_id == user_id, Exposure.day == day).with_for_update()
        )
        assert found is not None
        return found


def start_work(
    session: Session, settings: Settings, principal: Principal, *, viewed: bool = False, now: datetime | None = None
) -> Wellbeing:
    """Count a piece of review work (a claim, an item viewed, a grade), refusing it with ``OnBreak``
    when the limits say so. The gap since the last work counts as review time unless it was long
    enough to be a break."""
    now = now or utcnow()
    state = wellbeing(session, settings, principal, now)
    if state.refused:
        raise OnBreak(state)
    row = _exposure_for_update(session, settings, principal.id or 0, now)
    limits = state.limits
    if row.last_active_at is None or (now - row.last_active_at).total_seconds() >= limits.break_minutes * 60:
        if row.last_active_at is not None:
            row.breaks += 1
        row.active_since = now
    else:
        row.review_seconds += max(0.0, (now - row.last_active_at).total_seconds())
    row.last_active_at = now
    if viewed:
        row.items_viewed += 1
    session.flush()
    return wellbeing(session, settings, principal, now)


@dataclass(frozen=True)
class TeamDay:
    day: str
    analysts: int
    review_hours: float
    revealed_hours: float
    items_viewed: int
    reveals: int
    breaks: int
    at_cap: int  # analysts who reached the daily cap (a count, never who)


def team(session: Session, settings: Settings, days: int = 14, now: datetime | None = None) -> list[TeamDay]:
    """The team's exposure per day, as aggregates only: never a row per person, never a ranking."""
    now = now or utcnow()
    first = day_of(settings, now - timedelta(days=days - 1))
    cap = settings.review_daily_cap_hours * 3600
    rows = session.execute(
        select(
            Exposure.day,
            func.count(Exposure.id),
            func.sum(Exposure.review_seconds),
            func.sum(Exposure.revealed_seconds),
            func.sum(Exposure.items_viewed),
            func.sum(Exposure.reveals),
            func.sum(Exposure.breaks),
            func.sum((Exposure.review_seconds >= cap).cast(Exposure.items_viewed.type)),
        )
        .where(Exposure.day >= first)
        .group_by(Exposure.day)
        .order_by(Exposure.day.desc())
    ).all()
    return [
        TeamDay(
            day,
            int(n),
            round(float(review or 0) / 3600, 2),
            round(float(revealed or 0) / 3600, 2),
            int(items or 0),
            int(reveals or 0),
            int(breaks or 0),
            int(at_cap or 0),
        )
        for day, n, review, revealed, items, reveals, breaks, at_cap in rows
    ]


# ---- preferences ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preferences:
    blur: float
    greyscale: bool
    reveal_on_hold: bool
    own: bool = False  # the person chose some of them


def preferences(session: Session, settings: Settings, user_id: int) -> Preferences:
    row = session.get(Preference, user_id)
    return Preferences(
        blur=row.blur if row is not None and row.blur is not None else settings.review_blur,
        greyscale=row.greyscale if row is not None and row.greyscale is not None else settings.review_greyscale,
        reveal_on_hold=(
            row.reveal_on_hold if row is not None and row.reveal_on_hold is not None else settings.review_reveal_on_hold
        ),
        own=row is not None,
    )


def set_preferences(
    session: Session,
    principal: Principal,
    *,
    blur: float | None,
    greyscale: bool | None,
    reveal_on_hold: bool | None,
) -> None:
    """Save one's own preferences (None: the organisation's default)."""
    if blur is not None and not 0 <= blur <= MAX_BLUR:
        raise ReviewError(f"blur is from 0 to {MAX_BLUR:g} pixels (got {blur:g})")
    row = session.get(Preference, principal.id)
    if row is None:
        row = Preference(user_id=principal.id)
        session.add(row)
    row.blur, row.greyscale, row.reveal_on_hold, row.updated_at = blur, greyscale, reveal_on_hold, utcnow()
    audit.record(
        session,
        principal,
        "review.preferences",
        "user",
        principal.id or "",
        {"blur": blur, "greyscale": greyscale, "reveal_on_hold": reveal_on_hold},
    )
    session.flush()


# ---- claims -----------------------------------------------------------------------------------


def live_claim(session: Session, subject: str, subject_id: int, now: datetime | None = None) -> Claim | None:
    now = now or utcnow()
    row = session.scalar(select(Claim).where(Claim.subject == subject, Claim.subject_id == subject_id))
    return row if row is not None and row.expires_at > now else None


def claim(
    session: Session,
    settings: Settings,
    principal: Principal,
    subject: str,
    subject_id: int,
    now: datetime | None = None,
) -> Claim:
    """Take (or extend) the claim on an item or case; ``Held`` when another analyst holds it."""
    now = now or utcnow()
    expires = now + timedelta(minutes=settings.review_claim_minutes)
    row = session.scalar(
        select(Claim).where(Claim.subject == subject, Claim.subject_id == subject_id).with_for_update()
    )
    if row is not None:
        if row.user_id != principal.id and row.expires_at > now:
            raise Held(row)
        fresh = row.user_id != principal.id
        row.user_id, row.holder, row.expires_at = principal.id or 0, principal.name, expires
        if fresh:
            row.claimed_at = now
    else:
        try:
            with session.begin_nested():
                row = Claim(
                    subject=subject,
                    subject_id=subject_id,
                    user_id=principal.id,
                    holder=principal.name,
                    claimed_at=now,
                    expires_at=expires,
                )
                session.add(row)
                session.flush()
        except IntegrityError:  # claimed by someone else a moment ago
            other = session.scalar(select(Claim).where(Claim.subject == subject, Claim.subject_id == subject_id))
            assert other is not None
            raise Held(other) from None
    audit.record(session, principal, "review.claim", subject, subject_id, {"expires_at": expires.isoformat()})
    session.flush()
    return row


def require_claim(session: Session, principal: Principal, subject: str, subject_id: int) -> Claim:
    row = live_claim(session, subject, subject_id)
    if row is None or row.user_id != principal.id:
        if row is not None:
            raise Held(row)
        raise NotHeld(f"claim this {subject} first: your claim expired or was never taken")
    return row


def release(
    session: Session, principal: Principal, subject: str, subject_id: int, *, reason: str | None = None
) -> None:
    """Return the item or case to the queue; with a ``reason``, a skip (not handed to this person
    again today)."""
    if reason is not None:
        reason = reason.strip()
        if not reason:
            raise ReviewError("say why you skip it: the reason helps whoever takes it next")
        if len(reason) > MAX_REASON:
            raise ReviewError(f"the reason is longer than {MAX_REASON} characters")
    session.execute(
        delete(Claim).where(Claim.subject == subject, Claim.subject_id == subject_id, Claim.user_id == principal.id)
    )
    if reason is not None:
        session.add(Skip(subject=subject, subject_id=subject_id, user_id=principal.id, reason=reason))
    audit.record(
        session,
        principal,
        "review.skip" if reason is not None else "review.release",
        subject,
        subject_id,
        {"reason": reason} if reason is not None else {},
    )
    session.flush()


# ---- queues -----------------------------------------------------------------------------------


@dataclass
class QueueFilter:
    media: str | None = None  # image, video
    channel: str | None = None
    urgent: bool = False


@dataclass
class QueueRow:
    subject: str
    id: int
    label: str  # what the row shows: an item's type and size, a case's reference
    priority: int
    since: datetime
    channels: list[str] = field(default_factory=list)
    holder: str | None = None
    held_by_me: bool = False
    hashes: int = 0  # a hash-only case's hashes

    @property
    def priority_label(self) -> str:
        return priority_label(self.priority, self.channels)


def priority_label(priority: int, channels: Sequence[str] = ()) -> str:
    if priority >= URGENT:
        return "urgent"
    if priority >= SELF_REPORT or "self_report" in channels:
        return "self-report"
    return "normal"


def _item_query(principal: Principal, flt: QueueFilter, now: datetime, today: datetime) -> Any:
    priority = func.max(Case.priority).label("priority")
    since = func.min(Case.opened_at).label("since")
    query = (
        select(Item, priority, since)
        .join(CaseItem, CaseItem.item_id == Item.id)
        .join(Case, Case.id == CaseItem.case_id)
        .where(Item.state == "to_grade")
        .group_by(Item.id)
    )
    if flt.media:
        query = query.where(Item.media == flt.media)
    if flt.channel:
        query = query.where(select(Report.id).where(Report.case_id == Case.id, Report.channel == flt.channel).exists())
    if flt.urgent:
        query = query.having(func.max(Case.priority) >= URGENT)
    return query.order_by(priority.desc(), since, Item.id)


def _channels(session: Session, case_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if not case_ids:
        return out
    for case_id, channel in session.execute(
        select(Report.case_id, Report.channel).where(Report.case_id.in_(list(case_ids))).distinct()
    ):
        seen = out.setdefault(int(case_id or 0), [])
        if channel not in seen:
            seen.append(channel)
    return out


def _claims(session: Session, subject: str, ids: Sequence[int], now: datetime) -> dict[int, Claim]:
    if not ids:
        return {}
    rows = session.scalars(
        select(Claim).where(Claim.subject == subject, Claim.subject_id.in_(list(ids)), Claim.expires_at > now)
    )
    return {row.subject_id: row for row in rows}


def item_queue(
    session: Session, settings: Settings, principal: Principal, flt: QueueFilter | None = None, limit: int = QUEUE_PAGE
) -> list[QueueRow]:
    """Items an analyst must see: urgent first (a category A match, a report marked urgent), then a
    child's self-report, then the oldest."""
    now = utcnow()
    flt = flt or QueueFilter()
    rows = session.execute(_item_query(principal, flt, now, day_start(settings, now)).limit(limit)).all()
    ids = [item.id for item, _, _ in rows]
    case_of: dict[int, list[int]] = {}
    if ids:
        for item_id, case_id in session.execute(
            select(CaseItem.item_id, CaseItem.case_id).where(CaseItem.item_id.in_(ids))
        ):
            case_of.setdefault(int(item_id), []).append(int(case_id))
    channels = _channels(session, sorted({c for cs in case_of.values() for c in cs}))
    claims = _claims(session, "item", ids, now)
    out = []
    for item, priority, since in rows:
        held = claims.get(item.id)
        out.append(
            QueueRow(
                "item",
                item.id,
                f"{item.media} · {item.mime or 'unknown type'} · {item.size / 1024:.0f} KiB",
                int(priority or 0),
                since,
                sorted({ch for c in case_of.get(item.id, []) for ch in channels.get(c, [])}),
                held.holder if held else None,
                bool(held and held.user_id == principal.id),
            )
        )
    return out


def case_queue(
    session: Session, settings: Settings, principal: Principal, flt: QueueFilter | None = None, limit: int = QUEUE_PAGE
) -> list[QueueRow]:
    """Cases to assess as a whole: hash-only reports (a self-report, a partner's or a match's hashes:
    no media to show) and captured URLs whose items are all graded (the URL's own assessment)."""
    now = utcnow()
    flt = flt or QueueFilter()
    waiting = (
        select(CaseItem.id)
        .join(Item, Item.id == CaseItem.item_id)
        .where(CaseItem.case_id == Case.id, Item.state == "to_grade")
        .exists()
    )
    query = (
        select(Case)
        .where(
            Case.state.in_(("open", "captured")),
            (Case.kind == "hashes") | ((Case.state == "captured") & ~waiting),
        )
        .order_by(Case.priority.desc(), Case.opened_at, Case.id)
        .limit(limit)
    )
    if flt.channel:
        query = query.where(select(Report.id).where(Report.case_id == Case.id, Report.channel == flt.channel).exists())
    if flt.urgent:
        query = query.where(Case.priority >= URGENT)
    if flt.media:
        return []
    cases = list(session.scalars(query))
    ids = [c.id for c in cases]
    channels = _channels(session, ids)
    claims = _claims(session, "case", ids, now)
    hashes: dict[int, int] = {}
    if ids:
        for case_id, n in session.execute(
            select(Report.case_id, func.count(ReportSignal.id))
            .join(ReportSignal, ReportSignal.report_id == Report.id)
            .where(Report.case_id.in_(ids))
            .group_by(Report.case_id)
        ):
            hashes[int(case_id or 0)] = int(n)
    out = []
    for case in cases:
        held = claims.get(case.id)
        out.append(
            QueueRow(
                "case",
                case.id,
                case.reference,
                case.priority,
                case.opened_at,
                channels.get(case.id, []),
                held.holder if held else None,
                bool(held and held.user_id == principal.id),
                hashes.get(case.id, 0),
            )
        )
    return out


def qa_queue(session: Session, principal: Principal, limit: int = QUEUE_PAGE) -> list[Assessment]:
    """Submitted assessments another person made (one's own are never one's to check)."""
    me = assessment.who(principal)
    return list(
        session.scalars(
            select(Assessment)
            .where(Assessment.state == "submitted", Assessment.assessor != me)
            .order_by(Assessment.id)
            .limit(limit)
        )
    )


def rechecks(session: Session, limit: int = 20) -> list[tuple[Notice, str]]:
    """Notices whose re-checks gave up on the host (escalated): a person decides what comes next."""
    rows = session.execute(
        select(Notice, Case.reference)
        .join(Case, Case.id == Notice.case_id)
        .where(Notice.state == "escalated")
        .order_by(Notice.escalated_at)
        .limit(limit)
    ).all()
    return [(n, ref) for n, ref in rows]


def spared_today(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """Items that inherited an earlier assessment today: never queued, never seen again by anyone."""
    now = now or utcnow()
    return int(
        session.scalar(
            select(func.count())
            .select_from(Assessment)
            .where(
                Assessment.subject == "item",
                Assessment.inherited_from.is_not(None),
                Assessment.assessed_at >= day_start(settings, now),
            )
        )
        or 0
    )


def next_item(
    session: Session, settings: Settings, principal: Principal, flt: QueueFilter | None = None
) -> Item | None:
    """Claim the first item of the queue nobody else holds and this person did not skip today."""
    now = utcnow()
    flt = flt or QueueFilter()
    skipped = select(Skip.subject_id).where(
        Skip.subject == "item", Skip.user_id == principal.id, Skip.skipped_at >= day_start(settings, now)
    )
    held = select(Claim.subject_id).where(
        Claim.subject == "item", Claim.expires_at > now, Claim.user_id != principal.id
    )
    query = _item_query(principal, flt, now, day_start(settings, now)).where(
        Item.id.not_in(skipped), Item.id.not_in(held)
    )
    for item, _, _ in session.execute(query.limit(5)).all():
        try:
            with session.begin_nested():
                claim(session, settings, principal, "item", item.id, now)
            return item
        except Held:
            continue
    return None


# ---- what an item view shows beside the media ---------------------------------------------------


@dataclass
class CaseContext:
    case: Case
    reports: list[Report]
    capture: Capture | None
    contacts: dict[int, str] = field(default_factory=dict)  # report id -> contact, for those allowed


@dataclass
class ItemContext:
    item: Item
    cases: list[CaseContext]
    earlier: list[tuple[Assessment, int]]  # earlier assessments by others, with the PDQ distance (0: same)


def may_see_contact(principal: Principal) -> bool:
    """A reporter's contact is for those who follow reports up: senior analysts and admins."""
    return principal.can("qa") or principal.can("admin")


def case_context(session: Session, settings: Settings, principal: Principal, case: Case) -> CaseContext:
    from seawall.hotline import intake

    reports = list(session.scalars(select(Report).where(Report.case_id == case.id).order_by(Report.id)))
    capture = session.scalar(select(Capture).where(Capture.case_id == case.id).order_by(Capture.id.desc()).limit(1))
    ctx = CaseContext(case, reports, capture)
    if may_see_contact(principal):
        for report in reports:
            contact = intake.contact_of(settings, report)
            if contact:
                ctx.contacts[report.id] = contact
                # Personal data shown: logged like a read of media (the caller commits).
                audit.record(session, principal, "report.contact.read", "report", report.id, {})
    return ctx


def _near(session: Session, item: Item) -> dict[int, int]:
    """Items (assessed, with a PDQ) within ``NEAR_DISTANCE`` bits of this one, by id: distance."""
    if not item.pdq:
        return {}
    rows = session.execute(
        select(Item.id, Item.pdq)
        .where(Item.id != item.id, Item.pdq.is_not(None), Item.assessment_id.is_not(None))
        .order_by(Item.id.desc())
        .limit(NEAR_SCAN_LIMIT)
    ).all()
    if not rows:
        return {}
    mine = np.frombuffer(bytes.fromhex(item.pdq), dtype=np.uint8)
    others = np.frombuffer(b"".join(bytes.fromhex(p or "") for _, p in rows), dtype=np.uint8).reshape(len(rows), -1)
    distances = np.unpackbits(others ^ mine, axis=1).sum(axis=1)
    return {int(rows[i][0]): int(d) for i, d in enumerate(distances) if d <= NEAR_DISTANCE}


def item_context(session: Session, settings: Settings, principal: Principal, item: Item) -> ItemContext:
    cases = [case_context(session, settings, principal, c) for c in assessment.cases_of(session, item)]
    near = _near(session, item)
    near[item.id] = 0
    me = assessment.who(principal)
    earlier = list(
        session.scalars(
            select(Assessment)
            .where(Assessment.subject == "item", Assessment.item_id.in_(list(near)), Assessment.assessor != me)
            .order_by(Assessment.id.desc())
            .limit(20)
        )
    )
    return ItemContext(item, cases, [(a, near.get(a.item_id or 0, 0)) for a in earlier])


def case_signals(session: Session, case: Case) -> list[tuple[str, str]]:
    rows = session.execute(
        select(ReportSignal.signal_type, ReportSignal.value)
        .join(Report, Report.id == ReportSignal.report_id)
        .where(Report.case_id == case.id)
        .distinct()
    ).all()
    return [(t, v) for t, v in rows]


def signal_matches(session: Session, signals: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Entries of enabled lists holding exactly these hashes (what a hash-only case matched)."""
    from seawall.lists.models import Entry, HashList

    if not signals:
        return []
    out = []
    for signal_type, value in signals[:50]:
        for name, category, status in session.execute(
            select(HashList.name, Entry.category, Entry.status)
            .join(Entry, Entry.list_id == HashList.id)
            .where(Entry.signal_type == signal_type, Entry.value == value, HashList.deleted_at.is_(None))
            .limit(10)
        ):
            out.append(
                {
                    "signal_type": signal_type,
                    "value": value,
                    "list": name,
                    "category": category,
                    "status": status,
                    "distance": 0,
                }
            )
    return out


# ---- media: the blurred thumbnail and reveals ---------------------------------------------------


def _placeholder() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (256, 192), 128).save(out, format="JPEG", quality=70)
    return out.getvalue()


def thumbnail(session: Session, settings: Settings, item: Item, blur: float) -> bytes:
    """The item's server-rendered blurred greyscale thumbnail, blurred ``blur`` pixels more (the
    person's preference); a grey placeholder when it has none. Small: at most a few 256-px tiles."""
    from PIL import Image, ImageFilter

    if item.thumbnail_id is None:
        return _placeholder()
    data = evidence.get(session, settings, item.thumbnail_id)
    if blur <= 0:
        return data
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        out = io.BytesIO()
        img.convert("L").filter(ImageFilter.GaussianBlur(min(blur, MAX_BLUR))).save(out, format="JPEG", quality=70)
    return out.getvalue()


def record_media_read(session: Session, principal: Principal, item: Item, what: str) -> None:
    audit.record(session, principal, f"media.{what}", "item", item.id, {"sha256": item.sha256})


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_reveal(
    session: Session, settings: Settings, principal: Principal, item: Item, now: datetime | None = None
) -> tuple[Reveal, str]:
    """A deliberate reveal of one item's original: the row, and the secret of its one-item URL."""
    now = now or utcnow()
    if item.evidence_id is None:
        raise ReviewError(f"item {item.id} has no stored original to reveal")
    token = secrets.token_urlsafe(24)
    row = Reveal(token_hash=_token_hash(token), user_id=principal.id, item_id=item.id, revealed_at=now)
    session.add(row)
    session.flush()
    exposure = _exposure_for_update(session, settings, principal.id or 0, now)
    exposure.reveals += 1
    audit.record(session, principal, "media.reveal", "item", item.id, {"reveal": row.id, "sha256": item.sha256})
    session.flush()
    return row, token


def reveal_for(session: Session, settings: Settings, principal: Principal, token: str) -> Reveal:
    """The reveal a one-item URL names, if it is this person's, not ended and not expired."""
    row = session.scalar(select(Reveal).where(Reveal.token_hash == _token_hash(token)))
    now = utcnow()
    if (
        row is None
        or row.user_id != principal.id
        or row.ended_at is not None
        or now - row.revealed_at > timedelta(minutes=settings.review_reveal_minutes)
    ):
        raise ReviewError("this reveal link is not yours, has ended or has expired: reveal the item again")
    return row


def original(session: Session, settings: Settings, item: Item) -> bytes:
    if item.evidence_id is None:
        raise ReviewError(f"item {item.id} has no stored original")
    return evidence.get(session, settings, item.evidence_id)


def end_reveal(
    session: Session,
    settings: Settings,
    principal: Principal,
    reveal_id: int,
    client_seconds: float | None,
    now: datetime | None = None,
) -> Reveal:
    """Record how long a reveal stayed revealed: the page's own count, never more than the time
    since the reveal (a page cannot claim it was shown longer than it existed). Ending twice is a
    no-op (a beacon may arrive twice)."""
    now = now or utcnow()
    row = session.scalar(select(Reveal).where(Reveal.id == reveal_id).with_for_update())
    if row is None or row.user_id != principal.id:
        raise ReviewError(f"no reveal {reveal_id} of yours")
    if row.ended_at is not None:
        return row
    elapsed = max(0.0, (now - row.revealed_at).total_seconds())
    seconds = elapsed if client_seconds is None else min(max(0.0, client_seconds), elapsed)
    row.ended_at, row.seconds = now, round(seconds, 3)
    exposure = _exposure_for_update(session, settings, principal.id or 0, now)
    exposure.revealed_seconds += seconds
    audit.record(
        session,
        principal,
        "media.reveal.end",
        "item",
        row.item_id,
        {"reveal": row.id, "duration_seconds": round(seconds, 3)},
    )
    session.flush()
    return row
