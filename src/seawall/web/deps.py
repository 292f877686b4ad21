"""Request dependencies: the database session, who is asking, and what they may do.

Routes declare their permission with ``Depends(require("scope"))``; this module is the only place
credentials are read and scopes checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

from fastapi import Depends, HTTPException, Request
from sqlalchemy import update
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey, User
from seawall.auth.permissions import Principal
from seawall.db import utcnow
from seawall.web.csrf import HEADER, SESSION_COOKIE, csrf_valid

_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Recording a key's last use on every request would turn every lookup into a write.
_LAST_USED_GRANULARITY = timedelta(minutes=5)


def get_db(request: Request) -> Iterator[Session]:
    """A session for this request. Routes commit what they change; anything else rolls back."""
    with request.app.state.sessionmaker() as session:
        yield session


class LoginRequired(Exception):
    """Raised by console pages when nobody is logged in; answered with a redirect to /login."""


def _touch_key(request: Request, key: ApiKey) -> None:
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_GRANULARITY:
        with request.app.state.sessionmaker() as db:
            db.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
            db.commit()


def optional_principal(request: Request) -> Principal | None:
    """The caller from an ``Authorization: Bearer`` API key, or else the console session cookie."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    # A read-only session of its own: checking a credential must not take SQLite's write lock.
    with request.app.state.read_sessionmaker() as db:
        principal = _principal_from(request, db)
    request.state.principal = principal
    return principal


def _principal_from(request: Request, db: Session) -> Principal | None:
    header = request.headers.get("authorization")
    principal: Principal | None = None
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise HTTPException(401, "use 'Authorization: Bearer <API key>'", {"WWW-Authenticate": "Bearer"})
        try:
            key = auth_service.authenticate_api_key(db, secret.strip())
        except auth_service.AuthError as exc:
            raise HTTPException(401, exc.reason, {"WWW-Authenticate": "Bearer"}) from None
        _touch_key(request, key)
        principal = auth_service.key_principal(key)
    else:
        token = request.cookies.get(SESSION_COOKIE)
        user: User | None = auth_service.console_session_user(db, token) if token else None
        if user is not None:
            # A browser calling the API with its cookie must prove the request came from our page.
            if request.method not in _SAFE_METHODS and not csrf_valid(request, request.headers.get(HEADER)):
                raise HTTPException(403, "missing or invalid CSRF token")
            principal = auth_service.user_principal(user)
    return principal


def require(scope: str) -> Callable[..., Principal]:
    """A dependency admitting only callers that hold ``scope`` (401 without credentials, 403 without scope)."""

    def dependency(principal: Principal | None = Depends(optional_principal)) -> Principal:
        if principal is None:
            raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})
        if not principal.can(scope):
            raise HTTPException(403, f"this credential lacks the '{scope}' scope")
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


def console_user(request: Request, db: Session = Depends(get_db)) -> User:
    """The logged-in console user; anyone else is sent to the login page."""
    token = request.cookies.get(SESSION_COOKIE)
    user = auth_service.console_session_user(db, token) if token else None
    if user is None:
        raise LoginRequired()
    request.state.principal = auth_service.user_principal(user)
    # Partner accounts are for machines: the console is for the hotline's and the platform's own staff.
    if not request.state.principal.can("console"):
        raise HTTPException(403, "your role does not use the console; use an API key")
    return user


def console_require(scope: str) -> Callable[..., User]:
    """Like ``require`` for console pages: login first, then the role must grant ``scope``."""

    def dependency(request: Request, user: User = Depends(console_user)) -> User:
        if not request.state.principal.can(scope):
            raise HTTPException(403, f"your role does not allow this ({scope})")
        return user

    return dependency
