"""Console pages for administration: users, API keys, settings (secrets masked), and the audit log
with its "verify chain" button. Admin pages are for ``admin``; the audit log for ``audit:read``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.models import User
from seawall.auth.permissions import SCOPES, Role
from seawall.web.app import render
from seawall.web.deps import console_form, console_require, get_db, principal_of

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 50


def _users_page(
    request: Request,
    db: Session,
    *,
    message: str | None = None,
    error: str | None = None,
    secret: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "admin/users.html",
        status_code=status_code,
        page="users",
        users=auth_service.list_users(db),
        roles=[r.value for r in Role],
        message=message,
        error=error,
        secret=secret,
    )


@router.get("/admin/users")
def users_page(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("admin"))
) -> Response:
    return _users_page(request, db)


@router.post("/admin/users")
def create_user(
    request: Request,
    username: str = Form(""),
    role: str = Form("analyst"),
    display_name: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_form("admin")),
) -> Response:
    try:
        user, password = auth_service.create_user(
            db, principal_of(request), username=username, role=role, display_name=display_name.strip()
        )
    except ValueError as exc:  # Conflict is a ValueError too
        db.rollback()
        return _users_page(request, db, error=f"No user was created: {exc}", status_code=422)
    db.commit()
    # The generated password is shown this once: only its hash is kept.
    return _users_page(request, db, message=f"User {user.username} created.", secret=(user.username, password))


def _user_action(request: Request, db: Session, username: str, action: str, role: str) -> Response:
    actor = principal_of(request)
    secret = None
    try:
        if action == "disable":
            if username == actor.name:
                raise ValueError("you cannot disable your own account")
            auth_service.set_user_disabled(db, actor, username, True)
            message = f"{username} is disabled; their sessions have ended."
        elif action == "enable":
            auth_service.set_user_disabled(db, actor, username, False)
            message = f"{username} is enabled."
        elif action == "password":
            password = auth_service.generate_password()
            auth_service.set_password(db, actor, username, password)
            secret = (username, password)
            message = f"{username} has a new password; their sessions have ended."
        elif action == "role":
            if username == actor.name and role != Role.admin.value:
                raise ValueError("you cannot take the admin role from yourself")
            auth_service.set_role(db, actor, username, role)
            message = f"{username} is now {role.replace('_', ' ')}."
        else:
            raise HTTPException(404, f"no action {action!r}")
    except auth_service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        db.rollback()
        return _users_page(request, db, error=f"Nothing was changed: {exc}", status_code=422)
    db.commit()
    return _users_page(request, db, message=message, secret=secret)


@router.post("/admin/users/{username}/{action}")
def user_action(
    username: str,
    action: str,
    request: Request,
    role: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_form("admin")),
) -> Response:
    """disable, enable, password (a new generated password, shown once) or role."""
    return _user_action(request, db, username, action, role)


def _keys_page(
    request: Request,
    db: Session,
    *,
    message: str | None = None,
    error: str | None = None,
    secret: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    from seawall.lists import service as lists_service

    return render(
        request,
        "admin/keys.html",
        status_code=status_code,
        page="keys",
        keys=auth_service.list_api_keys(db),
        scopes=SCOPES,
        list_names=[hl.name for hl in lists_service.list_lists(db)],
        message=message,
        error=error,
        secret=secret,
    )


@router.get("/admin/keys")
def keys_page(request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("admin"))) -> Response:
    return _keys_page(request, db)


@router.post("/admin/keys")
def create_key(
    request: Request,
    name: str = Form(""),
    scope: list[str] = Form([]),
    lists: list[str] = Form([]),
    db: Session = Depends(get_db),
    _: User = Depends(console_form("admin")),
) -> Response:
    try:
        new = auth_service.create_api_key(db, principal_of(request), name=name, scopes=scope, lists=lists or None)
    except ValueError as exc:
        db.rollback()
        return _keys_page(request, db, error=f"No key was created: {exc}", status_code=422)
    db.commit()
    # Shown once, on this answer only (no-store): only the key's SHA-256 is kept.
    response = _keys_page(request, db, message=f"Key {new.key.name} created.", secret=(new.key.name, new.secret))
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/admin/keys/{name}/revoke")
def revoke_key(
    name: str, request: Request, db: Session = Depends(get_db), _: User = Depends(console_form("admin"))
) -> Response:
    try:
        auth_service.revoke_api_key(db, principal_of(request), name)
    except auth_service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()
    return _keys_page(request, db, message=f"Key {name} is revoked.")


@router.get("/admin/settings")
def settings_page(request: Request, _: User = Depends(console_require("admin"))) -> Response:
    settings = request.app.state.settings
    return render(request, "admin/settings.html", page="settings", values=sorted(settings.masked().items()))


@router.get("/audit")
def audit_page(
    request: Request,
    actor: str = Query("", max_length=120),
    action: str = Query("", max_length=80),
    object_type: str = Query("", max_length=80),
    object_id: str = Query("", max_length=200),
    before: int | None = Query(None, ge=1),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("audit:read")),
) -> Response:
    return _audit_page(
        request, db, actor=actor, action=action, object_type=object_type, object_id=object_id, before=before
    )


def _audit_page(
    request: Request,
    db: Session,
    *,
    chain: audit.ChainReport | None = None,
    chain_error: str | None = None,
    **filters: object,
) -> Response:
    before = filters.get("before")
    events = audit.search(
        db,
        actor=str(filters.get("actor") or "") or None,
        action=str(filters.get("action") or "") or None,
        object_type=str(filters.get("object_type") or "") or None,
        object_id=str(filters.get("object_id") or "") or None,
        before=before if isinstance(before, int) else None,
        limit=AUDIT_PAGE + 1,
    )
    more = len(events) > AUDIT_PAGE
    events = events[:AUDIT_PAGE]
    return render(
        request,
        "admin/audit.html",
        page="audit",
        events=events,
        next_before=events[-1].seq if more and events else None,
        filters={k: ("" if v is None else v) for k, v in filters.items() if k != "before"},
        chain=chain,
        chain_error=chain_error,
    )


@router.post("/audit/verify")
def verify_chain(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_form("audit:read"))
) -> Response:
    """The whole chain checked with the audit key, as ``seawall audit verify`` does."""
    chain, problem = None, None
    # The whole chain is read in a read session, after the login check's transaction has ended: on
    # SQLite that one holds the write lock, and a long walk must not keep every writer waiting.
    db.rollback()
    try:
        with request.app.state.read_sessionmaker() as reads:
            chain = audit.verify(reads, request.app.state.settings)
    except audit.AuditKeyError as exc:
        problem = str(exc)
    if chain is not None:  # (without the audit key nothing can be recorded either)
        audit.record(db, principal_of(request), "audit.verify", "audit", "", {"ok": chain.ok, "checked": chain.checked})
        db.commit()
    return _audit_page(request, db, chain=chain, chain_error=problem)
