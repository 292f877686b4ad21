"""HMA's exchanges API (/c/exchanges…, /c/exchange/<name>…) over Seawall's exchanges.

In HMA an exchange is named after the bank it fills and owns it. Here ``POST /c/exchanges`` creates
both: a hash list named ``bank`` and an exchange of the same name feeding it. HMA's exchange API
names are Seawall's exchange types (file, seawall, ncmec, stopncii, sample and plugins); an API's
``api_json`` is the type's config, its ``credential_json`` the type's secret fields. Seawall keeps
credentials per exchange, sealed with the instance key, never per API type.

Scopes follow /v1/exchanges: reading an exchange's settings needs ``lists:write`` (they say where a
hotline's lists come from), creating, changing and deleting one needs ``admin`` (an exchange fills a
list every caller matches against); a key limited to some lists sees only the exchanges feeding them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service as exchanges
from seawall.lists.exchanges.base import ExchangeType, exchange_types, get_exchange_type
from seawall.lists.exchanges.models import Exchange
from seawall.lists.models import Entry, HashList
from seawall.matching.hma import _bool, _HmaRoute, _loads, _timestamp
from seawall.web.deps import get_db, get_read_db, raw_body, require

EXCHANGE_BANK = re.compile(r"^[A-Z0-9_]+$")
# Set by HMA's own form (or implied by the route) rather than the type's config.
_HMA_FIELDS = {"name", "api", "enabled"}


def _error(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


def _json(raw: bytes) -> Any:
    return _loads(raw or b"null", "this endpoint expects a json object payload")


def _object(raw: bytes) -> dict[str, Any]:
    body = _json(raw)
    if not isinstance(body, dict):
        raise _error(400, "this endpoint expects a json object payload")
    return body


def _api(name: str) -> type[ExchangeType]:
    try:
        return get_exchange_type(name)
    except KeyError:
        raise _error(400, f"no such Exchange API '{name}'") from None


def _secrets(api: type[ExchangeType]) -> set[str]:
    return api.secret_fields()


def _kind(annotation: Any) -> str:
    text = str(annotation)
    if annotation is bool or "bool" in text:
        return "boolean"
    if annotation in (int, float) or text.startswith(("int", "float")) or "int |" in text:
        return "number"
    if "list[" in text:
        return "list_of_string"
    return "string"


def _fields(api: type[ExchangeType], names: set[str] | None, skip: set[str]) -> list[dict[str, Any]]:
    """HMA's form descriptors (name, type, required, default, help, choices) of a type's config fields."""
    out = []
    for name, field in api.Config.model_fields.items():
        if name in skip or (names is not None and name not in names):
            continue
        required = field.is_required()
        default = None if required or isinstance(field.default, SecretStr) else field.get_default()
        if not isinstance(default, str | int | float | bool | list | type(None)):
            default = str(default)
        out.append(
            {
                "name": name,
                "type": _kind(field.annotation),
                "required": required,
                "default": default,
                "help": field.description or "",
                "choices": None,
            }
        )
    return out


def _get(db: Session, name: str, principal: Principal) -> Exchange:
    exchange = db.scalar(select(Exchange).where(Exchange.name == name))
    # A key limited to some lists learns nothing of the exchanges feeding the others.
    if exchange is None or not principal.can_use_list(exchange.hash_list.name):
        raise _error(404, f"Exchange '{name}' not found")
    return exchange


def _has_credentials(exchange: Exchange, api: type[ExchangeType] | None) -> dict[str, Any]:
    secrets = _secrets(api) if api is not None else set()
    present = any(exchange.config.get(k) for k in secrets)
    return {"supports_auth": bool(secrets), "has_credentials": present, "source": "exchange" if present else None}


def _describe(exchange: Exchange) -> dict[str, Any]:
    """HMA's exchange config: name, api, enabled and the type's fields (secrets never, not even masked)."""
    try:
        api: type[ExchangeType] | None = get_exchange_type(exchange.type)
    except KeyError:  # a plugin uninstalled since: its settings are not shown
        api = None
    shown = {k: v for k, v in exchanges.masked_config(exchange).items() if api is not None and k not in _secrets(api)}
    return {
        **shown,
        "name": exchange.name,
        "api": exchange.type,
        "enabled": exchange.enabled,
        "bank": exchange.hash_list.name,
        "credential_status": _has_credentials(exchange, api),
    }


def _ts(moment: datetime | None) -> int | None:
    return _timestamp(moment) if moment is not None else None


def _check_credentials(api: type[ExchangeType], credentials: Any) -> dict[str, Any]:
    """The secret fields a ``credential_json`` sets; errors never repeat what was sent."""
    if credentials is None or credentials == {}:
        return {}
    secrets = _secrets(api)
    if not secrets:
        raise _error(400, f"the '{api.name}' exchange API takes no credentials")
    if not isinstance(credentials, dict):
        raise _error(400, "credential_json must be an object")
    if not set(credentials) <= secrets:
        raise _error(400, f"credential_json may only have the fields: {', '.join(sorted(secrets))}")
    if not all(isinstance(v, str) and v and len(v) <= 4096 and "\x00" not in v for v in credentials.values()):
        raise _error(400, "each credential is non-empty text (at most 4096 characters)")
    return dict(credentials)


router = APIRouter(tags=["HMA compatibility"], route_class=_HmaRoute)


@router.get("/c/exchanges/apis", summary="HMA: the exchange APIs (Seawall's exchange types)")
def hma_exchange_apis(_: Principal = Depends(require("lists:read"))) -> list[str]:
    return list(exchange_types())


@router.get("/c/exchanges/api/{api_name}", summary="HMA: whether an exchange API takes credentials")
def hma_exchange_api(api_name: str, _: Principal = Depends(require("lists:read"))) -> dict[str, bool]:
    api = _api(api_name)
    # Seawall keeps credentials per exchange: none is ever set for a whole API type.
    return {"supports_authentification": bool(_secrets(api)), "has_set_authentification": False}


@router.post("/c/exchanges/api/{api_name}", summary="HMA: API-level credentials (Seawall: per exchange only)")
def hma_exchange_api_update(
    api_name: str, _: Principal = Depends(require("admin")), raw: bytes = Depends(raw_body)
) -> dict[str, bool]:
    api = _api(api_name)
    body = _object(raw)
    if body.get("credential_json"):
        _check_credentials(api, body["credential_json"])
        raise _error(
            400,
            "Seawall keeps credentials per exchange: give them as credential_json when creating the "
            "exchange, or POST them to /c/exchange/<name>/credentials",
        )
    return {"supports_authentification": bool(_secrets(api)), "has_set_authentification": False}


@router.get("/c/exchanges/api/{api_name}/schema", summary="HMA: the fields an exchange API's config takes")
def hma_exchange_api_schema(api_name: str, _: Principal = Depends(require("lists:read"))) -> dict[str, Any]:
    api = _api(api_name)
    secrets = _secrets(api)
    return {
        "config_schema": {"fields": _fields(api, None, _HMA_FIELDS | secrets)},
        "credentials_schema": {"fields": _fields(api, secrets, set())} if secrets else None,
    }


@router.get("/c/exchanges", summary="HMA: the exchanges' names")
def hma_exchanges(
    db: Session = Depends(get_read_db), principal: Principal = Depends(require("lists:write"))
) -> list[str]:
    return [e.name for e in exchanges.list_exchanges(db) if principal.can_use_list(e.hash_list.name)]


@router.post("/c/exchanges", status_code=201, summary="HMA: create an exchange and the bank it fills")
def hma_exchange_create(
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
    raw: bytes = Depends(raw_body),
) -> dict[str, str]:
    body = _object(raw)
    bank = body.get("bank")
    if bank is None:
        raise _error(400, "bank is required")
    if not isinstance(bank, str) or not EXCHANGE_BANK.match(bank):
        raise _error(400, "Field `bank` must match /^[A-Z0-9_]+$/")
    api_json = body.get("api_json", {})
    if api_json is None:
        api_json = {}
    if not isinstance(api_json, dict):
        raise _error(400, "Field `api_json` must be object")
    api_name = body.get("api")
    if api_name is None:
        raise _error(400, "Field `api_type` is required")
    if not isinstance(api_name, str) or api_name.strip().lower() not in exchange_types():
        raise _error(400, f"No such exchange type '{api_name}'")
    api = get_exchange_type(api_name)
    config = {k: v for k, v in api_json.items() if k not in _HMA_FIELDS}
    if set(config) & _secrets(api):
        raise _error(400, "credentials go in credential_json, not api_json")
    config.update(_check_credentials(api, body.get("credential_json")))
    enabled = api_json.get("enabled", True)
    if db.scalar(select(Exchange.id).where(Exchange.name == bank)) is not None or db.scalar(
        select(HashList.id).where(HashList.name == bank)
    ):
        raise _error(403, f"a bank or exchange named '{bank}' exists already")
    try:
        lists_service.create_list(
            db, actor, name=bank, kind="hash", description=f"filled by the {api.name} exchange {bank}"
        )
        exchanges.create_exchange(
            db,
            request.app.state.settings,
            actor,
            name=bank,
            type=api.name,
            list_name=bank,
            config=config,
            enabled=bool(enabled),
        )
    except lists_service.ListForbidden as exc:
        raise _error(403, str(exc)) from None
    except lists_service.ListError as exc:
        raise _error(400, f"Failed to parse `api_json` - verify all fields are supplied. {exc}") from None
    db.commit()
    return {"message": "Created successfully"}


@router.get("/c/exchange/{exchange_name}", summary="HMA: one exchange's configuration")
def hma_exchange(
    exchange_name: str, db: Session = Depends(get_read_db), principal: Principal = Depends(require("lists:write"))
) -> dict[str, Any]:
    return _describe(_get(db, exchange_name, principal))


@router.get("/c/exchange/{exchange_name}/status", summary="HMA: an exchange's fetch status")
def hma_exchange_status(
    exchange_name: str, db: Session = Depends(get_read_db), principal: Principal = Depends(require("lists:write"))
) -> dict[str, Any]:
    exchange = _get(db, exchange_name, principal)
    success, failure = exchange.last_success_at, exchange.last_failure_at
    finished = max((m for m in (success, failure) if m is not None), default=None)
    succeeded = None if finished is None else (success is not None and (failure is None or success >= failure))
    fetched = db.scalar(
        select(func.count())
        .select_from(Entry)
        .where(
            Entry.list_id == exchange.list_id,
            Entry.source == exchanges.source_tag(exchange.name),
            Entry.status != "retracted",
        )
    )
    running = not exchanges.lease_free(exchange)
    return {
        # HMA 2.x's FetchStatus
        "checkpoint_ts": _ts(success),
        "running_fetch_start_ts": _ts(exchange.running_since) if running else None,
        "last_fetch_complete_ts": _ts(finished),
        "last_fetch_succeeded": succeeded,
        "up_to_date": bool(succeeded) and not running and not exchanges.is_due(exchange),
        "fetched_items": int(fetched or 0),
        # the older shape HMA's clients also read
        "last_fetch_time": _ts(finished) or 0,
        "checkpoint_time": _ts(success) or 0,
        "success": bool(succeeded),
    }


@router.put("/c/exchange/{exchange_name}", summary="HMA: enable or disable an exchange")
def hma_exchange_update(
    exchange_name: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
    raw: bytes = Depends(raw_body),
) -> dict[str, Any]:
    exchange = _get(db, exchange_name, actor)
    body = _object(raw)
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise _error(400, "enabled must be true or false")
    exchanges.update_exchange(db, request.app.state.settings, actor, exchange, enabled=enabled)
    db.commit()
    return _describe(exchange)


@router.delete("/c/exchange/{exchange_name}", summary="HMA: delete an exchange (and, by default, its bank)")
def hma_exchange_delete(
    exchange_name: str,
    request: Request,
    delete_bank: str | None = None,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
) -> dict[str, str]:
    also_bank = _bool(delete_bank, default=True)
    exchange = db.scalar(select(Exchange).where(Exchange.name == exchange_name))
    if exchange is None or not actor.can_use_list(exchange.hash_list.name):
        return {"message": "Exchange deleted"}  # as HMA: deleting what is not there succeeds
    hash_list = exchange.hash_list
    try:
        exchanges.delete_exchange(db, actor, exchange)
    except exchanges.ExchangeBusy as exc:
        raise _error(409, str(exc)) from None
    # HMA's exchange owns its bank: its entries are retracted with it (feed followers see that).
    if also_bank and hash_list.deleted_at is None and not hash_list.allowlist:
        lists_service.delete_list(db, actor, hash_list)
    db.commit()
    if also_bank:
        lists_service.retract_deleted(request.app.state.sessionmaker, actor)
    return {"message": "Exchange deleted"}


@router.get("/c/exchange/{exchange_name}/credentials", summary="HMA: whether an exchange has credentials")
def hma_exchange_credentials(
    exchange_name: str, db: Session = Depends(get_read_db), principal: Principal = Depends(require("lists:write"))
) -> dict[str, Any]:
    exchange = _get(db, exchange_name, principal)
    return _has_credentials(exchange, get_exchange_type(exchange.type))


@router.post("/c/exchange/{exchange_name}/credentials", summary="HMA: set or clear an exchange's credentials")
def hma_exchange_credentials_update(
    exchange_name: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("admin")),
    raw: bytes = Depends(raw_body),
) -> dict[str, Any]:
    exchange = _get(db, exchange_name, actor)
    api = get_exchange_type(exchange.type)
    body = _object(raw)
    if set(body) != {"credential_json"}:
        raise _error(400, 'the body is exactly {"credential_json": {...}} (null or {} clears them)')
    given = _check_credentials(api, body["credential_json"])
    # Clearing sets every secret field to nothing; a type that requires one refuses that (400).
    update = given or {k: None for k in _secrets(api)}
    if update:
        try:
            exchanges.update_exchange(db, request.app.state.settings, actor, exchange, config=update)
        except lists_service.ListError as exc:
            raise _error(400, f"invalid credentials: {exc}") from None
    db.commit()
    return _has_credentials(exchange, api)
