"""Admin and audit routes under /v1."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.permissions import Principal
from seawall.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ChainStatus,
    Me,
    UserCreate,
    UserCreated,
    UserOut,
)
from seawall.web.deps import get_db, optional_principal, require

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get("/me", response_model=Me, summary="Who this credential is and what it may do")
def me(principal: Principal | None = Depends(optional_principal)) -> Me:
    if principal is None:
        raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})
    return Me(
        kind=principal.kind,
        name=principal.name,
        role=principal.role,
        scopes=sorted(principal.scopes),
        lists=sorted(principal.lists) if principal.lists is not None else None,
    )


@router.get("/admin/users", response_model=list[UserOut])
def list_users(db: Session = Depends(get_db), _: Principal = Depends(require("admin"))) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in auth_service.list_users(db)]


@router.post("/admin/users", response_model=UserCreated, status_code=201)
def create_user(
    body: UserCreate, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))
) -> UserCreated:
    try:
        user, password = auth_service.create_user(
            db, actor, username=body.username, role=body.role, password=body.password, display_name=body.display_name
        )
    except auth_service.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return UserCreated(**UserOut.model_validate(user).model_dump(), password=password)


@router.post("/admin/users/{username}/disable", response_model=UserOut)
def disable_user(username: str, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))) -> UserOut:
    try:
        user = auth_service.set_user_disabled(db, actor, username, True)
    except auth_service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()
    return UserOut.model_validate(user)


@router.get("/admin/keys", response_model=list[ApiKeyOut])
def list_keys(db: Session = Depends(get_db), _: Principal = Depends(require("admin"))) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in auth_service.list_api_keys(db)]


@router.post("/admin/keys", response_model=ApiKeyCreated, status_code=201)
def create_key(
    body: ApiKeyCreate, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))
) -> ApiKeyCreated:
    try:
        new = auth_service.create_api_key(db, actor, name=body.name, scopes=body.scopes, lists=body.lists)
    except auth_service.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return ApiKeyCreated(**ApiKeyOut.model_validate(new.key).model_dump(), key=new.secret)


@router.delete("/admin/keys/{name}", response_model=ApiKeyOut)
def revoke_key(name: str, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))) -> ApiKeyOut:
    try:
        key = auth_service.revoke_api_key(db, actor, name)
    except auth_service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()
    return ApiKeyOut.model_validate(key)


@router.get("/audit/verify", response_model=ChainStatus, tags=["audit"])
def verify_audit(
    request: Request, db: Session = Depends(get_db), _: Principal = Depends(require("audit:read"))
) -> ChainStatus:
    try:
        report = audit.verify(db, request.app.state.settings)
    except audit.AuditKeyError as exc:
        # The server's configuration, not the chain: say so rather than "tampered".
        raise HTTPException(503, str(exc)) from None
    return ChainStatus(
        ok=report.ok, checked=report.checked, problem=report.problem, seq=report.seq, message=report.describe()
    )
