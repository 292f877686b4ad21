"""Console pages for the hotline's casework: find a report or case by reference, URL or hash, and a
case's timeline from report to removal (report → capture → assessment → QA → notice → re-checks →
removed). Read-only: the actions have their own pages and API routes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth.models import User
from seawall.hotline import assessment, intake
from seawall.hotline.models import Capture, Case, CaseItem, Item, Notice, Report, ReportSignal
from seawall.lists.urls import normalize_url
from seawall.web.app import render
from seawall.web.deps import console_require, get_db

router = APIRouter(include_in_schema=False)
FOUND = 50
_REFERENCE = re.compile(r"[RC]-[0-9A-Z-]{3,18}", re.IGNORECASE)
_HEX = re.compile(r"[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}")


def find_cases(session: Session, q: str) -> tuple[str, list[Case]]:
    """Cases for a search: by reference (a report's gives its case), by URL (normalised, as intake
    keys cases), or by a hash of an item in the case or of a report's uploaded hashes. Returns what
    the query was taken as, and the cases newest first."""
    q = q.strip()
    if _REFERENCE.fullmatch(q):
        try:
            return "reference", [assessment.find_case(session, q)]
        except assessment.NotFound:
            return "reference", []
    value = q.lower()
    if _HEX.fullmatch(value):
        columns = {32: Item.md5, 40: Item.sha1}.get(len(value))
        condition = columns == value if columns is not None else (Item.sha256 == value) | (Item.pdq == value)
        by_item = select(CaseItem.case_id).join(Item, Item.id == CaseItem.item_id).where(condition)
        by_report = (
            select(Report.case_id)
            .join(ReportSignal, ReportSignal.report_id == Report.id)
            .where(ReportSignal.value == value)
        )
        ids = set(session.scalars(by_item.limit(FOUND))) | {i for i in session.scalars(by_report.limit(FOUND)) if i}
        cases = list(session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id.desc()))) if ids else []
        return "hash", cases
    try:
        key = normalize_url(q if "://" in q else "http://" + q)
    except ValueError:
        return "text", []
    found = session.scalars(
        select(Case)
        .where(Case.url_hash == intake.url_hash(key), Case.url_key == key)
        .order_by(Case.id.desc())
        .limit(FOUND)
    )
    return "url", list(found)


@dataclass
class Step:
    """One event on a case's timeline."""

    at: datetime
    kind: str  # report, capture, assessment, qa, notice, recheck, removed, closed
    title: str
    detail: str = ""


def timeline(session: Session, case: Case) -> tuple[assessment.CaseDetail, list[Step], list[Notice]]:
    detail = assessment.case_detail(session, case)
    steps: list[Step] = []
    for report in detail.reports:
        urgent = " · urgent" if report.urgent else ""
        steps.append(
            Step(report.reported_at, "report", f"Report {report.reference} received", f"by {report.channel}{urgent}")
        )
    captures = list(session.scalars(select(Capture).where(Capture.case_id == case.id).order_by(Capture.id)))
    for c in captures:
        kind = "recheck" if c.purpose == "recheck" else "capture"
        what = "Re-check" if c.purpose == "recheck" else "Capture"
        outcome = {"done": f"{c.media_found} media found", "gone": "the content is gone", "failed": c.error or "failed"}
        status = f"HTTP {c.http_status}; " if c.http_status else ""
        steps.append(
            Step(c.finished_at or c.started_at, kind, f"{what} {c.state}", status + outcome.get(c.state, "running"))
        )
    for a in detail.assessments:
        subject = f"item {a.item_id}" if a.subject == "item" else "the URL"
        findings = a.outcome.replace("_", " ") + (f", category {a.category}" if a.category else "")
        steps.append(
            Step(a.assessed_at, "assessment", f"Assessment of {subject}: {findings}", f"by {a.assessor} · {a.state}")
        )
        for decision in detail.qa.get(a.id, []):
            steps.append(
                Step(
                    decision.decided_at,
                    "qa",
                    f"QA {decision.decision}ed assessment {a.id}",
                    f"by {decision.reviewer}. {decision.comment}".strip(),
                )
            )
    notices = list(session.scalars(select(Notice).where(Notice.case_id == case.id).order_by(Notice.id)))
    for n in notices:
        steps.append(Step(n.created_at, "notice", f"Notice {n.id} to the host ({n.channel})", f"state {n.state}"))
        if n.sent_at:
            steps.append(Step(n.sent_at, "notice", f"Notice {n.id} sent", f"{n.checks} re-checks so far"))
        if n.removed_at:
            hours = f" after {n.takedown_seconds / 3600:.1f} h" if n.takedown_seconds is not None else ""
            steps.append(Step(n.removed_at, "removed", "Content removed", f"found gone{hours}"))
    if case.closed_at:
        steps.append(Step(case.closed_at, "closed", "Case closed", case.state))
    steps.sort(key=lambda s: s.at)
    return detail, steps, notices


@router.get("/cases")
def cases_page(
    request: Request,
    q: str = Query("", max_length=2048),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("reports:read")),
) -> Response:
    taken_as, cases = find_cases(db, q) if q.strip() else ("", [])
    recent: list[Any] = [] if q.strip() else intake.list_reports(db, limit=25)
    return render(request, "operator/cases.html", page="cases", q=q, taken_as=taken_as, cases=cases, recent=recent)


@router.get("/cases/{reference}")
def case_page(
    reference: str, request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("reports:read"))
) -> Response:
    try:
        case = assessment.find_case(db, reference)
    except assessment.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    detail, steps, notices = timeline(db, case)
    return render(request, "operator/case.html", page="cases", case=case, detail=detail, steps=steps, notices=notices)
