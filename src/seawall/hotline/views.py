"""Public pages of the hotline: the report form and the status page. Anonymous, CSRF-protected,
rate-limited per client; they never say what was found."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from seawall.auth import ratelimit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline import intake
from seawall.hotline.models import CONTENT_TYPES, SITE_TYPES
from seawall.web.app import render
from seawall.web.csrf import csrf_valid
from seawall.web.deps import get_db

router = APIRouter(include_in_schema=False)
# Who files a public report: nobody in particular (the audit log records the channel, not a person).
PUBLIC = Principal(kind="public", name="public report form", scopes=frozenset())
SITE_LABELS = {
    "image_host": "An image host",
    "cyberlocker": "A file-sharing or download site",
    "forum": "A forum or message board",
    "social_network": "A social network",
    "chat": "A chat or messaging service",
    "blog": "A blog",
    "website": "A website",
    "video_channel": "A video site",
    "search": "Search results",
    "banner_site": "Adverts or banners",
    "other": "Somewhere else / not sure",
}
CONTENT_LABELS = {"images": "Pictures", "videos": "Videos", "other": "Something else"}
HOUR = 3600


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _form(request: Request, status_code: int = 200, error: str | None = None, **values: str) -> Response:
    return render(
        request,
        "report_form.html",
        status_code=status_code,
        error=error,
        values=values,
        site_types=[(s, SITE_LABELS[s]) for s in SITE_TYPES],
        content_types=[(c, CONTENT_LABELS[c]) for c in CONTENT_TYPES],
    )


def _refuse_forged(request: Request, token: str) -> None:
    if not csrf_valid(request, token):
        raise HTTPException(403, "The form expired or did not come from this site. Reload the page and try again.")


@router.get("/report")
def report_page(request: Request) -> Response:
    return _form(request)


@router.post("/report")
def report_submit(
    request: Request,
    url: str = Form("", max_length=2048),
    content_type: str = Form(""),
    site_type: str = Form(""),
    description: str = Form("", max_length=intake.MAX_DESCRIPTION),
    contact: str = Form("", max_length=intake.MAX_CONTACT),
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
) -> Response:
    _refuse_forged(request, csrf_token)
    values = {"url": url, "content_type": content_type, "site_type": site_type, "description": description}
    values["contact"] = contact
    settings: Settings = request.app.state.settings
    if not ratelimit.allow(
        request.app.state.sessionmaker,
        settings,
        "report",
        _client(request),
        limit=settings.public_report_limit,
        window_seconds=HOUR,
    ):
        return _form(request, 429, "You have sent many reports in a short time. Please try again in an hour.", **values)
    report = intake.ReportIn(
        channel="public",
        url=url,
        content_type=content_type or None,
        site_type=site_type or None,
        description=description,
        contact=contact or None,
    )
    try:
        done = intake.submit(db, settings, PUBLIC, report)
    except intake.IntakeError as exc:
        return _form(request, 422, str(exc), **values)
    db.commit()
    return render(request, "report_done.html", reference=done.report.reference, pin=done.pin)


@router.get("/report/status")
def status_page(request: Request) -> Response:
    return render(request, "report_status.html", status=None, error=None, reference="")


@router.post("/report/status")
def status_lookup(
    request: Request,
    reference: str = Form("", max_length=40),
    pin: str = Form("", max_length=40),
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
) -> Response:
    _refuse_forged(request, csrf_token)
    settings: Settings = request.app.state.settings
    if not ratelimit.allow(
        request.app.state.sessionmaker,
        settings,
        "report-status",
        _client(request),
        limit=settings.public_status_limit,
        window_seconds=HOUR,
    ):
        error = "Too many look-ups in a short time. Please try again in an hour."
        return render(request, "report_status.html", status_code=429, status=None, error=error, reference=reference)
    status = intake.status_by_pin(db, reference, pin)
    if status is None:
        error = "We could not find a report with that reference and PIN. Check both and try again."
        return render(request, "report_status.html", status_code=404, status=None, error=error, reference=reference)
    return render(request, "report_status.html", status=status, error=None, reference=reference.strip().upper())
