"""Console pages of the review domain: queues, the item and case views with keyboard grading, the
reveal endpoints, QA, the break screen, preferences and the team's exposure.

Routes parse, authorise, call ``review.service`` and ``hotline.assessment``, and render. Every form
checks its CSRF token (the form field, or the page's header for fetch() calls); every page checks the
role's scope. All routes are plain ``def`` (the thread pool): they touch the database and the
evidence store.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from seawall.auth.models import User
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline import assessment
from seawall.hotline.models import AGE_BANDS, CATEGORIES, FLAGS, OUTCOMES, SEXES, Assessment, Case, Item
from seawall.review import service
from seawall.review.service import Held, NotHeld, OnBreak, ReviewError
from seawall.web.app import render
from seawall.web.csrf import HEADER, csrf_valid
from seawall.web.deps import console_require, get_db

router = APIRouter(include_in_schema=False)
SUBJECTS = {"items": "item", "cases": "case"}

# One key per choice: the grading form's labels show them, ``?`` lists them (review.js binds them).
KEYS: dict[str, dict[str, str]] = {
    "outcome": {"csam": "c", "not_csam": "n", "other_illegal": "o", "inaccessible": "i", "duplicate": "d"},
    "category": {"A": "1", "B": "2", "C": "3"},
    "age_band": dict(zip(AGE_BANDS, "456789", strict=True)),
    "sex": {"girl": "g", "boy": "b", "both": "h", "unidentified": "u"},
    "flags": {
        "self_generated": "s",
        "commercial": "m",
        "disguised": "w",
        "ai_generated": "a",
        "sextortion": "x",
        "multi_child": "k",
    },
}
LABELS = {
    "csam": "CSAM",
    "not_csam": "Not CSAM",
    "other_illegal": "Other illegal",
    "inaccessible": "Inaccessible",
    "duplicate": "Duplicate",
    "girl": "Girl",
    "boy": "Boy",
    "both": "Both",
    "unidentified": "Unidentified",
    "self_generated": "Self-generated",
    "commercial": "Commercial",
    "disguised": "Disguised website",
    "ai_generated": "AI-generated",
    "sextortion": "Sextortion",
    "multi_child": "Multi-child",
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def _check_csrf(request: Request, token: str) -> None:
    if not (csrf_valid(request, token) or csrf_valid(request, request.headers.get(HEADER))):
        raise HTTPException(403, "The form expired or did not come from this site. Reload the page and try again.")


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") and "text/html" not in request.headers.get(
        "accept", ""
    )


def _to_break(request: Request, exc: OnBreak) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": str(exc), "state": exc.state.state}, status_code=423)
    return RedirectResponse("/review/break", status_code=303)


def _item(db: Session, item_id: int) -> Item:
    item = db.get(Item, item_id)
    if item is None:
        raise HTTPException(404, f"no item {item_id}")
    return item


def _case(db: Session, case_id: int) -> Case:
    case = db.get(Case, case_id)
    if case is None:
        raise HTTPException(404, f"no case {case_id}")
    return case


def _subject(kind: str) -> str:
    subject = SUBJECTS.get(kind)
    if subject is None:
        raise HTTPException(404, "claims are of items or cases")
    return subject


def _filters(media: str | None, channel: str | None, urgent: bool) -> service.QueueFilter:
    return service.QueueFilter(media=media or None, channel=channel or None, urgent=urgent)


def _grading_context() -> dict[str, Any]:
    return {
        "keys": KEYS,
        "labels": LABELS,
        "outcomes": OUTCOMES,
        "categories": CATEGORIES,
        "age_bands": AGE_BANDS,
        "sexes": SEXES,
        "flags": FLAGS,
    }


# ---- the queues --------------------------------------------------------------------------------


@router.get("/review")
def queue_page(
    request: Request,
    media: str | None = Query(None, pattern="^(image|video)?$"),
    channel: str | None = Query(None, max_length=16),
    urgent: bool = Query(False),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    settings, me = _settings(request), _principal(request)
    flt = _filters(media, channel, urgent)
    return render(
        request,
        "review/queue.html",
        page="review",
        items=service.item_queue(db, settings, me, flt),
        cases=service.case_queue(db, settings, me, flt),
        qa_count=len(service.qa_queue(db, me)) if me.can("qa") else None,
        rechecks=service.rechecks(db),
        spared=service.spared_today(db, settings),
        wellbeing=service.wellbeing(db, settings, me),
        media=media or "",
        channel=channel or "",
        urgent=urgent,
    )


@router.post("/review/next")
def next_item(
    request: Request,
    csrf_token: str = Form(""),
    media: str = Form(""),
    channel: str = Form(""),
    urgent: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    _check_csrf(request, csrf_token)
    settings, me = _settings(request), _principal(request)
    try:
        service.start_work(db, settings, me)
        item = service.next_item(db, settings, me, _filters(media, channel, urgent == "1"))
    except OnBreak as exc:
        db.rollback()
        return _to_break(request, exc)
    db.commit()
    if item is None:
        return RedirectResponse("/review?empty=1", status_code=303)
    return RedirectResponse(f"/review/items/{item.id}", status_code=303)


@router.get("/review/break")
def break_page(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("review"))
) -> Response:
    settings = _settings(request)
    links = []
    for entry in settings.review_support_links:
        label, _sep, href = entry.partition("|")
        if href.startswith(("https://", "http://", "/", "tel:", "mailto:")):
            links.append((label.strip() or href, href.strip()))
    return render(
        request,
        "review/break.html",
        page="review",
        wellbeing=service.wellbeing(db, settings, _principal(request)),
        support_text=settings.review_support_text,
        support_links=links,
    )


# ---- claims ----------------------------------------------------------------------------------


def _subject_page(subject: str, subject_id: int) -> str:
    return f"/review/{'items' if subject == 'item' else 'cases'}/{subject_id}"


@router.post("/review/{kind}/{subject_id}/claim")
def claim(
    kind: str,
    subject_id: int,
    request: Request,
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    _check_csrf(request, csrf_token)
    subject = _subject(kind)
    if subject == "item":
        _item(db, subject_id)
    else:
        _case(db, subject_id)
    settings, me = _settings(request), _principal(request)
    try:
        service.start_work(db, settings, me)
        service.claim(db, settings, me, subject, subject_id)
    except OnBreak as exc:
        db.rollback()
        return _to_break(request, exc)
    except Held as exc:
        db.rollback()
        raise HTTPException(409, f"{exc}: it is read-only for you until they finish or the claim expires") from None
    db.commit()
    return RedirectResponse(_subject_page(subject, subject_id), status_code=303)


@router.post("/review/{kind}/{subject_id}/release")
def release(
    kind: str,
    subject_id: int,
    request: Request,
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    _check_csrf(request, csrf_token)
    service.release(db, _principal(request), _subject(kind), subject_id)
    db.commit()
    return RedirectResponse("/review", status_code=303)


@router.post("/review/{kind}/{subject_id}/skip")
def skip(
    kind: str,
    subject_id: int,
    request: Request,
    csrf_token: str = Form(""),
    reason: str = Form("", max_length=2000),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    _check_csrf(request, csrf_token)
    try:
        service.release(db, _principal(request), _subject(kind), subject_id, reason=reason)
    except ReviewError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return RedirectResponse("/review", status_code=303)


# ---- the item view and grading ------------------------------------------------------------------


@router.get("/review/items/{item_id}")
def item_page(
    item_id: int,
    request: Request,
    reveal: str | None = Query(None, max_length=64),
    rid: int | None = Query(None),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    settings, me = _settings(request), _principal(request)
    item = _item(db, item_id)
    try:
        state = service.start_work(db, settings, me, viewed=True)
    except OnBreak as exc:
        db.rollback()
        return _to_break(request, exc)
    service.record_media_read(db, me, item, "view")
    held = service.live_claim(db, "item", item.id)
    ctx = service.item_context(db, settings, me, item)
    db.commit()
    current = db.get(Assessment, item.assessment_id) if item.assessment_id else None
    return render(
        request,
        "review/item.html",
        page="review",
        item=item,
        ctx=ctx,
        claim=held,
        mine=held is not None and held.user_id == me.id,
        can_reveal=me.can("reveal") and ((held is not None and held.user_id == me.id) or me.can("qa")),
        current=current,
        prefs=service.preferences(db, settings, me.id or 0),
        wellbeing=state,
        reveal_token=reveal if reveal and me.can("reveal") else None,
        reveal_id=rid,
        error=None,
        form={},
        **_grading_context(),
    )


@router.get("/review/items/{item_id}/thumbnail")
def item_thumbnail(
    item_id: int, request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("review"))
) -> Response:
    settings, me = _settings(request), _principal(request)
    item = _item(db, item_id)
    blur = service.preferences(db, settings, me.id or 0).blur
    data = service.thumbnail(db, settings, item, blur)  # read and rendered before the write below
    service.record_media_read(db, me, item, "thumbnail")
    db.commit()
    return Response(data, media_type="image/jpeg", headers={"cache-control": "no-store"})


def _assessment_in(
    outcome: str, category: str, age_band: str, sex: str, children: str, flags: list[str], comment: str
) -> assessment.AssessmentIn:
    count = None
    if children.strip():
        if not children.strip().isdigit():
            raise assessment.AssessmentError("children is a whole number")
        count = int(children)
    return assessment.AssessmentIn(
        outcome=outcome or None,
        category=category or None,
        age_band=age_band or None,
        sex=sex or None,
        children=count,
        flags=flags,
        comment=comment,
    )


@router.post("/review/items/{item_id}/grade")
def grade_item(
    item_id: int,
    request: Request,
    csrf_token: str = Form(""),
    version: int = Form(...),
    outcome: str = Form(""),
    category: str = Form(""),
    age_band: str = Form(""),
    sex: str = Form(""),
    children: str = Form("", max_length=8),
    flags: list[str] = Form([]),
    comment: str = Form("", max_length=6000),
    next: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    _check_csrf(request, csrf_token)
    settings, me = _settings(request), _principal(request)
    item = _item(db, item_id)
    try:
        service.start_work(db, settings, me)
        service.require_claim(db, me, "item", item.id)
        data = _assessment_in(outcome, category, age_band, sex, children, flags, comment)
        assessment.assess_item(db, settings, me, item.id, version, data)
        service.release(db, me, "item", item.id)
    except OnBreak as exc:
        db.rollback()
        return _to_break(request, exc)
    except (Held, NotHeld, assessment.Conflict) as exc:
        db.rollback()
        raise HTTPException(409, str(exc)) from None
    except assessment.AssessmentError as exc:
        db.rollback()
        return _item_with_error(request, db, item_id, str(exc), locals())
    db.commit()
    if next == "1":
        try:
            following = service.next_item(db, settings, me)
        except OnBreak as exc:
            db.rollback()
            return _to_break(request, exc)
        db.commit()
        if following is not None:
            return RedirectResponse(f"/review/items/{following.id}?graded={item_id}", status_code=303)
    return RedirectResponse(f"/review?graded={item_id}", status_code=303)


def _item_with_error(request: Request, db: Session, item_id: int, message: str, sent: dict[str, Any]) -> Response:
    settings, me = _settings(request), _principal(request)
    item = _item(db, item_id)
    held = service.live_claim(db, "item", item.id)
    form = {k: sent.get(k) for k in ("outcome", "category", "age_band", "sex", "children", "flags", "comment")}
    ctx = service.item_context(db, settings, me, item)
    db.commit()  # the reads it logged
    return render(
        request,
        "review/item.html",
        status_code=422,
        page="review",
        item=item,
        ctx=ctx,
        claim=held,
        mine=held is not None and held.user_id == me.id,
        can_reveal=me.can("reveal") and ((held is not None and held.user_id == me.id) or me.can("qa")),
        current=db.get(Assessment, item.assessment_id) if item.assessment_id else None,
        prefs=service.preferences(db, settings, me.id or 0),
        wellbeing=service.wellbeing(db, settings, me),
        reveal_token=None,
        reveal_id=None,
        error=message,
        form=form,
        **_grading_context(),
    )


# ---- reveals -----------------------------------------------------------------------------------


@router.post("/review/items/{item_id}/reveal")
def reveal(
    item_id: int,
    request: Request,
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("reveal")),
) -> Response:
    _check_csrf(request, csrf_token)
    settings, me = _settings(request), _principal(request)
    item = _item(db, item_id)
    held = service.live_claim(db, "item", item.id)
    if not (held is not None and held.user_id == me.id) and not me.can("qa"):
        # Only the person grading it (or a senior analyst checking it) needs to see more of it.
        raise HTTPException(409, "claim the item to reveal it: only the analyst grading it, or QA, may")
    try:
        service.start_work(db, settings, me)
        row, token = service.start_reveal(db, settings, me, item)
    except OnBreak as exc:
        db.rollback()
        return _to_break(request, exc)
    except ReviewError as exc:
        db.rollback()
        raise HTTPException(409, str(exc)) from None
    db.commit()
    url = f"/review/reveals/{token}"
    if _wants_json(request):
        return JSONResponse({"url": url, "reveal": row.id, "media": item.media, "mime": item.mime})
    return RedirectResponse(f"/review/items/{item.id}?reveal={token}&rid={row.id}", status_code=303)


@router.get("/review/reveals/{token}")
def revealed_media(
    token: str, request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("reveal"))
) -> Response:
    settings, me = _settings(request), _principal(request)
    try:
        row = service.reveal_for(db, settings, me, token)
        item = _item(db, row.item_id)
        data = service.original(db, settings, item)  # read before the write below
    except ReviewError as exc:
        raise HTTPException(410, str(exc)) from None
    if row.fetched_at is None:
        from seawall.db import utcnow

        row.fetched_at = utcnow()
    service.record_media_read(db, me, item, "read")
    db.commit()
    return Response(
        data,
        media_type=item.mime or "application/octet-stream",
        headers={"cache-control": "no-store", "content-disposition": "inline"},
    )


@router.post("/review/reveals/{reveal_id}/end")
def end_reveal(
    reveal_id: int,
    request: Request,
    csrf_token: str = Form(""),
    seconds: str = Form("", max_length=32),
    back: str = Form("", max_length=200),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("reveal")),
) -> Response:
    _check_csrf(request, csrf_token)
    try:
        client = float(seconds) if seconds.strip() else None
    except ValueError:
        raise HTTPException(422, "seconds is a number") from None
    if client is not None and not client >= 0:  # also refuses NaN
        raise HTTPException(422, "seconds is a number of seconds, not negative")
    try:
        row = service.end_reveal(db, _settings(request), _principal(request), reveal_id, client)
    except ReviewError as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()
    if back.startswith("/review/") and not back.startswith("//"):
        return RedirectResponse(back, status_code=303)
    return JSONResponse({"reveal": row.id, "seconds": row.seconds})


# ---- cases (hash-only reports, URLs whose items are graded) --------------------------------------


@router.get("/review/cases/{case_id}")
def case_page(
    case_id: int, request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("review"))
) -> Response:
    settings, me = _settings(request), _principal(request)
    case = _case(db, case_id)
    held = service.live_claim(db, "case", case.id)
    signals = service.case_signals(db, case)
    ctx = service.case_context(db, settings, me, case)
    db.commit()
    return render(
        request,
        "review/case.html",
        page="review",
        case=case,
        ctx=ctx,
        signals=signals,
        matches=service.signal_matches(db, signals),
        items=assessment.items_of(db, case),
        current=assessment.current_case_assessment(db, case),
        claim=held,
        mine=held is not None and held.user_id == me.id,
        wellbeing=service.wellbeing(db, settings, me),
        error=None,
        **_grading_context(),
    )


@router.post("/review/cases/{case_id}/grade")
def grade_case(
    case_id: int,
    request: Request,
    csrf_token: str = Form(""),
    version: int = Form(...),
    outcome: str = Form(""),
    category: str = Form(""),
    age_band: str = Form(""),
    sex: str = Form(""),
    children: str = Form("", max_length=8),
    flags: list[str] = Form([]),
    url_level: str = Form(""),
    derive: str = Form(""),
    comment: str = Form("", max_length=6000),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    _check_csrf(request, csrf_token)
    settings, me = _settings(request), _principal(request)
    case = _case(db, case_id)
    try:
        service.start_work(db, settings, me)
        service.require_claim(db, me, "case", case.id)
        if derive == "1":
            data = assessment.AssessmentIn(derive=True, url_level=url_level or None, comment=comment)
        else:
            data = _assessment_in(outcome, category, age_band, sex, children, flags, comment)
            data.url_level = url_level or None
        assessment.assess_case(db, settings, me, case.reference, version, data)
        service.release(db, me, "case", case.id)
    except OnBreak as exc:
        db.rollback()
        return _to_break(request, exc)
    except (Held, NotHeld, assessment.Conflict) as exc:
        db.rollback()
        raise HTTPException(409, str(exc)) from None
    except assessment.AssessmentError as exc:
        db.rollback()
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return RedirectResponse(f"/review?graded_case={case_id}", status_code=303)


# ---- preferences and the team ------------------------------------------------------------------


@router.get("/review/preferences")
def preferences_page(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("review"))
) -> Response:
    settings, me = _settings(request), _principal(request)
    return render(
        request,
        "review/preferences.html",
        page="review",
        prefs=service.preferences(db, settings, me.id or 0),
        defaults=service.Preferences(settings.review_blur, settings.review_greyscale, settings.review_reveal_on_hold),
        saved=request.query_params.get("saved") == "1",
    )


def _tristate(value: str) -> bool | None:
    return {"on": True, "off": False}.get(value)


@router.post("/review/preferences")
def save_preferences(
    request: Request,
    csrf_token: str = Form(""),
    blur: str = Form("", max_length=16),
    greyscale: str = Form(""),
    reveal_on_hold: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("review")),
) -> Response:
    _check_csrf(request, csrf_token)
    try:
        strength = float(blur) if blur.strip() else None
        service.set_preferences(
            db,
            _principal(request),
            blur=strength,
            greyscale=_tristate(greyscale),
            reveal_on_hold=_tristate(reveal_on_hold),
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc) if isinstance(exc, ReviewError) else "blur is a number of pixels") from None
    db.commit()
    return RedirectResponse("/review/preferences?saved=1", status_code=303)


@router.get("/review/team")
def team_page(request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("qa"))) -> Response:
    settings = _settings(request)
    return render(
        request,
        "review/team.html",
        page="review",
        days=service.team(db, settings),
        limits=service.limits_for(settings, None),
    )


# ---- QA --------------------------------------------------------------------------------------


@router.get("/qa")
def qa_queue(request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("qa"))) -> Response:
    rows = service.qa_queue(db, _principal(request))
    return render(request, "review/qa_list.html", page="qa", rows=rows, cases=assessment.case_references(db, rows))


@router.get("/qa/{assessment_id}")
def qa_page(
    assessment_id: int, request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("qa"))
) -> Response:
    settings, me = _settings(request), _principal(request)
    row = db.get(Assessment, assessment_id)
    if row is None:
        raise HTTPException(404, f"no assessment {assessment_id}")
    item = db.get(Item, row.item_id) if row.item_id is not None else None
    case = db.get(Case, row.case_id) if row.case_id is not None else None
    if item is not None:
        try:
            service.start_work(db, settings, me, viewed=True)
        except OnBreak as exc:
            db.rollback()
            return _to_break(request, exc)
        service.record_media_read(db, me, item, "view")
    ctx = service.item_context(db, settings, me, item) if item is not None else None
    case_ctx = service.case_context(db, settings, me, case) if case is not None else None
    db.commit()
    return render(
        request,
        "review/qa_item.html",
        page="qa",
        row=row,
        item=item,
        case=case,
        ctx=ctx,
        case_ctx=case_ctx,
        decisions=assessment.qa_decisions(db, [row.id]).get(row.id, []),
        own=row.assessor == assessment.who(me),
        can_reveal=me.can("reveal"),
        prefs=service.preferences(db, settings, me.id or 0),
        labels=LABELS,
    )


@router.post("/qa/{assessment_id}")
def qa_decide(
    assessment_id: int,
    request: Request,
    csrf_token: str = Form(""),
    decision: str = Form(""),
    comment: str = Form("", max_length=6000),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("qa")),
) -> Response:
    _check_csrf(request, csrf_token)
    try:
        result = assessment.qa(db, _settings(request), _principal(request), assessment_id, decision, comment)
    except assessment.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except assessment.AssessmentError as exc:
        raise HTTPException(422, str(exc)) from None
    except assessment.Refused as exc:
        raise HTTPException(403, str(exc)) from None
    except assessment.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    db.commit()
    return RedirectResponse(f"/qa?decided={result.assessment.id}&final={int(result.final)}", status_code=303)
