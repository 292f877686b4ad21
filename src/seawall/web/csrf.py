"""CSRF tokens bound to the browser: to its session once logged in, to a random cookie before."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

ANON_COOKIE = "seawall_csrf"
SESSION_COOKIE = "seawall_session"
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"


def _binding(request: Request) -> str | None:
    session_token = request.cookies.get(SESSION_COOKIE)
    if session_token:
        return "session:" + session_token
    anon = request.cookies.get(ANON_COOKIE) or getattr(request.state, "new_anon_csrf", None)
    return "anon:" + anon if anon else None


def csrf_token(request: Request) -> str:
    """The token forms on this page must send back; sets up the anonymous cookie if needed."""
    binding = _binding(request)
    if binding is None:
        request.state.new_anon_csrf = secrets.token_urlsafe(24)
        binding = "anon:" + request.state.new_anon_csrf
    secret = request.app.state.settings.effective_secret_key().encode()
    return hmac.new(secret, binding.encode(), hashlib.sha256).hexdigest()


def csrf_valid(request: Request, token: str | None) -> bool:
    binding = _binding(request)
    if not token or binding is None:
        return False
    secret = request.app.state.settings.effective_secret_key().encode()
    expected = hmac.new(secret, binding.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, token)


def persist_anon_cookie(request: Request, response: Response) -> None:
    """Send the anonymous CSRF cookie chosen while rendering this page."""
    value = getattr(request.state, "new_anon_csrf", None)
    if value:
        settings = request.app.state.settings
        response.set_cookie(
            ANON_COOKIE, value, httponly=True, samesite="strict", secure=settings.cookie_secure, path="/"
        )
