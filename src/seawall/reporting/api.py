"""Routes of authority reporting under /v1: drafts, platform facts, submission, retraction and
cancellation, the NCA
pack, stored credentials and legal holds. Thin: parse, authorise, call the service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline.intake import partner_name
from seawall.reporting import cybertipline, retention, service
from seawall.reporting.models import AuthorityReport
from seawall.reporting.schemas import CredentialsIn, FactsAdd, HoldCreate, ReportCreate
from seawall.web.deps import get_db, get_read_db, require

router = APIRouter(prefix="/v1", tags=["authority reports"])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _get(db: Session, reference: str) -> AuthorityReport:
    try:
        return service.get(db, reference)
    except service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None


def _errors(exc: Exception) -> HTTPException:
    if isinstance(exc, service.NotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, service.Conflict):
        return HTTPException(409, str(exc))
    if isinstance(exc, cybertipline.CyberTiplineError):
        return HTTPException(502, str(exc))
    return HTTPException(422, str(exc))


@router.get("/authority-reports", summary="Authority reports (drafts, submissions, filed)")
def list_reports(
    state: str | None = Query(None, max_length=16),
    limit: int = Query(100, ge=1, le=1000),
    db: Session = Depends(get_read_db),
    principal: Principal = Depends(require("reports:read")),
) -> dict[str, Any]:
    return {"reports": [service.summary(db, r) for r in service.listing(db, state=state, limit=limit)]}


@router.post("/authority-reports", status_code=201, summary="A platform's authority report draft")
def create_report(
    body: ReportCreate,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("reports:write")),
) -> JSONResponse:
    try:
        row, created = service.create_from_api(
            db,
            _settings(request),
            principal,
            owner=partner_name(principal),
            authority=body.authority,
            external_id=body.external_id,
            facts=body.facts.as_facts(),
            files=[f.as_file() for f in body.files],
            events=[e.as_event() for e in body.ip_events],
            priority=body.priority,
        )
    except (service.ReportingError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return JSONResponse(service.summary(db, row), status_code=201 if created else 200)


@router.get("/authority-reports/{reference}", summary="One authority report")
def show_report(
    reference: str, db: Session = Depends(get_read_db), principal: Principal = Depends(require("reports:read"))
) -> dict[str, Any]:
    return service.summary(db, _get(db, reference))


@router.post("/authority-reports/{reference}/facts", summary="Add what the platform knows to a draft")
def add_facts(
    reference: str,
    body: FactsAdd,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("reports:write")),
) -> dict[str, Any]:
    row = _get(db, reference)
    if not service.may_act_on(principal, row):
        raise HTTPException(404, f"no authority report {reference!r}")  # never reveal another's draft
    try:
        service.add_facts(
            db,
            principal,
            row,
            facts=body.facts.as_facts(),
            files=[f.as_file() for f in body.files],
            events=[e.as_event() for e in body.ip_events],
            priority=body.priority,
        )
    except (service.ReportingError, service.Conflict, ValueError) as exc:
        raise _errors(exc) from None
    db.commit()
    return service.summary(db, row)


@router.post("/authority-reports/{reference}/submit", summary="Approve a draft: it is submitted by the worker")
def submit_report(
    reference: str, request: Request, db: Session = Depends(get_db), principal: Principal = Depends(require("qa"))
) -> dict[str, Any]:
    row = _get(db, reference)
    try:
        service.approve(db, _settings(request), principal, row)
    except (service.ReportingError, service.Conflict) as exc:
        raise _errors(exc) from None
    db.commit()
    return service.summary(db, row)


@router.post("/authority-reports/{reference}/retract", summary="Withdraw a report not yet filed")
def retract_report(reference: str, request: Request, principal: Principal = Depends(require("qa"))) -> dict[str, Any]:
    factory = request.app.state.sessionmaker
    try:
        row = service.retract(factory, _settings(request), principal, reference)
    except (service.ReportingError, service.Conflict, service.NotFound, cybertipline.CyberTiplineError) as exc:
        raise _errors(exc) from None
    with factory() as db:
        return service.summary(db, db.get_one(AuthorityReport, row.id))


@router.post("/authority-reports/{reference}/cancel", summary="Cancel a report NCMEC holds unfinished")
def cancel_report(reference: str, request: Request, principal: Principal = Depends(require("qa"))) -> dict[str, Any]:
    factory = request.app.state.sessionmaker
    try:  # NCMEC is asked outside any transaction (the service opens its own, briefly)
        row = service.cancel(factory, _settings(request), principal, reference)
    except (service.ReportingError, service.Conflict, service.NotFound, cybertipline.CyberTiplineError) as exc:
        raise _errors(exc) from None
    with factory() as db:
        return service.summary(db, db.get_one(AuthorityReport, row.id))


@router.get("/authority-reports/{reference}/nca-pack", summary="The NCA report pack (JSON, for the portal)")
def nca_pack(
    reference: str, request: Request, db: Session = Depends(get_db), principal: Principal = Depends(require("qa"))
) -> dict[str, Any]:
    row = _get(db, reference)
    document = service.export_pack(db, _settings(request), principal, row)
    db.commit()
    return document


@router.put("/authority-credentials/{authority}", status_code=204, summary="Store an authority's login (encrypted)")
def put_credentials(
    authority: str,
    body: CredentialsIn,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("admin")),
) -> None:
    try:
        service.set_credentials(db, _settings(request), principal, authority, body.username, body.password)
    except service.ReportingError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()


@router.get("/legal-holds", summary="Legal holds in force")
def list_holds(db: Session = Depends(get_read_db), principal: Principal = Depends(require("admin"))) -> dict[str, Any]:
    return {
        "holds": [
            {"id": h.id, "case_id": h.case_id, "reason": h.reason, "by": h.created_by, "at": h.created_at.isoformat()}
            for h in retention.holds(db)
        ]
    }


@router.post("/legal-holds", status_code=201, summary="Place a legal hold on a case")
def place_hold(
    body: HoldCreate, db: Session = Depends(get_db), principal: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    try:
        hold = retention.place_hold(db, principal, body.case, body.reason)
    except (service.ReportingError, service.NotFound) as exc:
        raise _errors(exc) from None
    db.commit()
    return {"id": hold.id, "case_id": hold.case_id}


@router.post("/legal-holds/{hold_id}/release", summary="Release a legal hold")
def release_hold(
    hold_id: int, db: Session = Depends(get_db), principal: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    try:
        hold = retention.release_hold(db, principal, hold_id)
    except service.NotFound as exc:
        raise _errors(exc) from None
    db.commit()
    return {"id": hold.id, "released_at": hold.released_at.isoformat() if hold.released_at else None}
