"""Assessment and QA: analysts judge items and cases (URLs); a second person confirms or rejects.

- An **item** assessment judges one piece of media; a **case** assessment judges the reported URL.
  A case's assessment is **derived** from its items' by the IWF rules (youngest visible child, most
  severe category, flags the union) and recomputed whenever one of them changes, until an analyst
  **overrides** it with the case's own assessment (``derive`` goes back to the rules).
- Every save names the version of the item or case it read; a stale one is refused (`Conflict`),
  never a silent overwrite.
- **QA**: a senior analyst who is not the assessor confirms or rejects, with a comment. After
  ``hotline_qa_confirmations`` confirmations (by different people) the assessment is final: a
  ``csam`` item's hashes go to the hotline's hash list, a ``csam`` URL to its URL list at the level
  the analyst chose, then the notice or referral opens (`actions.after_confirmation`) — all in the
  transaction of the final confirmation. A rejected assessment goes back to its assessor; the item
  or case returns to its queue.
- **Inheritance**: an item near-identical (PDQ within the hash list's threshold) to one whose
  ``csam`` assessment was confirmed inherits that assessment and is never queued again; a confirmed
  item passes it on to the near-identical items still waiting.

Lock order, so two writers never wait on each other in a circle: the item or case being changed
first, then other items, then cases, then lists and the audit chain (events are recorded last).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from seawall.auth import audit
from seawall.auth.models import ApiKey, User
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings, get_settings
from seawall.db import utcnow
from seawall.hotline import classification, intake
from seawall.hotline.models import (
    AGE_BANDS,
    CATEGORIES,
    FLAGS,
    OUTCOMES,
    SEXES,
    SITE_TYPES,
    Assessment,
    Capture,
    Case,
    CaseItem,
    Item,
    QaDecision,
    Report,
)
from seawall.lists import service as lists_service
from seawall.lists.models import Entry, HashList
from seawall.lists.records import URL_LEVELS, EntryRecord
from seawall.matching.indexes import MatchIndexes
from seawall.signals.pdq import LOW_QUALITY_THRESHOLD, hamming, is_low_quality
from seawall.stats import service as stats_service

log = logging.getLogger(__name__)

MAX_COMMENT = 5000
MAX_CHILDREN = 1000
DECISIONS = ("confirm", "reject")
# A URL's outcome is the first of these that any of its items has.
OUTCOME_ORDER = ("csam", "other_illegal", "not_csam", "duplicate", "inaccessible")
# Outcomes that say what the content shows (the others describe the page or the report).
_ILLEGAL = ("csam", "other_illegal")
# Case states in which the case is still in an analyst's queue (an assessment moves it on).
_QUEUE_STATES = ("open", "captured")
# Case states a final csam confirmation moves to "confirmed" (and so to a notice or referral).
_BEFORE_CONFIRMATION = ("open", "captured", "assessed", "closed")
_HASH_SOURCE = "hotline"


class AssessmentError(ValueError):
    """Input that cannot be saved as sent; the message says what to change (nothing was saved)."""


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The item, case or assessment changed since it was read, or is not in a state for this."""


class Refused(PermissionError):
    """The caller may not do this (QA of one's own assessment, a list-limited key)."""


def who(principal: Principal) -> str:
    """How an assessment and a QA decision record a person: ``kind:name``, as reports record partners."""
    return intake.partner_name(principal)


# ---- input ---------------------------------------------------------------------------------


@dataclass
class AssessmentIn:
    """What an analyst sends. ``derive`` (cases only): take the findings from the items by the IWF
    rules, choosing only the URL level, site type and comment."""

    outcome: str | None = None
    category: str | None = None
    age_band: str | None = None
    sex: str | None = None
    children: int | None = None
    flags: list[str] = field(default_factory=list)
    site_type: str | None = None
    url_level: str | None = None
    comment: str = ""
    derive: bool = False


