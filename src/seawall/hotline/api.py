"""Routes of the hotline API under /v1: reports (intake), hosts (tracing), assessment and QA, notices
to hosts, referrals and partner hotlines."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline import assessment, classification, intake, notices, partners, referrals, signing, tracing
from seawall.hotline.models import ASSESSMENT_STATES, Assessment, Case, Host, QaDecision
from seawall.hotline.schemas import (
    AssessmentCreate,
    AssessmentOut,
    AssessmentSaved,
    CaseItemOut,
    CaseOut,
    CaseReportOut,
    ClassificationOut,
    HostList,
    HostOut,
    NoticeClose,
    NoticeDetail,
    NoticeOut,
    PartnerCreate,
    PartnerCreated,
    PartnerOut,
    PartnerUpdate,
    PublicKeyOut,
    QaCreate,
    QaOut,
    QaResultOut,
    ReferralAccepted,
    ReferralOut,
    ReferralStatusOut,
    ReportBatch,
    ReportBatchItem,
    ReportBatchOut,
    ReportCreate,
    ReportCreated,
    ReportOut,
    ReportSignalOut,
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


# ---- assessment and QA ----------------------------------------------------------------------


def _assessment_error(exc: Exception) -> HTTPException:
    if isinstance(exc, assessment.NotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, assessment.Conflict):
        return HTTPException(409, str(exc))
    if isinstance(exc, assessment.Refused):
        return HTTPException(403, str(exc))
    return HTTPException(422, str(exc))


_ASSESSMENT_ERRORS = (assessment.AssessmentError, assessment.NotFound, assessment.Conflict, assessment.Refused)


def _assessment_out(row: Assessment, qa: list[QaDecision], case_reference: str | None) -> AssessmentOut:
    mapped = classification.classify(row.outcome, row.category, row.age_band, row.flags or ())
    return AssessmentOut(
        id=row.id,
        subject=row.subject,
        item_id=row.item_id,
        case=case_reference,
        assessor=row.assessor,
        assessed_at=row.assessed_at,
        outcome=row.outcome,
        category=row.category,
        age_band=row.age_band,
        sex=row.sex,
        children=row.children,
        flags=list(row.flags or ()),
        site_type=row.site_type,
        url_level=row.url_level,
        comment=row.comment,
        derived=row.derived,
        inherited_from=row.inherited_from,
        state=row.state,
        confirmations=row.confirmations,
        audit_sample=row.audit_sample,
        decided_at=row.decided_at,
        classification=ClassificationOut(**mapped.as_dict()),
        qa=[QaOut(reviewer=q.reviewer, decision=q.decision, comment=q.comment, decided_at=q.decided_at) for q in qa],
    )


def _one_out(db: Session, row: Assessment) -> AssessmentOut:
    refs = assessment.case_references(db, [row])
    return _assessment_out(row, assessment.qa_decisions(db, [row.id]).get(row.id, []), refs.get(row.case_id or 0))


def _assessment_in(body: AssessmentCreate) -> assessment.AssessmentIn:
    return assessment.AssessmentIn(
        outcome=body.outcome,
        category=body.category,
        age_band=body.age_band,
        sex=body.sex,
        children=body.children,
        flags=body.flags,
        site_type=body.site_type,
        url_level=body.url_level,
        comment=body.comment,
        derive=body.derive,
    )


@router.post("/items/{item_id}/assessment", response_model=AssessmentSaved, status_code=201, summary="Assess an item")
def assess_item(
    item_id: int,
    body: AssessmentCreate,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("review")),
) -> AssessmentSaved:
    try:
        saved = assessment.assess_item(db, _settings(request), principal, item_id, body.version, _assessment_in(body))
    except _ASSESSMENT_ERRORS as exc:
        raise _assessment_error(exc) from None
    db.commit()
    return AssessmentSaved(assessment=_one_out(db, saved.assessment), version=saved.version)


def _assess_case(
    reference: str, body: AssessmentCreate, request: Request, db: Session, principal: Principal
) -> AssessmentSaved:
    try:
        saved = assessment.assess_case(db, _settings(request), principal, reference, body.version, _assessment_in(body))
    except _ASSESSMENT_ERRORS as exc:
        raise _assessment_error(exc) from None
    db.commit()
    return AssessmentSaved(assessment=_one_out(db, saved.assessment), version=saved.version)


@router.post(
    "/cases/{reference}/assessment",
    response_model=AssessmentSaved,
    status_code=201,
    summary="Assess a case's URL (override, or derive from its items)",
)
def assess_case(
    reference: str,
    body: AssessmentCreate,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("review")),
) -> AssessmentSaved:
    return _assess_case(reference, body, request, db, principal)


@router.post(
    "/reports/{reference}/assessment",
    response_model=AssessmentSaved,
    status_code=201,
    summary="Assess the case of a report",
)
def assess_report(
    reference: str,
    body: AssessmentCreate,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("review")),
) -> AssessmentSaved:
    """The same as ``/cases/{reference}/assessment``, naming the case by one of its reports."""
    return _assess_case(reference, body, request, db, principal)


@router.post("/assessments/{assessment_id}/qa", response_model=QaResultOut, summary="Confirm or reject an assessment")
def qa_assessment(
    assessment_id: int,
    body: QaCreate,
    request: Request,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("qa")),
) -> QaResultOut:
    try:
        done = assessment.qa(db, _settings(request), principal, assessment_id, body.decision, body.comment)
    except _ASSESSMENT_ERRORS as exc:
        raise _assessment_error(exc) from None
    db.commit()
    return QaResultOut(
        assessment=_one_out(db, done.assessment),
        final=done.final,
        confirmations_needed=done.needed,
        hash_entries=done.hash_entries,
        url_entries=done.url_entries,
        retracted=done.retracted,
        inherited=done.inherited,
        dispatched=done.dispatched,
    )


def _readable(principal: Principal) -> None:
    if not assessment.may_read(principal):
        raise HTTPException(
            403, "cases and assessments are for the hotline's people; a partner's key reads its own reports"
        )


@router.get("/cases/{reference}", response_model=CaseOut, summary="A case: reports, items, assessments, QA")
def show_case(
    reference: str, db: Session = Depends(get_db), principal: Principal = Depends(require("reports:read"))
) -> CaseOut:
    _readable(principal)
    try:
        case = assessment.find_case(db, reference)
    except assessment.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    detail = assessment.case_detail(db, case)
    outs = {
        a.id: _assessment_out(a, detail.qa.get(a.id, []), case.reference if a.case_id else None)
        for a in detail.assessments
    }
    return CaseOut(
        reference=case.reference,
        kind=case.kind,
        url=case.url,
        state=case.state,
        version=case.version,
        priority=case.priority,
        opened_at=case.opened_at,
        updated_at=case.updated_at,
        closed_at=case.closed_at,
        hosting_ip=case.hosting_ip,
        hosting_asn=case.hosting_asn,
        hosting_as_name=case.hosting_as_name,
        hosting_country=case.hosting_country,
        hosting_behind_cdn=case.hosting_behind_cdn,
        reports=[
            CaseReportOut(
                reference=r.reference,
                channel=r.channel,
                reported_at=r.reported_at,
                content_type=r.content_type,
                site_type=r.site_type,
                description=r.description,
                urgent=r.urgent,
                age_band=r.age_band,
                withdrawn_at=r.withdrawn_at,
                signals=[
                    ReportSignalOut(signal_type=t, value=v, lists=names)
                    for t, v, names in intake.signals_with_lists(db, r)
                ],
            )
            for r in detail.reports
        ],
        items=[
            CaseItemOut(
                id=i.id,
                sha256=i.sha256,
                md5=i.md5,
                sha1=i.sha1,
                pdq=i.pdq,
                pdq_quality=i.pdq_quality,
                media=i.media,
                mime=i.mime,
                size=i.size,
                state=i.state,
                version=i.version,
                assessment_id=i.assessment_id,
                media_url=ci.media_url,
                found_as=ci.found_as,
            )
            for i, ci in detail.items
        ],
        assessment=outs[detail.current.id] if detail.current is not None else None,
        assessments=list(outs.values()),
    )


@router.get("/assessments", response_model=list[AssessmentOut], summary="Assessments: the QA queue and others")
def list_assessments(
    state: str | None = Query(None, description="submitted (the QA queue), confirmed, rejected, superseded"),
    subject: str | None = Query(None, description="item or case"),
    assessor: str | None = Query(None, description="As recorded, e.g. user:alice"),
    mine: bool = Query(False, description="Only the caller's own (e.g. state=rejected: work sent back)"),
    sample: bool | None = Query(None, description="Only those in (or out of) the QA audit sample"),
    limit: int = Query(100, ge=1, le=1000),
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("reports:read")),
) -> list[AssessmentOut]:
    _readable(principal)
    if state is not None and state not in ASSESSMENT_STATES:
        raise HTTPException(422, f"state is one of {', '.join(ASSESSMENT_STATES)}")
    if subject is not None and subject not in ("item", "case"):
        raise HTTPException(422, "subject is item or case")
    rows = assessment.list_assessments(
        db,
        state=state,
        subject=subject,
        assessor=assessment.who(principal) if mine else assessor,
        sample=sample,
        limit=limit,
    )
    qa = assessment.qa_decisions(db, [r.id for r in rows])
    refs = assessment.case_references(db, rows)
    return [_assessment_out(r, qa.get(r.id, []), refs.get(r.case_id or 0)) for r in rows]


# ---- notices to hosts ------------------------------------------------------------------------------


def _notice_detail(db: Session, notice_id: int) -> NoticeDetail:
    try:
        notice = notices.get_notice(db, notice_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return NoticeDetail(**notices.as_dict(*notices.with_case(db, notice), document=True))


@router.get("/notices", response_model=list[NoticeOut], tags=["notices"], summary="Notices to hosts, newest first")
def list_notices(
    state: str | None = Query(None, description="pending, sent, failed, removed, escalated, closed"),
    case: str | None = Query(None, description="A case's reference"),
    channel: str | None = Query(None, description="smtp or api"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("reports:read")),
) -> list[NoticeOut]:
    _readable(principal)
    try:
        rows = notices.list_notices(db, state=state, case=case, channel=channel, limit=limit, offset=offset)
    except notices.NoticeError as exc:
        raise HTTPException(422, str(exc)) from None
    return [NoticeOut(**notices.as_dict(n, c, h)) for n, c, h in rows]


@router.get(
    "/notices/{notice_id}", response_model=NoticeDetail, tags=["notices"], summary="A notice, with its XARF report"
)
def show_notice(
    notice_id: int, db: Session = Depends(get_db), principal: Principal = Depends(require("reports:read"))
) -> NoticeDetail:
    _readable(principal)
    return _notice_detail(db, notice_id)


@router.post(
    "/notices/{notice_id}/recheck",
    response_model=NoticeDetail,
    status_code=202,
    tags=["notices"],
    summary="Re-check a notice's content now (the worker does it)",
)
def recheck_notice(
    notice_id: int, db: Session = Depends(get_db), principal: Principal = Depends(require("qa"))
) -> NoticeDetail:
    try:
        notices.request_recheck(db, principal, notice_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except notices.NoticeError as exc:
        raise HTTPException(409, str(exc)) from None
    db.commit()
    return _notice_detail(db, notice_id)


@router.post(
    "/notices/{notice_id}/close", response_model=NoticeDetail, tags=["notices"], summary="Stop following a notice"
)
def close_notice(
    notice_id: int,
    body: NoticeClose,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("qa")),
) -> NoticeDetail:
    try:
        notices.close(db, principal, notice_id, body.comment)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except notices.NoticeError as exc:
        raise HTTPException(409, str(exc)) from None
    db.commit()
    return _notice_detail(db, notice_id)
