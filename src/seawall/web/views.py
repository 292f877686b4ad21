"""Console pages: login, logout, dashboard. They parse, authorise, call services and render."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import User
from seawall.web.app import render
from seawall.web.csrf import SESSION_COOKIE, csrf_valid
from seawall.web.deps import console_user, get_db

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect after login would help phishing.
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=_safe_next(next), error=None, username="")


@router.post("/login")
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
) -> Response:
    if not csrf_valid(request, csrf_token):
        raise HTTPException(403, "The form expired or did not come from this site. Reload the page and try again.")
    settings = request.app.state.settings
    try:
        user = auth_service.authenticate(db, settings, username.strip(), password)
    except auth_service.AuthError as exc:
        db.commit()  # keep the failure count and the audit event
        return render(
            request, "login.html", status_code=401, next=_safe_next(next), error=exc.reason, username=username
        )
    token = auth_service.start_console_session(db, settings, user)
    db.commit()
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form(""), db: Session = Depends(get_db)) -> Response:
    if not csrf_valid(request, csrf_token):
        raise HTTPException(403, "The form expired or did not come from this site. Reload the page and try again.")
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        auth_service.end_console_session(db, token)
        db.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def dashboard(request: Request, user: User = Depends(console_user), db: Session = Depends(get_db)) -> Response:
    from seawall.matching.service import overview

    figures = overview(db)
    cards: list[dict[str, object]] = [
        {"title": "Lists", "value": figures["lists"], "href": "/lists", "link": "See what they hold"},
        {"title": "Active entries", "value": f"{figures['active_entries']:,}"},
        {"title": "Matches, last 24 hours", "value": f"{figures['matches_24h']:,}"},
        {"title": "Quarantined entries", "value": figures["quarantined"], "href": "/quarantine", "link": "Review them"},
        {"title": "Dead webhook deliveries", "value": figures["dead_deliveries"]},
    ]
    if request.state.principal.can("admin"):  # the webhooks page is the operator's
        cards[-1].update(href="/webhooks?state=dead", link="Redeliver")
    return render(request, "dashboard.html", page="dashboard", cards=cards)


@router.get("/docs")
def api_docs(request: Request) -> Response:
    """Swagger UI from the installed package and our own starter script (no CDN, no inline script)."""
    return render(request, "api_docs.html", openapi_url=request.app.openapi_url)