def _one_of(problems: list[str], name: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and value not in allowed:
        problems.append(f"{name} is one of {', '.join(allowed)} (got {value!r})")


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def validate(data: AssessmentIn, *, subject: str, case: Case | None = None) -> AssessmentIn:
    """The input checked and normalised; AssessmentError naming every problem otherwise."""
    problems: list[str] = []
    comment = (data.comment or "").strip()
    if len(comment) > MAX_COMMENT:
        problems.append(f"the comment is longer than {MAX_COMMENT} characters")
    flags = sorted({f.strip() for f in data.flags if f and f.strip()})
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        problems.append(f"unknown flag(s) {', '.join(unknown)}; flags: {', '.join(FLAGS)}")
    _one_of(problems, "site_type", data.site_type, SITE_TYPES)
    url_level = data.url_level
    if subject == "item":
        if data.derive:
            problems.append("only a case's assessment is derived (from its items)")
        if url_level is not None:
            problems.append("an item has no URL level: the case's assessment chooses it")
    else:
        if case is not None and case.url is None:
            if url_level is not None:
                problems.append(f"case {case.reference} has no URL, so no URL level")
        else:
            url_level = url_level or "exact"
            _one_of(problems, "url_level", url_level, URL_LEVELS)
            if url_level == "domain" and not comment:
                problems.append("a domain-level URL lists every page of the site: say why in the comment")
            if case is not None and url_level in URL_LEVELS and not problems:
                try:
                    url_value(case, url_level)
                except ValueError as exc:
                    problems.append(f"the case's URL cannot be listed at level {url_level}: {exc}")
    if data.derive:
        given = [
            name
            for name, value in (
                ("outcome", data.outcome),
                ("category", data.category),
                ("age_band", data.age_band),
                ("sex", data.sex),
                ("children", data.children),
            )
            if value is not None
        ] + (["flags"] if flags else [])
        if given:
            problems.append(
                f"a derived assessment takes {', '.join(given)} from the items: send only url_level, "
                "site_type and comment, or leave derive off to override the items"
            )
        if problems:
            raise AssessmentError("; ".join(problems))
        return AssessmentIn(site_type=data.site_type, url_level=url_level, comment=comment, derive=True)

    outcome = data.outcome
    children = data.children
    if outcome is None:
        problems.append(f"outcome is required: one of {', '.join(OUTCOMES)}")
    else:
        _one_of(problems, "outcome", outcome, OUTCOMES)
    _one_of(problems, "category", data.category, CATEGORIES)
    _one_of(problems, "age_band", data.age_band, AGE_BANDS)
    _one_of(problems, "sex", data.sex, SEXES)
    if children is not None and not 1 <= children <= MAX_CHILDREN:
        problems.append(f"children is a number from 1 to {MAX_CHILDREN}")
    if outcome == "csam":
        if data.category is None:
            problems.append("a csam assessment needs a category (A, B or C)")
        if data.age_band is None:
            problems.append(f"a csam assessment needs the youngest visible child's age band ({', '.join(AGE_BANDS)})")
        if data.sex is None:
            problems.append(f"a csam assessment needs the sex of the children shown ({', '.join(SEXES)})")
    elif outcome == "other_illegal":
        if data.category is not None:
            problems.append("an other_illegal assessment has no category: A, B and C grade indecent images of children")
    elif outcome in OUTCOMES:
        for name, value in (
            ("a category", data.category),
            ("an age band", data.age_band),
            ("a sex", data.sex),
            ("a number of children", children),
        ):
            if value is not None:
                problems.append(f"{_a(outcome)} assessment has no {name.split(' ', 1)[1]} (got {value!r})")
        if flags:
            problems.append(f"{_a(outcome)} assessment has no flags (got {', '.join(flags)})")
    if children is not None and children >= 2 and "multi_child" not in flags and not unknown:
        flags = sorted({*flags, "multi_child"})
    if children == 1 and "multi_child" in flags:
        problems.append("the multi_child flag says there is more than one child, but children is 1")
    if problems:
        raise AssessmentError("; ".join(problems))
    return AssessmentIn(
        outcome=outcome,
        category=data.category,
        age_band=data.age_band,
        sex=data.sex,
        children=children,
        flags=flags,
        site_type=data.site_type,
        url_level=url_level,
        comment=comment,
    )


# ---- the IWF rules for a URL ----------------------------------------------------------------


_FINDINGS = ("outcome", "category", "age_band", "sex", "children", "flags")


def combine_sex(values: Iterable[str | None]) -> str | None:
    """Girls on one image and boys on another: both."""
    seen = {v for v in values if v is not None}
    if "both" in seen or {"girl", "boy"} <= seen:
        return "both"
    for value in ("girl", "boy", "unidentified"):
        if value in seen:
            return value
    return None


def derive(assessments: Sequence[Assessment]) -> dict[str, Any] | None:
    """A URL's findings from its items' assessments: the first outcome of OUTCOME_ORDER any item has;
    for illegal content the **youngest** child and the **most severe** category across the items
    with that outcome (they may be different images), the sex combined, the most children seen on
    one item, and every item's flags. None when no item is assessed."""
    if not assessments:
        return None
    outcomes = {a.outcome for a in assessments}
    outcome = next(o for o in OUTCOME_ORDER if o in outcomes)
    if outcome not in _ILLEGAL:
        return {"outcome": outcome, "category": None, "age_band": None, "sex": None, "children": None, "flags": []}
    counted = [a for a in assessments if a.outcome == outcome]
    categories = [a.category for a in counted if a.category is not None]
    bands = [a.age_band for a in counted if a.age_band is not None]
    children = [a.children for a in counted if a.children is not None]
    flags = sorted({f for a in assessments if a.outcome in _ILLEGAL for f in (a.flags or ())})
    return {
        "outcome": outcome,
        "category": min(categories, key=CATEGORIES.index) if categories else None,
        "age_band": min(bands, key=AGE_BANDS.index) if bands else None,
        "sex": combine_sex(a.sex for a in counted),
        "children": max(children) if children else None,
        "flags": flags,
    }


# ---- look-ups --------------------------------------------------------------------------------


def find_case(session: Session, reference: str) -> Case:
    """A case by its reference, or the case of a report (R-…) reference."""
    ref = reference.strip().upper()
    case = session.scalar(select(Case).where(Case.reference == ref))
    if case is None:
        report = intake.get_report(session, ref)
        if report is not None and report.case_id is not None:
            case = session.get(Case, report.case_id)
    if case is None:
        raise NotFound(f"no case or report {reference!r}")
    return case


def get_item(session: Session, item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise NotFound(f"no item {item_id}")
    return item


def get_assessment(session: Session, assessment_id: int) -> Assessment:
    row = session.get(Assessment, assessment_id)
    if row is None:
        raise NotFound(f"no assessment {assessment_id}")
    return row


def items_of(session: Session, case: Case) -> list[Item]:
    return list(
        session.scalars(
            select(Item)
            .join(CaseItem, CaseItem.item_id == Item.id)
            .where(CaseItem.case_id == case.id)
            .order_by(Item.id)
        )
    )


def cases_of(session: Session, item: Item) -> list[Case]:
    return list(
        session.scalars(
            select(Case)
            .join(CaseItem, CaseItem.case_id == Case.id)
            .where(CaseItem.item_id == item.id)
            .order_by(Case.id)
        )
    )


def _latest(
    session: Session, states: Sequence[str], *, item: Item | None = None, case: Case | None = None
) -> Assessment | None:
    query = select(Assessment).where(Assessment.state.in_(states)).order_by(Assessment.id.desc()).limit(1)
    if item is not None:
        query = query.where(Assessment.subject == "item", Assessment.item_id == item.id)
    if case is not None:
        query = query.where(Assessment.subject == "case", Assessment.case_id == case.id)
    return session.scalar(query)


def current_case_assessment(session: Session, case: Case) -> Assessment | None:
    """The assessment that stands for the case: a newer submitted one, else the confirmed one."""
    return _latest(session, ("submitted", "confirmed"), case=case)


def confirmed_case_assessment(session: Session, case: Case) -> Assessment | None:
    return _latest(session, ("confirmed",), case=case)


def _item_assessments(session: Session, case: Case) -> list[Assessment]:
    """The assessments that stand for the case's items now (submitted or confirmed, inherited too)."""
    return list(
        session.scalars(
            select(Assessment)
            .join(Item, Item.assessment_id == Assessment.id)
            .join(CaseItem, CaseItem.item_id == Item.id)
            .where(CaseItem.case_id == case.id, Assessment.state.in_(("submitted", "confirmed")))
            .order_by(Assessment.id)
        )
    )


# ---- versions --------------------------------------------------------------------------------


def _claim(session: Session, row: Item | Case, version: int | None, what: str) -> int:
    """Bump the row's version if it is still ``version`` (None: whatever it is), taking its row lock
    (SQLite: the write lock) for the rest of the transaction; Conflict when someone saved first."""
    model = type(row)
    query = update(model).where(model.id == row.id)
    if version is not None:
        query = query.where(model.version == version)
    result = session.execute(query.values(version=model.version + 1).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        now = session.scalar(select(model.version).where(model.id == row.id))
        raise Conflict(
            f"{what} was changed by someone else since you read it (you read version {version}, it is now "
            f"version {now}): reload it and save again; nothing was saved"
        )
    new = int(session.scalar(select(model.version).where(model.id == row.id)) or 0)
    set_committed_value(row, "version", new)
    return new


# ---- events ---------------------------------------------------------------------------------


@dataclass
class _Events:
    """Audit events of one operation, recorded at its end (the audit chain is locked last)."""

    items: list[tuple[str, str, int, dict[str, Any]]] = field(default_factory=list)

    def add(self, action: str, object_type: str, object_id: int, details: dict[str, Any]) -> None:
        self.items.append((action, object_type, object_id, details))

    def record(self, session: Session, actor: Principal) -> None:
        for action, object_type, object_id, details in self.items:
            audit.record(session, actor, action, object_type, object_id, details)
        self.items.clear()


def _findings(row: Assessment) -> dict[str, Any]:
    return {
        "subject": row.subject,
        "item": row.item_id,
        "case": row.case_id,
        "outcome": row.outcome,
        "category": row.category,
        "age_band": row.age_band,
        "sex": row.sex,
        "children": row.children,
        "flags": list(row.flags or ()),
        "site_type": row.site_type,
        "url_level": row.url_level,
        "derived": row.derived,
        "inherited_from": row.inherited_from,
    }


# ---- saving assessments ----------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    assessment: Assessment
    version: int  # the item's or case's version after the save


def _supersede_pending(session: Session, *, item: Item | None = None, case: Case | None = None) -> list[int]:
    pending = list(
        session.scalars(
            select(Assessment).where(
                Assessment.state == "submitted",
                *(
                    (Assessment.subject == "item", Assessment.item_id == item.id)
                    if item is not None
                    else (Assessment.subject == "case", Assessment.case_id == (case.id if case is not None else None))
                ),
            )
        )
    )
    for row in pending:
        row.state = "superseded"
    return [row.id for row in pending]


def _settle_item(session: Session, item: Item) -> None:
    """Point the item at the assessment that stands for it, and put it in the matching state."""
    current = _latest(session, ("submitted", "confirmed"), item=item)
    item.assessment_id = current.id if current is not None else None
    if current is None:
        item.state = "to_grade"
    elif current.inherited_from is not None:
        item.state = "inherited"
    else:
        item.state = "graded"


def _queue_state(session: Session, case: Case) -> str:
    captured = session.scalar(select(Capture.id).where(Capture.case_id == case.id).limit(1))
    return "captured" if captured is not None else "open"


def assess_item(
    session: Session, settings: Settings, actor: Principal, item_id: int, version: int, data: AssessmentIn
) -> Saved:
    """Save an analyst's assessment of an item (the caller commits). It replaces the item's pending
    one; a confirmed one stays in force until this one is confirmed."""
    data = validate(data, subject="item")
    item = get_item(session, item_id)
    new_version = _claim(session, item, version, f"item {item.id}")
    events = _Events()
    superseded = _supersede_pending(session, item=item)
    row = Assessment(
        subject="item",
        item_id=item.id,
        assessor=who(actor),
        assessed_at=utcnow(),
        outcome=data.outcome,
        category=data.category,
        age_band=data.age_band,
        sex=data.sex,
        children=data.children,
        flags=data.flags,
        site_type=data.site_type,
        comment=data.comment,
        state="submitted",
    )
    session.add(row)
    session.flush()
    _settle_item(session, item)
    events.add("assessment.submit", "assessment", row.id, {**_findings(row), "superseded": superseded})
    for case in cases_of(session, item):
        recompute_case(session, actor, case, events=events)
    events.record(session, actor)
    session.flush()
    return Saved(row, new_version)


def assess_case(
    session: Session, settings: Settings, actor: Principal, reference: str, version: int, data: AssessmentIn
) -> Saved:
    """Save a case's assessment: the analyst's own (an override of the derived one), or with
    ``derive`` the one the IWF rules give from the items, with the analyst's URL level."""
    case = find_case(session, reference)
    data = validate(data, subject="case", case=case)
    new_version = _claim(session, case, version, f"case {case.reference}")
    events = _Events()
    if data.derive:
        row = _derive_case(
            session,
            actor,
            case,
            events,
            url_level=data.url_level,
            site_type=data.site_type,
            comment=data.comment,
            explicit=True,
        )
        if row is None:
            raise Conflict(
                f"case {case.reference} has no assessed items to derive from: assess its items, "
                "or give the case's own assessment"
            )
    else:
        superseded = _supersede_pending(session, case=case)
        row = Assessment(
            subject="case",
            case_id=case.id,
            assessor=who(actor),
            assessed_at=utcnow(),
            outcome=data.outcome,
            category=data.category,
            age_band=data.age_band,
            sex=data.sex,
            children=data.children,
            flags=data.flags,
            site_type=data.site_type,
            url_level=data.url_level,
            comment=data.comment,
            derived=False,
            state="submitted",
        )
        session.add(row)
        session.flush()
        _case_assessed(case)
        events.add("assessment.submit", "assessment", row.id, {**_findings(row), "superseded": superseded})
    events.record(session, actor)
    session.flush()
    return Saved(row, new_version)


def _case_assessed(case: Case) -> None:
    if case.state in _QUEUE_STATES:
        case.state = "assessed"
    case.updated_at = utcnow()


def recompute_case(
    session: Session, actor: Principal, case: Case, *, events: _Events | None = None
) -> Assessment | None:
    """Bring a case's derived assessment up to date with its items (an override is left alone).
    Returns the assessment that now stands for the case."""
    own = events is None
    events = events if events is not None else _Events()
    current = current_case_assessment(session, case)
    if current is not None and not current.derived:
        return current
    row = _derive_case(
        session,
        actor,
        case,
        events,
        url_level=current.url_level if current is not None else None,
        site_type=current.site_type if current is not None else None,
        comment=None,
        explicit=False,
    )
    if own:
        events.record(session, actor)
    return row


def _derive_case(
    session: Session,
    actor: Principal,
    case: Case,
    events: _Events,
    *,
    url_level: str | None,
    site_type: str | None,
    comment: str | None,
    explicit: bool,
) -> Assessment | None:
    """The case's derived assessment from its items now: a new one when the findings changed (or
    the analyst asked for it), none when no item is assessed any more."""
    if not explicit:
        # Read the items only once the case is ours: an analyst saving another of its items at the
        # same time would otherwise derive from what it read before this save committed.
        session.execute(
            select(Case).where(Case.id == case.id).with_for_update().execution_options(populate_existing=True)
        )
    current = current_case_assessment(session, case)
    contributing = _item_assessments(session, case)
    values = derive(contributing)
    level = (url_level or "exact") if case.url is not None else None
    if values is None:
        if current is not None and current.derived and current.state == "submitted":
            if not explicit:
                _claim(session, case, None, f"case {case.reference}")
            current.state = "superseded"
            if case.state == "assessed" and confirmed_case_assessment(session, case) is None:
                case.state = _queue_state(session, case)
            case.updated_at = utcnow()
            events.add("assessment.derive", "case", case.id, {"case": case.reference, "superseded": [current.id]})
        return None
    if (
        not explicit
        and current is not None
        and current.derived
        and all(getattr(current, k) == (sorted(v) if k == "flags" else v) for k, v in values.items())
        and current.url_level == level
        and current.site_type == site_type
    ):
        return current
    if not explicit:
        _claim(session, case, None, f"case {case.reference}")  # the case changed: its version moves on
    superseded = _supersede_pending(session, case=case)
    assessor = who(actor)
    if not explicit and current is not None and current.derived:
        assessor = current.assessor  # whoever chose its URL level still answers for it
    row = Assessment(
        subject="case",
        case_id=case.id,
        assessor=assessor,
        assessed_at=utcnow(),
        url_level=level,
        site_type=site_type,
        comment=comment
        if comment is not None
        else f"derived from {len(contributing)} item assessment(s): youngest child, most severe category",
        derived=True,
        state="submitted",
        **values,
    )
    session.add(row)
    session.flush()
    _case_assessed(case)
    events.add(
        "assessment.derive",
        "assessment",
        row.id,
        {
            **_findings(row),
            "case_reference": case.reference,
            "from": [a.id for a in contributing],
            "superseded": superseded,
        },
    )
    return row


# ---- inheritance ------------------------------------------------------------------------------


def _pdq_threshold(session: Session, settings: Settings) -> int:
    from seawall.signals.base import get_signal_type

    default = get_signal_type("pdq").default_threshold
    thresholds = session.scalar(
        select(HashList.thresholds).where(HashList.name == settings.hotline_hash_list, HashList.deleted_at.is_(None))
    )
    return int((thresholds or {}).get("pdq", default))


def _quality_ok(quality: int | None, settings: Settings) -> bool:
    return settings.match_low_quality or quality is None or not is_low_quality(quality)


def _usable_pdq(item: Item, settings: Settings) -> str | None:
    """The item's PDQ hash when it is good enough to match on (low quality ones match too much)."""
    return item.pdq if item.pdq is not None and _quality_ok(item.pdq_quality, settings) else None


def _usable_quality(settings: Settings) -> ColumnElement[bool]:
    """The same test in SQL."""
    if settings.match_low_quality:
        return true()
    return or_(Item.pdq_quality.is_(None), Item.pdq_quality >= LOW_QUALITY_THRESHOLD)


def _distance(a: str, b: str) -> int:
    return hamming(bytes.fromhex(a), bytes.fromhex(b))


def _distances(pdq: str, others: Sequence[str]) -> np.ndarray:
    """Hamming distances from one PDQ hash to many, in one pass."""
    if not others:
        return np.empty(0, dtype=np.int64)
    codes = np.frombuffer(bytes.fromhex("".join(others)), dtype=np.uint8).reshape(len(others), -1)
    query = np.frombuffer(bytes.fromhex(pdq), dtype=np.uint8)
    return np.unpackbits(codes ^ query, axis=1).sum(axis=1, dtype=np.int64)


def _inheritable_sources(settings: Settings) -> tuple[ColumnElement[bool], ...]:
    """Items whose own, analyst-made assessment is confirmed csam (never an heir's copy)."""
    return (
        Item.pdq.is_not(None),
        _usable_quality(settings),
        Assessment.subject == "item",
        Assessment.state == "confirmed",
        Assessment.outcome == "csam",
        Assessment.inherited_from.is_(None),
    )


def _near_by_scan(session: Session, settings: Settings, item: Item, pdq: str, threshold: int) -> list[tuple[int, int]]:
    """(distance, assessment id) of every source within ``threshold``: one vectorised pass over them."""
    rows = (
        session.connection()
        .execute(
            select(Item.pdq, Assessment.id)
            .join(Assessment, Assessment.id == Item.assessment_id)
            .where(Item.id != item.id, *_inheritable_sources(settings))
        )
        .all()
    )
    distances = _distances(pdq, [str(r[0]) for r in rows])  # never NULL: filtered in the query
    return [(int(distances[i]), int(rows[i][1])) for i in np.nonzero(distances <= threshold)[0].tolist()]


def _near_by_index(
    session: Session, settings: Settings, indexes: MatchIndexes, item: Item, pdq: str
) -> list[tuple[int, int]]:
    """The same from the matcher's index of the hotline hash list, which holds exactly the sources'
    PDQ hashes (entries ``hotline-item:<id>``), at the list's own threshold."""
    from seawall.matching import service as matching

    query = matching.Query(signals={"pdq": [pdq]}, pdq_quality=item.pdq_quality)
    hits = matching.find_hits(None, indexes, query, settings, lists=[settings.hotline_hash_list])
    nearest: dict[int, int] = {}
    for hit in hits:
        if hit.signal_type == "pdq":
            nearest[hit.entry_id] = min(hit.distance, nearest.get(hit.entry_id, hit.distance))
    if not nearest:
        return []
    owners: dict[int, int] = {}
    for entry_id, external_id in session.execute(
        select(Entry.id, Entry.external_id).where(Entry.id.in_(list(nearest)), Entry.status == "active")
    ):
        prefix, _, number = external_id.partition(":")
        if prefix == "hotline-item" and number.isdigit():
            owners[int(number)] = min(nearest[entry_id], owners.get(int(number), nearest[entry_id]))
    if not owners:
        return []
    rows = session.execute(
        select(Item.id, Assessment.id)
        .join(Assessment, Assessment.id == Item.assessment_id)
        .where(Item.id.in_(list(owners)), Item.id != item.id, *_inheritable_sources(settings))
    ).all()
    return [(owners[item_id], assessment_id) for item_id, assessment_id in rows]


def find_inheritable(
    session: Session, item: Item, *, settings: Settings | None = None, indexes: MatchIndexes | None = None
) -> Assessment | None:
    """The confirmed ``csam`` assessment an item inherits, or None (it goes to an analyst).

    The same content (SHA-256) is the same item row, assessed once. Another item with the same MD5 or
    SHA-1 but different bytes is a made collision: nothing is inherited and the item is queued. A
    near-identical picture (PDQ within the hotline hash list's threshold, both hashes of usable
    quality) inherits the nearest analyst-confirmed ``csam`` assessment: only those, so that a
    picture crafted to sit near a benign one is still seen by an analyst, and only assessments an
    analyst made, so that chains of near matches never drift beyond the threshold.

    ``indexes``: a process's match indexes (a worker that matches what it captures has them): the
    search uses the hotline hash list's index instead of scanning every confirmed item."""
    settings = settings or get_settings()
    clash = session.scalar(
        select(Item.id)
        .where(Item.id != item.id, Item.sha256 != item.sha256, (Item.md5 == item.md5) | (Item.sha1 == item.sha1))
        .limit(1)
    )
    if clash is not None:
        log.warning("item %s shares an MD5 or SHA-1 with item %s but not its bytes: not inherited", item.id, clash)
        return None
    pdq = _usable_pdq(item, settings)
    if pdq is None:
        return None
    if indexes is not None:
        found = _near_by_index(session, settings, indexes, item, pdq)
    else:
        found = _near_by_scan(session, settings, item, pdq, _pdq_threshold(session, settings))
    return session.get(Assessment, min(found)[1]) if found else None


def _inherit(session: Session, item: Item, source: Assessment, events: _Events, *, claimed: bool = False) -> Assessment:
    source_item = session.get(Item, source.item_id) if source.item_id is not None else None
    distance = (
        _distance(item.pdq, source_item.pdq) if item.pdq and source_item is not None and source_item.pdq else None
    )
    if not claimed:
        _claim(session, item, None, f"item {item.id}")
    row = Assessment(
        subject="item",
        item_id=item.id,
        assessor=source.assessor,
        assessed_at=utcnow(),
        outcome=source.outcome,
        category=source.category,
        age_band=source.age_band,
        sex=source.sex,
        children=source.children,
        flags=list(source.flags or ()),
        comment=f"inherited from assessment {source.id} of item {source.item_id} (PDQ distance {distance})",
        inherited_from=source.id,
        state="confirmed",
        confirmations=source.confirmations,
        decided_at=utcnow(),
    )
    session.add(row)
    session.flush()
    item.assessment_id = row.id
    item.state = "inherited"
    events.add(
        "assessment.inherit",
        "assessment",
        row.id,
        {**_findings(row), "source_item": source.item_id, "distance": distance},
    )
    return row


def inherit_if_known(
    session: Session, settings: Settings, actor: Principal, item: Item, *, indexes: MatchIndexes | None = None
) -> Assessment | None:
    """For a newly captured item (after it is linked to its case): inherit a known assessment, so the
    item is never queued for an analyst, and update its cases. None: it waits for an analyst."""
    if item.assessment_id is not None:
        return None
    source = find_inheritable(session, item, settings=settings, indexes=indexes)
    if source is None:
        return None
    events = _Events()
    row = _inherit(session, item, source, events)
    for case in cases_of(session, item):
        recompute_case(session, actor, case, events=events)
    stats_service.record_confirmed(session, settings, row)
    events.record(session, actor)
    return row


def _pass_on(
    session: Session, settings: Settings, source: Assessment, source_item: Item, events: _Events
) -> list[Item]:
    """A confirmed csam item's assessment, inherited by the near-identical items still waiting."""
    source_pdq = _usable_pdq(source_item, settings)
    if source_pdq is None:
        return []
    threshold = _pdq_threshold(session, settings)
    waiting = (
        session.connection()
        .execute(
            select(Item.id, Item.pdq, Item.md5, Item.sha1, Item.sha256)
            .where(
                Item.state == "to_grade",
                Item.assessment_id.is_(None),
                Item.pdq.is_not(None),
                _usable_quality(settings),
                Item.id != source_item.id,
            )
            .order_by(Item.id)
        )
        .all()
    )
    distances = _distances(source_pdq, [str(row[1]) for row in waiting])  # never NULL: filtered in the query
    done: list[Item] = []
    for index in np.nonzero(distances <= threshold)[0].tolist():
        item_id, _pdq, md5, sha1, sha256 = waiting[index]
        if sha256 != source_item.sha256 and (md5 == source_item.md5 or sha1 == source_item.sha1):
            continue  # a made collision (see find_inheritable)
        # Claim it only if it is still waiting (an analyst may be saving it this moment).
        claimed = session.execute(
            update(Item)
            .where(Item.id == item_id, Item.state == "to_grade", Item.assessment_id.is_(None))
            .values(version=Item.version + 1, state="inherited")
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        item = session.get(Item, item_id)
        assert item is not None
        session.refresh(item)
        _inherit(session, item, source, events, claimed=True)
        done.append(item)
    return done


# ---- QA -----------------------------------------------------------------------------------------


@dataclass
class QaResult:
    assessment: Assessment
    decision: QaDecision
    final: bool = False  # this confirmation made it final
    needed: int = 1
    hash_entries: int = 0  # entries added to or updated in the hash list
    url_entries: int = 0
    retracted: int = 0  # entries an earlier confirmed assessment had listed, retracted
    inherited: list[int] = field(default_factory=list)  # items that inherited it
    dispatched: str | None = None  # notice, referral or none (after_confirmation); None: not run
    authority_reports: list[str] = field(default_factory=list)  # drafts made or updated (seawall.reporting)


def audit_sampled(settings: Settings, assessment_id: int) -> bool:
    """Whether a confirmed assessment is in the QA audit sample: a keyed hash of its id below the
    configured share. Deterministic (tests know the answer), unpredictable without the instance key
    (an analyst cannot tell which of their assessments will be audited)."""
    share = settings.hotline_audit_share
    if share <= 0:
        return False
    if share >= 1:
        return True
    digest = hmac.new(
        settings.effective_secret_key().encode(), f"hotline-audit-sample:{assessment_id}".encode(), hashlib.sha256
    ).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def _pending_items(session: Session, case: Case) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Item)
            .join(CaseItem, CaseItem.item_id == Item.id)
            .join(Assessment, Assessment.id == Item.assessment_id)
            .where(CaseItem.case_id == case.id, Assessment.state == "submitted")
        )
        or 0
    )


def qa(
    session: Session, settings: Settings, actor: Principal, assessment_id: int, decision: str, comment: str
) -> QaResult:
    """A second person's check (the caller commits). ``confirm`` counts towards the confirmations
    needed, and the last one makes the assessment final with its actions; ``reject`` sends it back
    to its assessor and the item or case back to its queue."""
    if decision not in DECISIONS:
        raise AssessmentError(f"decision is confirm or reject (got {decision!r})")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise AssessmentError(f"the comment is longer than {MAX_COMMENT} characters")
    if decision == "reject" and not comment:
        raise AssessmentError("a rejection says why in its comment: the assessor reads it")
    row = get_assessment(session, assessment_id)
    me = who(actor)
    if row.assessor == me:
        raise Refused(f"you made assessment {row.id}: QA is another person's check")
    if row.state != "submitted":
        raise Conflict(f"assessment {row.id} is {row.state}: only a submitted assessment is checked")
    earlier = set(
        session.scalars(
            select(QaDecision.reviewer).where(QaDecision.assessment_id == row.id, QaDecision.decision == "confirm")
        )
    )
    if decision == "confirm" and me in earlier:
        raise Refused(f"you confirmed assessment {row.id} already: the next confirmation is another senior analyst's")
    if decision == "confirm":
        for name in (settings.hotline_hash_list, settings.hotline_url_list):
            if not actor.can_use_list(name):
                raise Refused(f"this key may not change list {name!r}, which a confirmation adds to")
    item = session.get(Item, row.item_id) if row.subject == "item" and row.item_id is not None else None
    case = session.get(Case, row.case_id) if row.subject == "case" and row.case_id is not None else None
    if decision == "confirm" and case is not None and row.derived:
        pending = _pending_items(session, case)
        if pending:
            raise Conflict(
                f"confirm the items' assessments first: {pending} of case {case.reference}'s items await QA "
                "(this assessment is derived from them)"
            )
    # The subject first (lock order), then the assessment, only if nobody decided meanwhile.
    subject = item if item is not None else case
    if subject is not None:
        _claim(session, subject, None, f"{row.subject} {subject.id}")
    now = utcnow()
    changes: dict[str, Any] = (
        {"confirmations": Assessment.confirmations + 1}
        if decision == "confirm"
        else {"state": "rejected", "decided_at": now}
    )
    moved = session.execute(
        update(Assessment)
        .where(Assessment.id == row.id, Assessment.state == "submitted", Assessment.confirmations == row.confirmations)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"assessment {row.id} was decided by someone else meanwhile: reload it; nothing was saved")
    session.refresh(row)
    qa_row = QaDecision(assessment_id=row.id, reviewer=me, decision=decision, comment=comment, decided_at=now)
    session.add(qa_row)
    session.flush()
    needed = settings.hotline_qa_confirmations
    result = QaResult(assessment=row, decision=qa_row, needed=needed)
    events = _Events()
    events.add(
        "assessment.qa",
        "assessment",
        row.id,
        {"decision": decision, "comment": comment, "confirmations": row.confirmations, "needed": needed},
    )
    if decision == "confirm" and row.confirmations >= needed:
        _finalise(session, settings, actor, row, item, case, result, events)
    elif decision == "reject":
        _rejected(session, actor, row, item, case, events)
    events.record(session, actor)
    session.flush()
    return result


def _rejected(
    session: Session, actor: Principal, row: Assessment, item: Item | None, case: Case | None, events: _Events
) -> None:
    if item is not None:
        _settle_item(session, item)
        for other in cases_of(session, item):
            recompute_case(session, actor, other, events=events)
    if case is not None:
        if case.state == "assessed" and current_case_assessment(session, case) is None:
            case.state = _queue_state(session, case)
        case.updated_at = utcnow()


def _finalise(
    session: Session,
    settings: Settings,
    actor: Principal,
    row: Assessment,
    item: Item | None,
    case: Case | None,
    result: QaResult,
    events: _Events,
) -> None:
    """The last confirmation: the assessment is in force; its lists, heirs and notice follow."""
    now = utcnow()
    row.state = "confirmed"
    row.decided_at = now
    row.audit_sample = audit_sampled(settings, row.id)
    result.final = True
    earlier = list(
        session.scalars(
            select(Assessment).where(
                Assessment.id != row.id,
                Assessment.state == "confirmed",
                *(
                    (Assessment.subject == "item", Assessment.item_id == row.item_id)
                    if item is not None
                    else (Assessment.subject == "case", Assessment.case_id == row.case_id)
                ),
            )
        )
    )
    for old in earlier:
        old.state = "superseded"
    heirs: list[Item] = []
    if item is not None:
        _settle_item(session, item)
        if row.outcome == "csam":
            heirs = _pass_on(session, settings, row, item, events)
            result.inherited = [h.id for h in heirs]
        touched = {c.id: c for i in [item, *heirs] for c in cases_of(session, i)}
        for other in touched.values():
            recompute_case(session, actor, other, events=events)
    stats_service.record_confirmed(session, settings, row, *(h.assessment_id for h in heirs))
    provenance = _provenance(session, row, item, case)
    if item is not None:
        added, retracted = _sync_item_entries(session, settings, row, item, provenance)
        result.hash_entries, result.retracted = added, retracted
    if case is not None:
        added, retracted = _sync_case_entries(session, settings, row, case, provenance)
        result.url_entries, result.retracted = added, retracted
        case.updated_at = now
        if row.outcome == "csam" and case.state in _BEFORE_CONFIRMATION:
            case.state = "confirmed"
            case.closed_at = None
            from seawall.hotline import actions

            result.dispatched = actions.after_confirmation(session, settings, actor, case)
        elif row.outcome != "csam" and case.state in ("open", "captured", "assessed"):
            case.state = "closed"
            case.closed_at = now
    if row.outcome == "csam":
        # Authority report drafts (rows only: anything sent goes through the task queue after commit).
        from seawall.reporting import service as reporting

        drafted = reporting.draft_from_decision(
            session,
            settings,
            actor,
            row,
            [case] if case is not None else cases_of(session, item),  # type: ignore[arg-type]
        )
        result.authority_reports = [r.reference for r in drafted.reports]
    events.add(
        "assessment.confirm",
        "assessment",
        row.id,
        {
            **_findings(row),
            "superseded": [o.id for o in earlier],
            "audit_sample": row.audit_sample,
            "hash_entries": result.hash_entries,
            "url_entries": result.url_entries,
            "retracted": result.retracted,
            "inherited_by": result.inherited,
            "dispatched": result.dispatched,
        },
    )


# ---- list additions -----------------------------------------------------------------------------


def url_value(case: Case, level: str) -> str:
    """What the URL list holds for a case's URL at ``level``: the URL, the URL without its query
    (everything under it), or its host."""
    from seawall.lists.urls import normalize_entry, parse_url

    if case.url is None:
        raise ValueError(f"case {case.reference} has no URL")
    parsed = parse_url(case.url)
    value = {"exact": parsed.url(), "prefix": parsed._replace(query="").url(), "domain": parsed.host}[level]
    return normalize_entry(value, level)


def _labels(row: Assessment) -> tuple[str, ...]:
    labels = [*(row.flags or ())]
    if row.age_band:
        labels.append(f"age:{row.age_band}")
    industry = classification.industry(row.outcome, row.category, row.age_band)
    if industry:
        labels.append(f"industry:{industry}")
    return tuple(sorted(labels))


def _pseudonym(session: Session, recorded: str) -> str:
    """A person as a list entry names them: ``user#7``, never their login name (partners read entries)."""
    kind, _, name = recorded.partition(":")
    if kind == "user":
        found = session.scalar(select(User.id).where(User.username == name))
    elif kind == "key":
        found = session.scalar(select(ApiKey.id).where(ApiKey.name == name))
    else:
        return kind
    return f"{kind}#{found}" if found is not None else kind


def _provenance(session: Session, row: Assessment, item: Item | None, case: Case | None) -> str:
    cases = [case] if case is not None else (cases_of(session, item) if item is not None else [])
    refs: list[str] = []
    for c in cases[:5]:
        report = session.scalar(select(Report.reference).where(Report.case_id == c.id).order_by(Report.id).limit(1))
        refs.append(f"case {c.reference}" + (f" (report {report})" if report else ""))
    reviewers = session.scalars(
        select(QaDecision.reviewer)
        .where(QaDecision.assessment_id == row.id, QaDecision.decision == "confirm")
        .order_by(QaDecision.id)
    ).all()
    qa_by = ", ".join(_pseudonym(session, r) for r in reviewers)
    return (
        f"hotline assessment {row.id}; {'; '.join(refs) or 'no case'}; assessed by "
        f"{_pseudonym(session, row.assessor)}; QA by {qa_by}"
    )


def _hotline_list(session: Session, name: str, kind: str) -> HashList:
    """The hotline's list, created by the system on first use (a concurrent creator wins, we use its list)."""
    try:
        found = lists_service.get_list(session, name)
    except lists_service.ListNotFound:
        try:
            with session.begin_nested():
                found = lists_service.create_list(
                    session,
                    SYSTEM,
                    name=name,
                    kind=kind,
                    description="what the hotline's analysts confirmed (assessed and QA-checked)",
                    source=_HASH_SOURCE,
                )
        except IntegrityError:
            found = lists_service.get_list(session, name)
    if found.kind != kind or found.allowlist:
        raise Conflict(f"list {name!r} is not a {kind} list the hotline can add to: check the hotline list settings")
    return found


def _sync(
    session: Session,
    hash_list: HashList,
    external_id: str,
    wanted: list[EntryRecord],
    possible: list[tuple[str, str]],
    reason: str,
) -> tuple[int, int]:
    """This subject's entries made to be ``wanted``: added or updated, and its other active entries
    among ``possible`` (type, value) retracted. Entries are the subject's own by ``external_id``."""
    added = 0
    if wanted:
        done = lists_service.add_entries(
            session, SYSTEM, hash_list, wanted, description=f"hotline confirmation ({external_id})"
        )
        added = done.added + done.updated + done.unchanged
    keep = {(r.signal_type, r.value) for r in wanted}  # values as stored: already normalised
    gone = [(t, v) for t, v in dict.fromkeys(possible) if (t, v) not in keep]
    stale = [
        entry
        for t, v in gone
        for entry in session.scalars(
            select(Entry).where(
                Entry.list_id == hash_list.id,
                Entry.signal_type == t,
                Entry.value == v,
                Entry.external_id == external_id,
                Entry.status == "active",
            )
        )
    ]
    retracted = lists_service.set_status(session, SYSTEM, stale, "retracted", reason=reason) if stale else 0
    return added, retracted


def _sync_item_entries(
    session: Session, settings: Settings, row: Assessment, item: Item, provenance: str
) -> tuple[int, int]:
    signals = [("md5", item.md5), ("sha1", item.sha1), ("sha256", item.sha256)]
    usable = _usable_pdq(item, settings)
    if usable is not None:
        signals.append(("pdq", usable))
    wanted = (
        [
            EntryRecord(
                signal_type=t,
                value=v,
                category=row.category,
                labels=_labels(row),
                source=_HASH_SOURCE,
                external_id=f"hotline-item:{item.id}",
                note=provenance,
                # The trimmed picture's PDQ goes with the PDQ entry (matched as it, retired with it).
                trimmed_value=item.pdq_trimmed if t == "pdq" else None,
                trimmed_box=tuple(item.pdq_trimmed_box) if t == "pdq" and item.pdq_trimmed_box else None,  # type: ignore[arg-type]
            )
            for t, v in signals
        ]
        if row.outcome == "csam"
        else []
    )
    if not wanted and not _listed_before(session, settings.hotline_hash_list):
        return 0, 0
    hash_list = _hotline_list(session, settings.hotline_hash_list, "hash")
    possible = [*signals, ("pdq", item.pdq)] if item.pdq is not None else signals
    return _sync(session, hash_list, f"hotline-item:{item.id}", wanted, possible, f"assessment {row.id}: {row.outcome}")


def _sync_case_entries(
    session: Session, settings: Settings, row: Assessment, case: Case, provenance: str
) -> tuple[int, int]:
    if case.url is None:
        return 0, 0
    wanted = (
        [
            EntryRecord(
                signal_type="url",
                value=url_value(case, row.url_level or "exact"),
                level=row.url_level or "exact",
                category=row.category,
                labels=_labels(row),
                source=_HASH_SOURCE,
                external_id=f"hotline-case:{case.reference}",
                note=provenance,
            )
        ]
        if row.outcome == "csam"
        else []
    )
    if not wanted and not _listed_before(session, settings.hotline_url_list):
        return 0, 0
    url_list = _hotline_list(session, settings.hotline_url_list, "url")
    possible: list[tuple[str, str]] = []
    for level in URL_LEVELS:
        try:
            possible.append(("url", url_value(case, level)))
        except ValueError:
            continue
    return _sync(
        session, url_list, f"hotline-case:{case.reference}", wanted, possible, f"assessment {row.id}: {row.outcome}"
    )


def _listed_before(session: Session, name: str) -> bool:
    return session.scalar(select(HashList.id).where(HashList.name == name, HashList.deleted_at.is_(None))) is not None


# ---- reading ------------------------------------------------------------------------------------


def may_read(principal: Principal) -> bool:
    """Cases and assessments are for the hotline's people: console users with ``reports:read``, and
    keys that also review, check or administer. A partner's key reads only its own reports."""
    if not principal.can("reports:read"):
        return False
    if principal.kind in ("user", "cli", "system"):
        return True
    return any(principal.can(s) for s in ("review", "qa", "admin"))


def qa_decisions(session: Session, assessment_ids: Sequence[int]) -> dict[int, list[QaDecision]]:
    out: dict[int, list[QaDecision]] = {}
    if not assessment_ids:
        return out
    for decision in session.scalars(
        select(QaDecision).where(QaDecision.assessment_id.in_(list(assessment_ids))).order_by(QaDecision.id)
    ):
        out.setdefault(decision.assessment_id, []).append(decision)
    return out


@dataclass
class CaseDetail:
    case: Case
    reports: list[Report]
    items: list[tuple[Item, CaseItem]]
    assessments: list[Assessment]  # the case's and its items', oldest first
    current: Assessment | None
    qa: dict[int, list[QaDecision]]


def case_detail(session: Session, case: Case) -> CaseDetail:
    reports = list(session.scalars(select(Report).where(Report.case_id == case.id).order_by(Report.id)))
    items = [
        (i, ci)
        for i, ci in session.execute(
            select(Item, CaseItem)
            .join(CaseItem, CaseItem.item_id == Item.id)
            .where(CaseItem.case_id == case.id)
            .order_by(CaseItem.id)
        ).all()
    ]
    item_ids = [i.id for i, _ in items]
    assessments = list(
        session.scalars(
            select(Assessment)
            .where(
                (Assessment.case_id == case.id)
                | (Assessment.item_id.in_(item_ids) if item_ids else Assessment.id.is_(None))
            )
            .order_by(Assessment.id)
        )
    )
    return CaseDetail(
        case=case,
        reports=reports,
        items=items,
        assessments=assessments,
        current=current_case_assessment(session, case),
        qa=qa_decisions(session, [a.id for a in assessments]),
    )


def list_assessments(
    session: Session,
    *,
    state: str | None = None,
    subject: str | None = None,
    assessor: str | None = None,
    sample: bool | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Assessment]:
    """Assessments, oldest first (a queue): e.g. ``state="submitted"`` for QA, ``rejected`` with an
    assessor for the work sent back to them, ``sample=True`` for the audit."""
    query = select(Assessment).order_by(Assessment.id).limit(limit)
    if state:
        query = query.where(Assessment.state == state)
    if subject:
        query = query.where(Assessment.subject == subject)
    if assessor:
        query = query.where(Assessment.assessor == assessor)
    if sample is not None:
        query = query.where(Assessment.audit_sample.is_(sample))
    if since is not None:
        query = query.where(Assessment.assessed_at >= since)
    return list(session.scalars(query))


def case_references(session: Session, assessments: Sequence[Assessment]) -> dict[int, str]:
    """Case references of the case assessments among ``assessments`` (by case id)."""
    ids = {a.case_id for a in assessments if a.case_id is not None}
    if not ids:
        return {}
    return {cid: ref for cid, ref in session.execute(select(Case.id, Case.reference).where(Case.id.in_(ids))).all()}
