"""Routes under /v1/exchanges: configure exchanges, see their status, run a sync now."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service
from seawall.lists.exchanges.schemas import ExchangeCreate, ExchangeOut, ExchangeUpdate, SyncOut
from seawall.web.deps import get_db, require

router = APIRouter(prefix="/v1/exchanges", tags=["exchanges"])


def _get(db: Session, name: str, principal: Principal) -> service.Exchange:
    try:
        exchange = service.get_exchange(db, name)
    except service.ExchangeNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    # A key limited to some lists learns nothing of the exchanges feeding the others.
    if not principal.can_use_list(exchange.hash_list.name):
        raise HTTPException(404, f"no exchange named {name!r}")
    return exchange


# Exchange settings say where a hotline's lists come from: curators (lists:write) may read them.
@router.get("", response_model=list[ExchangeOut])
def list_exchanges(
    db: Session = Depends(get_db), principal: Principal = Depends(require("lists:write"))
) -> list[ExchangeOut]:
    return [
        ExchangeOut(**service.status(e)) for e in service.list_exchanges(db) if principal.can_use_list(e.hash_list.name)
    ]


@router.post("", response_model=ExchangeOut, status_code=201)
def create_exchange(
    body: ExchangeCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
) -> ExchangeOut:
    try:
        exchange = service.create_exchange(
            db,
            request.app.state.settings,
            actor,
            name=body.name,
            type=body.type,
            list_name=body.list,
            config=body.config,
            interval_minutes=body.interval_minutes,
            enabled=body.enabled,
        )
    except lists_service.ListNotFound as exc:
        raise HTTPException(422, str(exc)) from None
    except lists_service.ListError as exc:
        raise HTTPException(409 if "exists already" in str(exc) else 422, str(exc)) from None
    db.commit()
    return ExchangeOut(**service.status(exchange))


@router.get("/{name}", response_model=ExchangeOut)
def show_exchange(
    name: str, db: Session = Depends(get_db), principal: Principal = Depends(require("lists:write"))
) -> ExchangeOut:
    return ExchangeOut(**service.status(_get(db, name, principal)))


@router.patch("/{name}", response_model=ExchangeOut)
def update_exchange(
    name: str,
    body: ExchangeUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
) -> ExchangeOut:
    exchange = _get(db, name, actor)
    try:
        service.update_exchange(db, request.app.state.settings, actor, exchange, **body.model_dump())
    except lists_service.ListError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return ExchangeOut(**service.status(exchange))


@router.post("/{name}/sync", response_model=SyncOut, summary="Sync now (wait=true) or queue a sync")
def sync(
    name: str,
    request: Request,
    wait: bool = Query(False, description="Run the sync in this request and answer its result."),
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("lists:write")),
) -> SyncOut:
    _get(db, name, actor)
    db.close()
    if not wait:
        from seawall.lists.exchanges.tasks import sync_exchange

        sync_exchange(name)
        return SyncOut(exchange=name, ok=True, queued=True)
    try:
        report = service.run_sync(request.app.state.sessionmaker, request.app.state.settings, name, actor=actor)
    except service.ExchangeBusy as exc:
        raise HTTPException(409, str(exc)) from None
    return SyncOut(**report.as_dict())
