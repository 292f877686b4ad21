"""Routes for matching (/v1/hash, /v1/match…), policies, webhooks and quarantine."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from fastapi import Query as QueryParam
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.fetch import Fetched, FetchError, fetch_for_caller
from seawall.matching import policies, service, webhooks
from seawall.matching.indexes import MatchIndexes
from seawall.matching.schemas import (
    MAX_SIGNALS_PER_REQUEST,
    BatchItem,
    BatchOut,
    BatchRequest,
    DeliveryOut,
    MatchOut,
    MatchRequest,
    PolicyIn,
    PolicyOut,
    QuarantineOut,
    SimpleMatches,
    TextMatchIn,
    UrlMatchIn,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
)
from seawall.media.errors import MediaError
from seawall.signals.base import get_signal_type
from seawall.web.deps import get_db, recently_checked_key, require

router = APIRouter(prefix="/v1", tags=["matching"])
admin_router = APIRouter(prefix="/v1", tags=["policies and webhooks"])
_CHUNK = 1024 * 1024


def _fresh_indexes(state: State) -> MatchIndexes:
    indexes: MatchIndexes = state.match_indexes
    indexes.ensure_fresh()
    return indexes


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@contextmanager
def spooled_upload(upload: UploadFile, settings: Settings) -> Iterator[Path]:
    """The upload as a temporary file, refused past the size limit; removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="seawall-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            size = 0
            while chunk := upload.file.read(_CHUNK):
                size += len(chunk)
                if size > settings.max_file_bytes:
                    raise HTTPException(413, f"upload is over the {settings.max_file_bytes}-byte limit")
                out.write(chunk)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def hash_path(path: Path, label: str, settings: Settings) -> dict[str, Any]:
    from seawall.signals.hashing import hash_for_request

    try:
        hashed = hash_for_request(path, settings, dihedral=True, regions=settings.match_regions)
    except MediaError as exc:
        raise HTTPException(422, f"{label}: {exc.reason}") from None
    hashed["path"] = label
    return hashed


def _validated(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Values normalised, by the signal type's registry name (``PDQ`` is ``pdq``)."""
    signals: dict[str, list[str]] = {}
    for signal_type, value in pairs:
        try:
            kind = get_signal_type(signal_type)
            normalised = kind.validate(value)
        except KeyError:
            raise HTTPException(422, f"unknown signal type {signal_type!r}") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        signals.setdefault(kind.name, []).append(normalised)
    return signals


def _respond(outcome: service.MatchOutcome, signals: dict[str, Any] | None = None) -> MatchOut:
    return MatchOut(**outcome.as_dict(), signals=signals)


@router.post("/hash", summary="Signals of an uploaded file (the `seawall hash` shape)")
def hash_upload(file: UploadFile, request: Request, _: Principal = Depends(require("hash"))) -> dict[str, Any]:
    settings = _settings(request)
    with spooled_upload(file, settings) as path:
        return hash_path(path, file.filename or "upload", settings)


@router.post("/match", response_model=MatchOut, summary="Match an uploaded file, JSON signals, or a fetched URL")
async def match(request: Request, principal: Principal = Depends(require("match"))) -> MatchOut:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile) and not hasattr(upload, "file"):
            raise HTTPException(422, "multipart requests carry the content in the field 'file'")
        lists = [str(v) for v in form.getlist("lists")] or None
        return await run_in_threadpool(_match_upload, request, principal, upload, lists)  # type: ignore[arg-type]
    body = await run_in_threadpool(_parse_match, await request.body())  # a big JSON body parses off the loop
    fetched = None
    if body.url and not body.signals:  # fetched on the event loop: a slow server holds no thread
        try:
            fetched = await fetch_for_caller(_settings(request), body.url, service.caller_key(principal))
        except FetchError as exc:
            raise HTTPException(422, str(exc)) from None
    return await run_in_threadpool(_match_json, request, principal, body, fetched)


def _match_upload(request: Request, principal: Principal, upload: UploadFile, lists: list[str] | None) -> MatchOut:
    settings = _settings(request)
    with spooled_upload(upload, settings) as path:
        hashed = hash_path(path, upload.filename or "upload", settings)
    return _run(request.app.state, principal, service.Query.from_hash(hashed), lists, None, hashed)


