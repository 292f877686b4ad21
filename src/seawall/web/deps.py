"""Request dependencies: the database session, who is asking, and what they may do.

Routes declare their permission with ``Depends(require("scope"))``; this module is the only place
credentials are read and scopes checked.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Depends, Form, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from seawall.auth import service as auth_service
from seawall.auth.models import User
from seawall.auth.permissions import Principal
from seawall.web.csrf import HEADER, SESSION_COOKIE, csrf_valid


def get_db(request: Request) -> Iterator[Session]:
    """A session for this request. Routes commit what they change; anything else rolls back."""
    with request.app.state.sessionmaker() as session:
        yield session


def get_read_db(request: Request) -> Iterator[Session]:
    """A session for a route that only reads: on SQLite it does not take the write lock, so it answers
    while a writer holds it (``get_db``'s sessions take it when their transaction begins)."""
    with request.app.state.read_sessionmaker() as session:
        yield session


async def raw_body(request: Request) -> bytes:
    """The request's body, read on the event loop (it only awaits the client), so that the route
    parsing and acting on it can be a plain ``def`` run in the thread pool. Declare it after the
    route's permission dependency: a caller without the scope is refused before its body is read."""
    return await request.body()


class LoginRequired(Exception):
    """Raised by console pages when nobody is logged in; answered with a redirect to /login."""


async def optional_principal(request: Request) -> Principal | None:
    """The caller from an ``Authorization: Bearer`` API key, or else the console session cookie, which
    the JSON API accepts only with the page's ``X-CSRF-Token`` (any method).

    Async so the hot path (a key checked in the last seconds) costs no hop to the thread pool; a
    database look-up goes to the pool.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization")
    if header:
        secret = bearer_secret(header)
        if secret is None:
            raise HTTPException(401, "use 'Authorization: Bearer <API key>'", {"WWW-Authenticate": "Bearer"})
        principal: Principal | None = auth_service.cached_api_key_principal(secret)
        if principal is None:
            try:
                principal = await run_in_threadpool(
                    auth_service.api_key_principal, request.app.state.read_sessionmaker, secret
                )
            except auth_service.AuthError as exc:
                raise HTTPException(401, exc.reason, {"WWW-Authenticate": "Bearer"}) from None
    else:
        principal = await run_in_threadpool(_console_principal_from_cookie, request)
    request.state.principal = principal
    return principal


def bearer_secret(header: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value; None when it is not one."""
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


def recently_checked_key(scope: Scope, needed: str) -> Principal | None:
    """For code in front of the routes (plain ASGI): the caller when its API key was checked in
    the last seconds and holds ``needed`` — no I/O. None means "let the route decide": no key, a
    key not in the cache, a malformed header or a missing scope all get the route's own answer."""
    header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
    secret = bearer_secret(header.decode("latin-1")) if header is not None else None
    principal = auth_service.cached_api_key_principal(secret) if secret else None
    return principal if principal is not None and principal.can(needed) else None


# Whoever presents SEAWALL_METRICS_TOKEN: a monitoring system, allowed only the operational endpoints.
METRICS_TOKEN_HOLDER = Principal(kind="token", name="metrics token", scopes=frozenset({"ops"}))


async def ops_principal(request: Request) -> Principal | None:
    """The caller of an operational endpoint (/readyz, /metrics): the metrics token holder, else as
    ``optional_principal`` — except that a browser's cookie without the page's CSRF token counts as
    nobody here rather than an error (these GETs change nothing; a link to them is harmless)."""
    header = request.headers.get("authorization")
    token = request.app.state.settings.metrics_token
    if header and token is not None:
        secret = bearer_secret(header)
        if secret is not None and hmac.compare_digest(secret.encode(), token.get_secret_value().encode()):
            return METRICS_TOKEN_HOLDER
    if not header and HEADER not in request.headers:
        return None
    return await optional_principal(request)


async def require_ops(request: Request) -> Principal:
    """A dependency admitting the metrics token or a credential with the 'ops' scope."""
    principal = await ops_principal(request)
    if principal is None:
        raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})
    if not principal.can("ops"):
        raise HTTPException(403, "this credential lacks the 'ops' scope")
    return principal


def _console_principal_from_cookie(request: Request) -> Principal | None:
    # A read-only session of its own: checking a credential must not take SQLite's write lock.
    with request.app.state.read_sessionmaker() as db:
        return _console_principal(request, db)


def _console_principal(request: Request, db: Session) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    user: User | None = auth_service.console_session_user(db, token) if token else None
    if user is None:
        return None
    # A browser calling the JSON API (/v1, /h, /m, /c) with its cookie must prove the request came from
    # our page, whatever the method: the SameSite=lax cookie rides along on a GET from a link or an
    # <img> on another site, and GETs here match (recording, firing webhooks) and fetch URLs.
    if not csrf_valid(request, request.headers.get(HEADER)):
        raise HTTPException(403, "missing or invalid CSRF token")
    return auth_service.user_principal(user)


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only callers that hold ``scope`` (401 without credentials, 403 without scope)."""

    async def dependency(principal: Principal | None = Depends(optional_principal)) -> Principal:
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


FORM_EXPIRED = "The form expired or did not come from this site. Reload the page and try again."


def console_form(scope: str) -> Callable[..., User]:
    """For console forms (POST): the CSRF token first — a request without it is refused (403) whoever
    sends it, before anything else is looked at — then login and the role's ``scope``."""

    def dependency(request: Request, csrf_token: str = Form(""), db: Session = Depends(get_db)) -> User:
        if not csrf_valid(request, csrf_token):
            raise HTTPException(403, FORM_EXPIRED)
        user = console_user(request, db)
        if not request.state.principal.can(scope):
            raise HTTPException(403, f"your role does not allow this ({scope})")
        return user

    return dependency


def principal_of(request: Request) -> Principal:
    """The console user's principal, set by ``console_user`` (every console route depends on it)."""
    principal: Principal = request.state.principal
    return principal
