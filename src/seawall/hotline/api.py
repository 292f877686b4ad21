"""Routes of the hotline API under /v1: reports (intake); hosts (tracing)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline import intake, tracing
from seawall.hotline.models import Case, Host
from seawall.hotline.schemas import (
    HostList,
    HostOut,
    ReportBatch,
    ReportBatchItem,
    ReportBatchOut,
    ReportCreate,
    ReportCreated,
    ReportOut,
)
from seawall.web.deps import get_db, require

router = APIRouter(prefix="/v1", tags=["hotline"])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _report_in(body: ReportCreate) -> intake.ReportIn:
    return intake.ReportIn(
        channel="partner",
        url=body.url,
        content_type=body.content_type,
        site_type=body.site_type,
        description=body.description,
        external_id=body.external_id,
        urgent=body.urgent,
        signals=[(s.signal_type, s.value) for s in body.signals],
    )


@router.post("/reports", response_model=ReportCreated, status_code=201, summary="Report a URL or hashes")
def create_report(
    body: ReportCreate,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("reports:write")),
) -> JSONResponse:
    try:
        done = intake.submit(
            db, _settings(request), principal, _report_in(body), partner=intake.partner_name(principal)
        )
    except intake.IntakeError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    out = ReportCreated(reference=done.report.reference, pin=done.pin, status=intake.public_status(done.case))
    return JSONResponse(out.model_dump(), status_code=201 if done.created else 200)


@router.post("/reports/batch", response_model=ReportBatchOut, summary="Report up to 1000 URLs or hash sets")
def create_reports(
    body: ReportBatch,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("reports:write")),
) -> ReportBatchOut:
    """Each report is taken on its own: a bad one is answered with its error, the others are kept."""
    settings, partner = _settings(request), intake.partner_name(principal)
    results: list[ReportBatchItem] = []
    for item in body.reports:
        try:
            with db.begin_nested():
                done = intake.submit(db, settings, principal, _report_in(item), partner=partner)
        except intake.IntakeError as exc:
            results.append(ReportBatchItem(error=str(exc)))
            continue
        results.append(
            ReportBatchItem(reference=done.report.reference, pin=done.pin, status=intake.public_status(done.case))
        )
    db.commit()
    return ReportBatchOut(results=results)


@router.get("/reports/{reference}", response_model=ReportOut, summary="A report you filed")
def show_report(
    reference: str, db: Session = Depends(get_db), principal: Principal = Depends(require("reports:write"))
) -> ReportOut:
    row = intake.report_for(db, principal, reference)
    if row is None:
        raise HTTPException(404, f"no report {reference!r} of yours")
    case = db.get(Case, row.case_id) if row.case_id is not None else None
    return ReportOut(
        reference=row.reference,
        status="withdrawn" if row.withdrawn_at is not None else intake.public_status(case),
        channel=row.channel,
        url=row.url,
        content_type=row.content_type,
        site_type=row.site_type,
        external_id=row.external_id,
        reported_at=row.reported_at,
        case=case.reference if case is not None else None,
    )


# ---- tracing: the abuse-contact directory (admin) ----


@router.get("/hosts", response_model=HostList, summary="The abuse-contact directory and cached RDAP answers")
def list_hosts(
    source: str | None = Query(None, pattern="^(import|rdap|manual)$"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("admin")),
) -> HostList:
    hosts = tracing.list_hosts(db, source=source, limit=limit, offset=offset)
    return HostList(hosts=[HostOut.model_validate(h, from_attributes=True) for h in hosts])


@router.get("/hosts/{host_id}", response_model=HostOut, summary="One abuse contact")
def show_host(host_id: int, db: Session = Depends(get_db), principal: Principal = Depends(require("admin"))) -> HostOut:
    host = db.get(Host, host_id)
    if host is None:
        raise HTTPException(404, f"no host {host_id}")
    return HostOut.model_validate(host, from_attributes=True)
