"""Console pages for authority reports: the list (overdue ones marked), one report with its facts,
files by hash (never media) and IP events, and the forms that approve, retract or cancel it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from seawall.auth.models import User
from seawall.config import Settings
from seawall.reporting import cybertipline, service
from seawall.reporting.models import REPORT_STATES
from seawall.web.app import render
from seawall.web.deps import console_form, console_require, get_db

router = APIRouter(include_in_schema=False)


@router.get("/authority-reports")
def reports_page(
    request: Request,
    state: str = "",
    db: Session = Depends(get_db),
    _: User = Depends(console_require("reports:read")),
) -> Response:
    rows = [service.summary(db, r) for r in service.listing(db, state=state or None, limit=200)]
    return render(
        request, "reporting/list.html", page="authority-reports", rows=rows, state=state, states=REPORT_STATES
    )


@router.get("/authority-reports/{reference}")
def report_page(
    reference: str,
    request: Request,
    db: Session = Depends(get_db),
    _: User = Depends(console_require("reports:read")),
) -> Response:
    try:
        row = service.get(db, reference)
    except service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    may_act = request.state.principal.can("qa")
    return render(
        request, "reporting/detail.html", page="authority-reports", report=service.summary(db, row), may_act=may_act
    )


def _back(reference: str) -> Response:
    return RedirectResponse(f"/authority-reports/{reference}", status_code=303)


@router.post("/authority-reports/{reference}/submit")
def submit_form(
    reference: str,
    request: Request,
    user: User = Depends(console_form("qa")),
    db: Session = Depends(get_db),
) -> Response:
    settings: Settings = request.app.state.settings
    try:
        service.approve(db, settings, request.state.principal, service.get(db, reference))
    except service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (service.ReportingError, service.Conflict) as exc:
        raise HTTPException(409, str(exc)) from None
    db.commit()
    return _back(reference)


def _ask_ncmec(request: Request, db: Session, reference: str, action: str) -> Response:
    """Retract or cancel at NCMEC. The login check's session ends its transaction first: on SQLite it
    holds the write lock, which the service's own short transactions need; NCMEC is asked outside any."""
    db.commit()
    act = service.retract if action == "retract" else service.cancel
    try:
        act(request.app.state.sessionmaker, request.app.state.settings, request.state.principal, reference)
    except service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (service.ReportingError, service.Conflict, cybertipline.CyberTiplineError) as exc:
        raise HTTPException(409, str(exc)) from None
    return _back(reference)


@router.post("/authority-reports/{reference}/retract")
def retract_form(
    reference: str, request: Request, user: User = Depends(console_form("qa")), db: Session = Depends(get_db)
) -> Response:
    return _ask_ncmec(request, db, reference, "retract")


@router.post("/authority-reports/{reference}/cancel")
def cancel_form(
    reference: str, request: Request, user: User = Depends(console_form("qa")), db: Session = Depends(get_db)
) -> Response:
    return _ask_ncmec(request, db, reference, "cancel")
