"""Routes of the hotline API under /v1: reports (intake), hosts (tracing), referrals and partner hotlines."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline import intake, partners, referrals, signing, tracing
from seawall.hotline.models import Case, Host
from seawall.hotline.schemas import (
    HostList,
    HostOut,
    PartnerCreate,
    PartnerCreated,
    PartnerOut,
    PartnerUpdate,
    PublicKeyOut,
    ReferralAccepted,
    ReferralOut,
    ReferralStatusOut,
    ReportBatch,
    ReportBatchItem,
    ReportBatchOut,
    ReportCreate,
    ReportCreated,
    ReportOut,
    SignedDocument,
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


# ---- referrals: partner hotlines' documents in, the partner directory (admin) ------------------


def _refused(exc: referrals.ReferralRefused) -> JSONResponse:
    body: dict[str, str] = {"detail": exc.message}
    if exc.reference is not None:
        body["reference"] = exc.reference
    return JSONResponse(body, status_code=exc.status)


@router.post(
    "/referrals",
    response_model=ReferralAccepted,
    status_code=201,
    tags=["referrals"],
    summary="Receive a partner hotline's signed referral (it becomes a report here)",
    responses={409: {"description": "This referral was received already (its reference, if the same)"}},
)
def receive_referral(
    body: SignedDocument,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("referrals:write")),
) -> JSONResponse:
    try:
        received = referrals.receive(db, _settings(request), principal, body.document, body.signature)
    except referrals.ReferralRefused as exc:
        db.rollback()
        return _refused(exc)
    db.commit()
    return JSONResponse(ReferralAccepted(reference=received.report.reference, status="received").model_dump(), 201)


@router.post(
    "/referrals/{uid}/status",
    response_model=ReferralStatusOut,
    tags=["referrals"],
    summary="Receive a partner hotline's signed status update of a referral we sent it",
)
def receive_referral_status(
    uid: str,
    body: SignedDocument,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("referrals:write")),
) -> JSONResponse:
    try:
        referral = referrals.receive_status(db, _settings(request), principal, uid, body.document, body.signature)
    except referrals.ReferralRefused as exc:
        db.rollback()
        return _refused(exc)
    db.commit()
    return JSONResponse(ReferralStatusOut(referral=referral.uid, state=referral.state).model_dump())


@router.get("/referrals", response_model=list[ReferralOut], tags=["referrals"], summary="Referrals, newest first")
def list_referrals(
    direction: str | None = None,
    state: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    db: Session = Depends(get_db),
    _: Principal = Depends(require("reports:read")),
) -> list[ReferralOut]:
    return [
        ReferralOut(
            uid=r.uid,
            direction=r.direction,
            kind=r.kind,
            partner=p.name if p is not None else None,
            case=c.reference if c is not None else None,
            state=r.state,
            remote_id=r.remote_id,
            attempts=r.attempts,
            last_error=r.last_error,
            created_at=r.created_at,
            sent_at=r.sent_at,
            updated_at=r.updated_at,
        )
        for r, p, c in referrals.list_referrals(db, direction=direction, state=state, limit=limit)
    ]


@router.get("/referrals/key", response_model=PublicKeyOut, tags=["referrals"], summary="Our public signing key")
def referral_key(request: Request, _: Principal = Depends(require("admin"))) -> PublicKeyOut:
    public = signing.public_key_text(_settings(request))
    return PublicKeyOut(public_key=public, fingerprint=signing.fingerprint(public))


@router.get("/partners", response_model=list[PartnerOut], tags=["referrals"], summary="Partner hotlines")
def list_partners(db: Session = Depends(get_db), _: Principal = Depends(require("admin"))) -> list[PartnerOut]:
    return [PartnerOut(**partners.describe(p)) for p in partners.list_partners(db)]


@router.post("/partners", response_model=PartnerCreated, status_code=201, tags=["referrals"], summary="Add a partner")
def create_partner(
    body: PartnerCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
) -> PartnerCreated:
    try:
        new = partners.create_partner(db, _settings(request), actor, **body.model_dump())
    except partners.PartnerConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except partners.PartnerError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return PartnerCreated(**partners.describe(new.partner), issued_key=new.issued_key)


@router.get("/partners/{name}", response_model=PartnerOut, tags=["referrals"], summary="A partner hotline")
def show_partner(name: str, db: Session = Depends(get_db), _: Principal = Depends(require("admin"))) -> PartnerOut:
    try:
        return PartnerOut(**partners.describe(partners.get_partner(db, name)))
    except partners.PartnerNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.patch("/partners/{name}", response_model=PartnerOut, tags=["referrals"], summary="Change a partner")
def update_partner(
    name: str,
    body: PartnerUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
) -> PartnerOut:
    try:
        partner = partners.update_partner(
            db, _settings(request), actor, name, **body.model_dump(include=body.model_fields_set)
        )
    except partners.PartnerNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except partners.PartnerConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except partners.PartnerError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return PartnerOut(**partners.describe(partner))


@router.delete("/partners/{name}", response_model=PartnerOut, tags=["referrals"], summary="Remove a partner")
def remove_partner(
    name: str, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))
) -> PartnerOut:
    try:
        partner = partners.remove_partner(db, actor, name)
    except partners.PartnerNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    out = PartnerOut(**partners.describe(partner))
    db.commit()
    return out


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
