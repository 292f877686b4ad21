"""The public self-report pages and the JSON endpoint the page sends hashes to. Anonymous,
CSRF-protected, rate-limited per client, bounded; they never say whether a hash was known."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from seawall.auth import ratelimit
from seawall.config import Settings
from seawall.db import transaction
from seawall.hotline.models import AGE_BANDS
from seawall.selfreport import service
from seawall.selfreport.schemas import MAX_FILES, MAX_FRAMES, MAX_VIDEO_FRAMES, SelfReportIn
from seawall.web.app import render
from seawall.web.csrf import csrf_valid
from seawall.web.deps import get_db
from seawall.web.security import CONTENT_SECURITY_POLICY

router = APIRouter(include_in_schema=False)
HOUR = 3600
EXPIRED = "This page has expired. Reload it and try again."
BUSY_STATUS = "Too many tries in a short time. Please wait an hour and try again."
# The page plays the chosen video from a blob: URL, in a detached element, to hash its frames on
# the device; every other rule is the console's.
PAGE_POLICY = CONTENT_SECURITY_POLICY + "; media-src 'self' blob:"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _allowed(request: Request, action: str, limit: int) -> bool:
    settings: Settings = request.app.state.settings
    return ratelimit.allow(
        request.app.state.sessionmaker, settings, action, _client(request), limit=limit, window_seconds=HOUR
    )


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    settings: Settings = request.app.state.settings
    return render(
        request,
        f"selfreport/{template}",
        status_code=status_code,
        exit_url=settings.self_report_exit_url,
        help_lines=service.help_lines(settings),
        **context,
    )


@router.get("/self-report")
def self_report_page(request: Request) -> Response:
    response = _page(
        request,
        "page.html",
        age_bands=AGE_BANDS,
        max_files=MAX_FILES,
        max_frames=MAX_FRAMES,
        max_video_frames=MAX_VIDEO_FRAMES,
    )
    response.headers["content-security-policy"] = PAGE_POLICY
    return response


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _readable(exc: ValidationError) -> str:
    """One plain sentence for the first problem (the page checks shapes itself; this is for others)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    if where == "files" and first.get("type") == "too_long":
        return f"A report carries at most {MAX_FILES} files."
    if where == "files" and first.get("type") == "too_short":
        return "A report carries the hashes of at least one file."
    if where == "body" and first.get("type") == "value_error":  # the only check across files
        return f"A report carries at most {MAX_FRAMES} video frames in all."
    if where.endswith("vpdq") and first.get("type") == "too_long":
        return f"A video carries at most {MAX_VIDEO_FRAMES} frames."
    return f"{where}: {first.get('msg', 'invalid')}"


def _submit(request: Request, data: SelfReportIn) -> service.Received:
    with transaction(request.app.state.sessionmaker) as session:
        return service.submit(session, request.app.state.settings, data)


@router.post("/self-report/submit")
async def self_report_submit(request: Request) -> Response:
    """Hashes in, a case number and PIN out. The page's CSRF token travels in the JSON body, as a
    form's does in the form. Async so that a refusal costs no thread; the database work runs in
    the thread pool."""
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        return _error(415, "Send the report as JSON (Content-Type: application/json).")
    raw = await request.body()  # bounded by web/limits.py before it gets here
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "The report is not valid JSON.")
    token = body.pop("csrf_token", None) if isinstance(body, dict) else None
    if not isinstance(token, str) or not csrf_valid(request, token):
        return _error(403, EXPIRED)
    settings: Settings = request.app.state.settings
    if not await run_in_threadpool(_allowed, request, "self-report", settings.self_report_limit):
        return _error(429, "You have sent several reports in a short time. Please wait an hour and try again.")
    try:
        data = SelfReportIn.model_validate(body)
    except ValidationError as exc:
        return _error(422, _readable(exc))
    if not data.consent:
        return _error(422, "Please tick the box to say you agree before sending.")
    try:
        received = await run_in_threadpool(_submit, request, data)
    except service.SelfReportError as exc:
        return _error(422, str(exc))
    return JSONResponse({"case": received.case, "pin": received.pin}, status_code=201)


@router.get("/self-report/status")
def status_page(request: Request) -> Response:
    return _page(request, "status.html", status=None, error=None, reference="")


@router.post("/self-report/status")
def status_lookup(
    request: Request,
    reference: str = Form("", max_length=40),
    pin: str = Form("", max_length=40),
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
) -> Response:
    if not csrf_valid(request, csrf_token):
        return _page(request, "status.html", 403, status=None, error=EXPIRED, reference=reference)
    if not _allowed(request, "self-report-status", request.app.state.settings.self_report_status_limit):
        return _page(request, "status.html", 429, status=None, error=BUSY_STATUS, reference=reference)
    found = service.status_by_pin(db, reference, pin)
    if found is None:
        error = "We could not find a report with that case number and PIN. Check both and try again."
        return _page(request, "status.html", 404, status=None, error=error, reference=reference)
    stages = list(service.STAGES)
    return _page(request, "status.html", status=found, stages=stages, error=None, reference=reference.strip().upper())


@router.get("/self-report/withdraw")
def withdraw_page(request: Request) -> Response:
    return _page(request, "withdraw.html", done=False, error=None, reference="")


@router.post("/self-report/withdraw")
def withdraw(
    request: Request,
    reference: str = Form("", max_length=40),
    pin: str = Form("", max_length=40),
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
) -> Response:
    if not csrf_valid(request, csrf_token):
        return _page(request, "withdraw.html", 403, done=False, error=EXPIRED, reference=reference)
    if not _allowed(request, "self-report-status", request.app.state.settings.self_report_status_limit):
        return _page(request, "withdraw.html", 429, done=False, error=BUSY_STATUS, reference=reference)
    if not service.withdraw(db, reference, pin):
        error = "We could not find a report with that case number and PIN. Check both and try again."
        return _page(request, "withdraw.html", 404, done=False, error=error, reference=reference)
    db.commit()
    return _page(request, "withdraw.html", done=True, error=None, reference=reference.strip().upper())