def _parse_match(raw: bytes) -> MatchRequest:
    try:
        return MatchRequest.model_validate_json(raw)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _match_json(request: Request, principal: Principal, body: MatchRequest, fetched: Fetched | None) -> MatchOut:
    if body.url and fetched is not None:
        settings = _settings(request)
        if fetched.status != 200:
            raise HTTPException(422, f"fetching {body.url} answered HTTP {fetched.status}")
        fd, name = tempfile.mkstemp(prefix="seawall-fetch-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(fetched.body)
            hashed = hash_path(Path(name), fetched.url, settings)
        finally:
            Path(name).unlink(missing_ok=True)
        query = service.Query.from_hash(hashed)
        query.url = body.url
        return _run(request.app.state, principal, query, body.lists, body.include_low_quality, hashed)
    query = service.Query(signals=_validated(body.signal_pairs()), url=body.url)
    return _run(request.app.state, principal, query, body.lists, body.include_low_quality, None)


def _run(
    state: State,
    principal: Principal,
    query: service.Query,
    lists: list[str] | None,
    include_low_quality: bool | None,
    hashed: dict[str, Any] | None,
    hits: list[service.Hit] | None = None,
) -> MatchOut:
    """Match (or, given ``hits``, only describe and decide them), record a match, and answer."""
    settings: Settings = state.settings
    # Matching only reads; only a match is written, in a short transaction of its own.
    with state.read_sessionmaker() as db:
        outcome = service.evaluate(
            db,
            _fresh_indexes(state),
            query,
            settings,
            principal,
            lists=lists,
            include_low_quality=include_low_quality,
            hits=hits,
        )
    if outcome.matches:
        service.record_matches(state.sessionmaker, settings, principal, [(query, outcome)])
    return _respond(outcome, hashed)


# A miss's answer, less its match id: only the id differs from one miss to the next. Encoded as
# Starlette's JSONResponse encodes, so the bytes are the same as the route's own.
_MISS_HEAD, _MISS_TAIL = (
    json.dumps(
        service.MatchOutcome("@", [], policies.Decision()).as_dict() | {"signals": None},
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        separators=(",", ":"),
    )
    .encode()
    .split(b'"@"')
)


async def _lookup(state: State, principal: Principal, query: service.Query, lists: list[str] | None) -> Response:
    """One hash. A miss is answered on the event loop from memory (no thread hop, no database); a hit,
    rare, is described, decided and recorded in the thread pool."""
    indexes: MatchIndexes = state.match_indexes
    if indexes.is_stale():
        await run_in_threadpool(indexes.ensure_fresh)
    hits = service.find_hits(None, indexes, query, state.settings, lists=lists, principal=principal)
    if hits:
        out = await run_in_threadpool(_run, state, principal, query, lists, None, None, hits)
        return JSONResponse(out.model_dump())
    body = b"".join((_MISS_HEAD, b'"', str(uuid.uuid4()).encode(), b'"', _MISS_TAIL))
    return Response(body, media_type="application/json")


@router.get("/match", response_model=MatchOut, summary="Look up one hash")
async def match_one(
    request: Request,
    signal_type: str,
    value: str,
    lists: list[str] | None = QueryParam(None),
    principal: Principal = Depends(require("match")),
) -> Response:
    """The hottest route. Most calls are answered before they get here, by ``SingleLookup`` (the same
    answer, without the framework's routing and dependency machinery); this route answers the rest."""
    query = service.Query(signals=_validated([(signal_type, value)]))
    return await _lookup(request.app.state, principal, query, lists)


_SINGLE_ROUTE = next(
    r for r in router.routes if isinstance(r, APIRoute) and r.path == "/v1/match" and "GET" in (r.methods or ())
)


class SingleLookup:
    """GET /v1/match as a plain ASGI middleware: FastAPI's routing, dependency solving and parameter
    validation cost about two thirds of a lookup, and this is the call partners make most.

    It answers only when its answer is certainly the route's own: exactly the parameters
    ``signal_type`` and ``value`` (and any ``lists``), a valid value, and an API key with the
    ``match`` scope checked in the last seconds (so no I/O). Anything else (no key, a key not
    cached, a cookie, a bad value, a repeated or unknown parameter…) goes on to the route, which
    answers as it always has, errors included. Installed inside the observability middleware, so
    request ids, metrics and access lines are the same."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/match" and scope["method"] == "GET":
            args = _single_lookup_args(scope)
            if args is not None:
                response = await _lookup(scope["app"].state, *args)
                scope["route"] = _SINGLE_ROUTE  # what routing would have set (the metrics name it)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _single_lookup_args(scope: Scope) -> tuple[Principal, service.Query, list[str] | None] | None:
    """(principal, query, lists) when the fast path may answer, else None: the route decides."""
    if scope.get("root_path"):
        return None
    principal = recently_checked_key(scope, "match")
    if principal is None:
        return None
    signal_type: str | None = None
    value: str | None = None
    lists: list[str] = []
    for name, given in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        if name == "signal_type" and signal_type is None:
            signal_type = given
        elif name == "value" and value is None:
            value = given
        elif name == "lists":
            lists.append(given)
        else:
            return None
    if signal_type is None or value is None:
        return None
    try:
        signals = _validated([(signal_type, value)])
    except HTTPException:
        return None
    return principal, service.Query(signals=signals), lists or None


@router.post(
    "/match/batch", response_model=BatchOut, summary=f"Look up to {MAX_SIGNALS_PER_REQUEST} hashes in one request"
)
def match_batch(body: BatchRequest, request: Request, principal: Principal = Depends(require("match"))) -> BatchOut:
    """Every hash of the batch is searched in one index call per list; only the hits are then
    described, decided (one read of the database for all of them) and recorded."""
    state = request.app.state
    indexes, settings = _fresh_indexes(state), _settings(request)
    items: list[tuple[str, str] | None] = []
    errors: dict[int, str] = {}
    for i, item in enumerate(body.signals):
        try:
            ((name, (value,)),) = _validated([(item.signal_type, item.value)]).items()
            items.append((name, value))
        except HTTPException as exc:
            items.append(None)
            errors[i] = exc.detail
    found = service.search_signals(indexes, items, lists=body.lists, principal=principal)
    hit = [i for i, hits in enumerate(found) if hits]
    outcomes: dict[int, service.MatchOutcome] = {}
    if hit:
        with state.read_sessionmaker() as db:
            decided = service.decide_hits(db, indexes, [found[i] for i in hit], [None] * len(hit), principal)
        outcomes = {i: outcome for i, outcome in zip(hit, decided, strict=True) if outcome.matches}
    results: list[BatchItem] = []
    matched: list[tuple[service.Query, service.MatchOutcome]] = []
    for i, (item, valid) in enumerate(zip(body.signals, items, strict=True)):
        if valid is None:
            results.append(
                BatchItem(signal_type=item.signal_type, value=item.value, matches=[], actions=[], error=errors[i])
            )
            continue
        outcome = outcomes.get(i)
        if outcome is not None:
            matched.append((service.Query(signals={valid[0]: [valid[1]]}), outcome))
        results.append(
            BatchItem(
                signal_type=item.signal_type,
                value=valid[1],
                matches=outcome.matches if outcome else [],
                actions=outcome.decision.actions if outcome else [],
            )
        )
    service.record_matches(state.sessionmaker, settings, principal, matched)
    return BatchOut(results=results)


@router.post("/match/url", response_model=SimpleMatches, summary="Match a URL against URL lists")
def match_url(body: UrlMatchIn, request: Request, principal: Principal = Depends(require("match"))) -> SimpleMatches:
    from seawall.lists.urls import normalize_url

    try:
        normalize_url(body.url)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    outcome = _run(request.app.state, principal, service.Query(url=body.url), body.lists, None, None)
    keep = ("list", "entry_id", "value", "level", "category", "labels", "allowlist")
    return SimpleMatches(matches=[{k: m.get(k) for k in keep} for m in outcome.matches])


@router.post("/match/text", response_model=SimpleMatches, summary="Match text against keyword lists")
def match_text(body: TextMatchIn, request: Request, principal: Principal = Depends(require("match"))) -> SimpleMatches:
    outcome = _run(request.app.state, principal, service.Query(text=body.text), body.lists, None, None)
    ordered = sorted(outcome.matches, key=lambda m: (m["start"], m["end"], m["entry_id"]))
    keep = ("list", "entry_id", "term", "start", "end", "category", "labels")
    return SimpleMatches(matches=[{k: m.get(k) for k in keep} for m in ordered])


# ---- policies, webhooks, quarantine ------------------------------------------------------------


@admin_router.get("/policies", response_model=list[PolicyOut], tags=["policies and webhooks"])
def list_policies(db: Session = Depends(get_db), _: Principal = Depends(require("admin"))) -> list[PolicyOut]:
    return [PolicyOut(**policies.policy_dict(p)) for p in policies.list_policies(db)]


@admin_router.put("/policies/{name}", response_model=PolicyOut)
def save_policy(
    name: str, body: PolicyIn, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))
) -> PolicyOut:
    try:
        policy = policies.upsert_policy(db, actor, name=name, **body.model_dump())
    except policies.PolicyError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return PolicyOut(**policies.policy_dict(policy))


@admin_router.delete("/policies/{name}", status_code=204)
def delete_policy(name: str, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))) -> None:
    try:
        policies.delete_policy(db, actor, name)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()


@admin_router.get("/webhooks", response_model=list[WebhookOut])
def list_webhooks(db: Session = Depends(get_db), _: Principal = Depends(require("admin"))) -> list[WebhookOut]:
    return [WebhookOut.model_validate(w) for w in webhooks.list_webhooks(db)]


@admin_router.post("/webhooks", response_model=WebhookCreated, status_code=201)
def create_webhook(
    body: WebhookIn, request: Request, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))
) -> WebhookCreated:
    try:
        hook, secret = webhooks.create_webhook(db, _settings(request), actor, **body.model_dump())
    except webhooks.WebhookError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return WebhookCreated(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


@admin_router.get("/webhooks/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    state: str | None = QueryParam(None, description="pending, delivered or dead (the dead-letter list)"),
    limit: int = QueryParam(100, ge=1, le=1000),
    db: Session = Depends(get_db),
    _: Principal = Depends(require("admin")),
) -> list[DeliveryOut]:
    return [DeliveryOut.model_validate(d) for d in webhooks.deliveries(db, state, limit)]


@admin_router.post("/webhooks/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut)
def redeliver(
    delivery_id: int, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))
) -> DeliveryOut:
    try:
        delivery = webhooks.redeliver(db, actor, delivery_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()
    db.refresh(delivery)
    return DeliveryOut.model_validate(delivery)


@admin_router.get("/quarantine", response_model=list[QuarantineOut], summary="Quarantined entries of your lists")
def list_quarantine(
    db: Session = Depends(get_db), principal: Principal = Depends(require("lists:read"))
) -> list[QuarantineOut]:
    admin, who = principal.can("admin"), service.caller_key(principal)
    return [
        QuarantineOut(
            entry_id=row.entry_id,
            list=list_name,
            since=row.since,
            reason=row.reason,
            everyone=row.everyone,
            applies_to_you=row.everyone or who in (row.callers or ()),
            # Which other partners' traffic made the spike is the operator's to know.
            callers=list(row.callers or ()) if admin else None,
        )
        for row, list_name in service.list_quarantine(db, principal)
    ]


@admin_router.post("/quarantine/{entry_id}/release", status_code=204, summary="End a quarantine (admin)")
def release(entry_id: int, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))) -> None:
    try:
        service.release_quarantine(db, actor, entry_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()


@admin_router.post(
    "/quarantine/{entry_id}/everyone", status_code=204, summary="Pause the entry's actions for every caller (admin)"
)
def quarantine_everyone(
    entry_id: int, db: Session = Depends(get_db), actor: Principal = Depends(require("admin"))
) -> None:
    try:
        service.quarantine_everyone(db, actor, entry_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()
