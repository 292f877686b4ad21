"""HMA-compatible endpoints: /h (hashing), /m (matching), /c (bank curation), with HMA 2.x shapes.

A service integrated with Meta's Hasher-Matcher-Actioner switches to Seawall by changing its base
URL (and sending an API key: Seawall never matches for anonymous callers). Concepts map as:

- bank → hash list (same name; HMA's UPPER_WITH_UNDERSCORES names are valid Seawall list names);
- bank content → the entries added together (one per signal), grouped by an external id
  ``hma-content-<uuid>``; the content id is the group's smallest entry id. An entry added any other
  way is a content of its own, whose id is the entry id;
- signal types: ``pdq`` → pdq, ``video_md5`` → md5; Seawall's md5, sha1 and sha256 are accepted too.

Errors use HMA's shape ``{"message": ...}``. Lookups go through Seawall's matcher, so they are
recorded in the match log and policies, allowlists and webhooks apply. See docs/hma-compatibility.md.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.fetch import FetchBusy, FetchError, FetchRefused, fetch_for_caller
from seawall.lists import service as lists_service
from seawall.lists.models import Entry, HashList
from seawall.lists.records import EntryRecord
from seawall.matching import service
from seawall.matching.indexes import MatchIndexes
from seawall.media.budget import DecodeBusy
from seawall.media.errors import MediaError
from seawall.signals.base import get_signal_type
from seawall.web.deps import get_db, get_read_db, raw_body, require
from seawall.web.errors import bad_input


class _HmaRoute(APIRoute):
    """Answers errors in HMA's shape, ``{"message": ...}``, including auth and validation errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except StarletteHTTPException as exc:
                return JSONResponse(
                    {"message": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
                )
            except (DecodeBusy, FetchBusy) as exc:  # no free decode slot (503), too many fetches (429)
                status, retry = (503, str(exc.retry_after)) if isinstance(exc, DecodeBusy) else (429, "1")
                return JSONResponse({"message": str(exc)}, status_code=status, headers={"Retry-After": retry})
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return JSONResponse({"message": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)
            except Exception as exc:  # deep JSON, huge numbers: the caller's input, in HMA's shape
                known = bad_input(exc)
                if known is None:
                    raise
                return JSONResponse({"message": known[1]}, status_code=known[0])

        return answer


router = APIRouter(tags=["HMA compatibility"], route_class=_HmaRoute)

# HMA's name for a signal type → Seawall's. Seawall's own crypto names are accepted as extensions.
SIGNAL_NAMES: dict[str, str] = {"pdq": "pdq", "video_md5": "md5", "md5": "md5", "sha1": "sha1", "sha256": "sha256"}
# Seawall's name → the name HMA clients see in responses.
HMA_NAMES: dict[str, str] = {"pdq": "pdq", "md5": "video_md5", "sha1": "sha1", "sha256": "sha256"}
CONTENT_TYPES: dict[str, tuple[str, ...]] = {"photo": ("pdq",), "video": ("video_md5",)}
_ALLOWED_TYPES: dict[str, set[str]] = {
    "photo": {"pdq", "video_md5", "md5", "sha1", "sha256"},
    "video": {"video_md5", "md5", "sha1", "sha256"},
}
BANK_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
CONTENT_PREFIX = "hma-content-"
METADATA_KEYS = {"content_id", "content_uri", "json"}
MAX_NOTE = 255
_FIVE_YEARS = timedelta(days=365 * 5)


def _error(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _indexes(request: Request) -> MatchIndexes:
    indexes: MatchIndexes = request.app.state.match_indexes
    indexes.ensure_fresh()
    return indexes


def _bool(text: str | None, default: bool = False) -> bool:
    if text is None:
        return default
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise _error(400, "invalid boolean parameter - prefer true/false")


def _loads(raw: str | bytes, message: str) -> Any:
    """Parsed JSON, or a 400 saying ``message`` (or, for nesting past the recursion limit, saying so)."""
    try:
        return json.loads(raw)
    except ValueError:
        raise _error(400, message) from None
    except RecursionError as exc:
        status, said = bad_input(exc) or (400, message)
        raise _error(status, said) from None


def enabled_types(settings: Settings) -> list[str]:
    """The HMA names of the signal types the HMA surface shows (``hma_signal_types``; HMA's own
    default set unless the operator chose another), in the configured order."""
    return [name for name in dict.fromkeys(settings.hma_signal_types) if name in SIGNAL_NAMES]


def _seawall_signal(hma_name: str, settings: Settings) -> str:
    wanted = hma_name.strip().lower()
    if wanted not in enabled_types(settings):
        raise _error(400, f"No such SignalType '{hma_name}'")
    return SIGNAL_NAMES[wanted]


def _banks_param(text: str | None) -> list[str] | None:
    return [b.strip() for b in text.split(",") if b.strip()] if text else None


# ---- hashing ---------------------------------------------------------------------------------


def _requested_types(content_type: str, types: str | None, settings: Settings) -> list[str]:
    if content_type not in CONTENT_TYPES:
        raise _error(400, f"no such content_type: '{content_type}'")
    enabled = enabled_types(settings)
    if types is None:
        default = [t for t in CONTENT_TYPES[content_type] if t in enabled]
        if not default:
            raise _error(400, f"no enabled signal type for content_type '{content_type}'")
        return default
    wanted = list(dict.fromkeys(t.strip() for t in types.split(",") if t.strip()))
    for name in wanted:
        if name not in _ALLOWED_TYPES[content_type] or name not in enabled:
            raise _error(400, f"signal type '{name}' doesn't exist or is disabled")
    if not wanted:
        raise _error(400, "empty signal type selection")
    return wanted


def _hash_path(
    path: Path, label: str, content_type: str, types: list[str], settings: Settings
) -> tuple[dict[str, str], dict[str, Any]]:
    """HMA-named signals of a file, plus Seawall's hash object (with PDQ's 8 dihedral variants)."""
    from seawall.signals.hashing import hash_for_request

    needed = sorted({SIGNAL_NAMES[t] for t in types})
    try:
        hashed = hash_for_request(
            path, settings, signals=needed, dihedral="pdq" in needed, regions="pdq" in needed and settings.match_regions
        )
    except MediaError as exc:
        raise _error(400, f"cannot hash {label}: {exc.reason}") from None
    out: dict[str, str] = {}
    for name in types:
        value = hashed.get(SIGNAL_NAMES[name])
        if not isinstance(value, str):
            raise _error(400, f"cannot compute {name} for {label}: the content is a {hashed.get('media')}")
        out[name] = value
    hashed["path"] = label
    return out, hashed


@contextmanager
def _temporary(data: bytes) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="seawall-hma-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _content_type_of(header: str, override: str | None) -> str:
    if override:
        return override
    kind = header.lower()
    if kind.startswith("image"):
        return "photo"
    if kind.startswith("video"):
        return "video"
    raise _error(
        400,
        f"unsupported url ContentType: '{header}', "
        "if you know the expected type, provide it with the content_type query param",
    )


async def _hash_url(
    settings: Settings, url: str, content_type: str | None, types: str | None, principal: Principal
) -> tuple[dict[str, str], dict[str, Any]]:
    """Fetch with the SSRF-safe fetcher (HMA fetches whatever the client names; Seawall will not), on
    the event loop within the caller's share of fetches; hash in the thread pool."""
    if content_type is not None:
        _requested_types(content_type, types, settings)  # refuse a bad request before fetching
    try:
        fetched = await fetch_for_caller(settings, url, service.caller_key(principal))
    except FetchRefused as exc:
        status = 413 if "limit" in str(exc) else 400
        raise _error(
            status, "Content too large" if status == 413 else f"Invalid or unsafe URL provided: {exc}"
        ) from None
    except FetchError as exc:
        raise _error(400, f"Failed to fetch URL: {exc}") from None
    if fetched.status >= 400:
        raise _error(400, f"Failed to fetch URL: HTTP {fetched.status}")
    kind = _content_type_of(fetched.content_type, content_type)
    wanted = _requested_types(kind, types, settings)

    def work() -> tuple[dict[str, str], dict[str, Any]]:
        with _temporary(fetched.body) as path:
            return _hash_path(path, fetched.url, kind, wanted, settings)

    return await run_in_threadpool(work)


async def _hash_form(request: Request) -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    """The one uploaded file (its field name is the content type), hashed; also the plain form fields."""
    form = await request.form()
    files = [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    if not files:
        raise _error(400, "Missing multipart/form-data file upload")
    if len(files) > 1:
        raise _error(400, "Only one file allowed per request")
    content_type, upload = files[0]
    settings = _settings(request)
    wanted = _requested_types(content_type, request.query_params.get("types"), settings)

    def work() -> tuple[dict[str, str], dict[str, Any]]:
        fd, name = tempfile.mkstemp(prefix="seawall-hma-")
        try:
            with os.fdopen(fd, "wb") as out:
                size = 0
                while chunk := upload.file.read(1024 * 1024):
                    size += len(chunk)
                    if size > settings.max_file_bytes:
                        raise _error(413, "Content too large")
                    out.write(chunk)
            return _hash_path(Path(name), upload.filename or "upload", content_type, wanted, settings)
        finally:
            Path(name).unlink(missing_ok=True)

    signals, hashed = await run_in_threadpool(work)
    return signals, hashed, fields


@router.get("/h/hash", summary="HMA: fetch a URL and return its signals")
async def hma_hash_url(
    request: Request,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
    principal: Principal = Depends(require("hash")),
) -> dict[str, str]:
    if not url:
        raise _error(400, "url is required")
    return (await _hash_url(_settings(request), url, content_type, types, principal))[0]


@router.post("/h/hash", summary="HMA: hash an uploaded file (the form field names the content type)")
async def hma_hash_upload(request: Request, _: Principal = Depends(require("hash"))) -> dict[str, str]:
    return (await _hash_form(request))[0]


# ---- matching --------------------------------------------------------------------------------


def _content_ids(db: Session, matches: list[dict[str, Any]]) -> dict[int, int]:
    """Entry id → HMA content id (the smallest entry id of its content group)."""
    groups = {m["external_id"] for m in matches if (m.get("external_id") or "").startswith(CONTENT_PREFIX)}
    smallest: dict[str, int] = {}
    if groups:
        rows = db.execute(
            select(Entry.external_id, func.min(Entry.id))
            .where(Entry.external_id.in_(groups))
            .group_by(Entry.external_id)
        ).all()
        smallest = {external: int(first) for external, first in rows}
    return {m["entry_id"]: smallest.get(m.get("external_id") or "", m["entry_id"]) for m in matches}


def _match(
    request: Request, principal: Principal, query: service.Query, banks: list[str] | None, sample: bool = True
) -> tuple[service.MatchOutcome, dict[int, int]]:
    """Match in a read session (no write lock while searching and deciding); a match is then recorded
    in a short write transaction of its own."""
    state, settings = request.app.state, _settings(request)
    with state.read_sessionmaker() as db:
        outcome = service.evaluate(db, _indexes(request), query, settings, principal, lists=banks, sample=sample)
        ids = _content_ids(db, outcome.matches)
    if outcome.matches:
        service.record_matches(state.sessionmaker, settings, principal, [(query, outcome)])
    return outcome, ids


def _by_bank(outcome: service.MatchOutcome, ids: dict[int, int], signal_type: str) -> dict[str, list[dict[str, Any]]]:
    """HMA's ``{bank: [{bank_content_id, distance}]}`` for one signal type.

    Allowlist lists are not banks; HMA clients act on any bank match, so banks whose matches an
    allowlist covered are left out (the X-Seawall-Allowlisted header says why).
    """
    suppressed = set(outcome.decision.suppressed_lists)
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, int]] = set()
    for m in outcome.matches:  # sorted by distance already
        if m["signal_type"] != signal_type or m.get("allowlist") or m["list"] in suppressed:
            continue
        content_id = ids[m["entry_id"]]
        if (m["list"], content_id) in seen:
            continue
        seen.add((m["list"], content_id))
        out.setdefault(m["list"], []).append({"bank_content_id": content_id, "distance": str(m["distance"])})
    return out


def _headers(outcome: service.MatchOutcome) -> dict[str, str]:
    """Seawall's decision beside HMA's body: the match id, the actions, whether an allowlist matched."""
    return {
        "X-Seawall-Match-Id": outcome.match_id,
        "X-Seawall-Actions": ",".join(sorted({a["type"] for a in outcome.decision.actions})),
        "X-Seawall-Allowlisted": "true" if outcome.decision.allowlisted else "false",
    }


def _sample(principal: Principal, bypass_coinflip: str | None) -> bool:
    """HMA's ``bypass_coinflip`` searches banks with an enabled ratio below 1 for every content. The
    ratio is the operator's choice for everyone, so only an admin's lookup may bypass it."""
    return not (_bool(bypass_coinflip) and principal.can("admin"))


def _validated_signal(request: Request, hma_type: str, signal: str) -> tuple[str, str]:
    name = _seawall_signal(hma_type, _settings(request))
    try:
        return name, get_signal_type(name).validate(signal)
    except ValueError as exc:
        raise _error(400, f"invalid signal: {exc}") from None


def _file_query(hmas: dict[str, str], hashed: dict[str, Any], seed: str | None = None) -> service.Query:
    query = service.Query(
        signals={SIGNAL_NAMES[k]: [v] for k, v in hmas.items()}, media=hashed.get("media"), sample_seed=seed
    )
    if "pdq" in query.signals:
        query.pdq_quality = hashed.get("pdq_quality")
        query.pdq_dihedral = hashed.get("pdq_dihedral")
        query.regions = list(hashed.get("pdq_regions") or ())
    return query


def _lookup_by_file(
    request: Request,
    principal: Principal,
    hmas: dict[str, str],
    hashed: dict[str, Any],
    banks: list[str] | None,
    sample: bool = True,
    seed: str | None = None,
) -> tuple[dict[str, Any], service.MatchOutcome]:
    """HMA's ``{signal_type: {bank: [...]}}`` for a hashed file, and Seawall's outcome."""
    outcome, ids = _match(request, principal, _file_query(hmas, hashed, seed), banks, sample)
    return {name: _by_bank(outcome, ids, SIGNAL_NAMES[name]) for name in hmas}, outcome


@router.get("/m/raw_lookup", summary="HMA: look up one signal; content ids (and distances)")
def hma_raw_lookup(
    request: Request,
    signal: str | None = None,
    signal_type: str | None = None,
    banks: str | None = None,
    include_distance: str | None = None,
    principal: Principal = Depends(require("match")),
) -> JSONResponse:
    if signal is None:
        raise _error(400, "signal is required")
    if signal_type is None:
        raise _error(400, "signal_type is required")
    with_distance = _bool(include_distance)
    name, value = _validated_signal(request, signal_type, signal)
    outcome, ids = _match(request, principal, service.Query(signals={name: [value]}), _banks_param(banks))
    found = [m for bank in _by_bank(outcome, ids, name).values() for m in bank]
    matches: list[Any] = found if with_distance else [m["bank_content_id"] for m in found]
    return JSONResponse({"matches": matches}, headers=_headers(outcome))


@router.get("/m/lookup", summary="HMA: bank matches of a signal, or of a URL the server fetches")
async def hma_lookup(
    request: Request,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
    signal: str | None = None,
    signal_type: str | None = None,
    banks: str | None = None,
    seed: str | None = None,  # HMA's coinflip seed: the caller's content id, names the content for ratios
    bypass_coinflip: str | None = None,
    principal: Principal = Depends(require("match")),
) -> JSONResponse:
    sample = _sample(principal, bypass_coinflip)
    wanted = _banks_param(banks)
    if url:
        hmas, hashed = await _hash_url(_settings(request), url, content_type, types, principal)
        body, outcome = await run_in_threadpool(_lookup_by_file, request, principal, hmas, hashed, wanted, sample, seed)
        if signal_type is not None:  # HMA elides the outer object when a signal type is named
            body = body.get(signal_type, {})
        return JSONResponse(body, headers=_headers(outcome))
    if not signal or not signal_type:
        raise _error(400, "Either url or both signal and signal_type are required")
    name, value = _validated_signal(request, signal_type, signal)
    query = service.Query(signals={name: [value]}, sample_seed=seed)
    outcome, ids = await run_in_threadpool(_match, request, principal, query, wanted, sample)
    return JSONResponse(_by_bank(outcome, ids, name), headers=_headers(outcome))


@router.post("/m/lookup", summary="HMA: hash an uploaded file and return its bank matches by signal type")
async def hma_lookup_upload(request: Request, principal: Principal = Depends(require("match"))) -> JSONResponse:
    sample = _sample(principal, request.query_params.get("bypass_coinflip"))
    hmas, hashed, _ = await _hash_form(request)
    wanted = _banks_param(request.query_params.get("banks"))
    seed = request.query_params.get("seed")
    body, outcome = await run_in_threadpool(_lookup_by_file, request, principal, hmas, hashed, wanted, sample, seed)
    return JSONResponse(body, headers=_headers(outcome))


@router.post("/m/compare", summary="HMA: compare pairs of signals")
def hma_compare(
    request: Request, _: Principal = Depends(require("match")), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    body = _loads(raw or b"null", "Request input was not a dict")
    if not isinstance(body, dict):
        raise _error(400, "Request input was not a dict")
    out: dict[str, Any] = {}
    for hma_type, pair in body.items():
        if not isinstance(pair, list):
            raise _error(400, f"Comparison hashes for {hma_type} was not a list")
        if len(pair) != 2:
            raise _error(400, "Comparison hash list length must be exactly 2")
        signal_type = get_signal_type(_seawall_signal(hma_type, _settings(request)))
        try:
            distance = signal_type.compare(str(pair[0]), str(pair[1]))
        except ValueError as exc:
            raise _error(400, f"Invalid {hma_type} hash: {exc}") from None
        out[hma_type] = [distance <= signal_type.default_threshold, {"distance": distance}]
    return out


@router.get("/m/index/status", summary="HMA: index status by signal type")
def hma_index_status(
    request: Request, signal_type: str | None = None, principal: Principal = Depends(require("match"))
) -> dict[str, Any]:
    indexes: MatchIndexes = request.app.state.match_indexes
    names = enabled_types(_settings(request))
    if signal_type is not None:
        if signal_type not in names:
            raise _error(400, f"No such signal type '{signal_type}'")
        names = [signal_type]
    present = indexes.last_refresh > 0
    built_to = int(time.time() - (time.monotonic() - indexes.last_refresh)) if present else -1
    out: dict[str, Any] = {}
    for name in names:
        seawall_name = SIGNAL_NAMES[name]
        size = 0
        for index in list(indexes.lists.values()):
            if index.kind != "hash" or not index.enabled or not principal.can_use_list(index.name):
                continue
            if seawall_name in index.binary:
                size += len(index.binary[seawall_name])
            exact = index.exact.get(seawall_name)
            size += len(exact) if exact is not None else 0
        out[name] = {"present": present, "built_to": built_to, "size": size}
    return out


# ---- curation: banks -------------------------------------------------------------------------


def _bank_json(hash_list: HashList) -> dict[str, Any]:
    ratio = float(hash_list.enabled_ratio if hash_list.enabled_ratio is not None else 1.0)
    return {"name": hash_list.name, "matching_enabled_ratio": ratio if hash_list.enabled else 0.0}


def _get_bank(db: Session, principal: Principal, name: str, message: str | None = None) -> HashList:
    hash_list = None
    if principal.can_use_list(name):  # a key limited to some lists learns nothing of the others
        hash_list = db.scalar(select(HashList).where(HashList.name == name, HashList.deleted_at.is_(None)))
    if hash_list is None or hash_list.kind != "hash" or hash_list.allowlist:
        raise _error(404, message or f"bank '{name}' not found")
    return hash_list


def _ratio(value: Any) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past float range
        raise _error(400, f"Invalid float: '{value}'") from None
    if not 0.0 <= ratio <= 1.0:
        raise _error(400, "enabled_ratio must be between 0.0 and 1.0")
    return ratio


def _ratio_from(body: dict[str, Any]) -> float | None:
    """HMA's ratio from ``enabled_ratio`` (or ``enabled``: 1 or 0); None when the body names neither.
    0 disables the list; above 0 it is matched for that share of contents (see ListIndex.sampled)."""
    if body.get("enabled_ratio") is not None:
        return _ratio(body["enabled_ratio"])
    if body.get("enabled") is not None:
        value = body["enabled"]
        return 1.0 if (_bool(value) if isinstance(value, str) else bool(value)) else 0.0
    return None


def _json_object(raw: bytes, required: bool = True) -> dict[str, Any]:
    if not raw and not required:
        return {}
    body = _loads(raw or b"null", "the request body is not valid JSON")
    if not isinstance(body, dict):
        if not required and body is None:
            return {}
        raise _error(400, "this endpoint expects a json object payload")
    return body


@router.get("/c/banks", summary="HMA: all banks (hash lists) this key may use")
def hma_banks(db: Session = Depends(get_read_db), principal: Principal = Depends(require("lists:read"))) -> list[Any]:
    return [
        _bank_json(hl) for hl in lists_service.list_lists(db, principal.lists) if hl.kind == "hash" and not hl.allowlist
    ]


@router.post("/c/banks", status_code=201, summary="HMA: create a bank")
def hma_bank_create(
    db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write")), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    body = _json_object(raw)
    name = body.get("name")
    if name is None:
        raise _error(400, "name is required")
    if not isinstance(name, str) or not BANK_NAME.match(name):
        raise _error(400, "Bank names must be UPPER_WITH_UNDERSCORE")
    ratio = _ratio_from(body)
    ratio = 1.0 if ratio is None else ratio
    if not actor.can_use_list(name):
        raise _error(403, f"this key may not use the bank '{name}'")
    try:
        hash_list = lists_service.create_list(
            db,
            actor,
            name=name,
            kind="hash",
            description="created through the HMA-compatible API",
            enabled=ratio > 0,
            # A new list's ratio is its creator's to set, as its enabled flag is; changing it later is admin's.
            enabled_ratio=ratio if ratio > 0 else 1.0,
        )
    except lists_service.ListError as exc:
        if "exists already" in str(exc):
            raise _error(403, "Bank already exists") from None
        raise _error(403 if isinstance(exc, lists_service.ListForbidden) else 400, str(exc)) from None
    db.commit()
    return _bank_json(hash_list)


@router.get("/c/bank/{bank_name}", summary="HMA: one bank")
def hma_bank(
    bank_name: str, db: Session = Depends(get_read_db), principal: Principal = Depends(require("lists:read"))
) -> dict[str, Any]:
    return _bank_json(_get_bank(db, principal, bank_name))


@router.put("/c/bank/{bank_name}", summary="HMA: rename a bank, enable or disable it, set its matching ratio")
def hma_bank_update(
    bank_name: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("lists:write")),
    raw: bytes = Depends(raw_body),
) -> dict[str, Any]:
    body = _json_object(raw)
    hash_list = _get_bank(db, actor, bank_name, "Bank not found")
    new_name = body.get("name")
    if new_name is not None and (not isinstance(new_name, str) or not BANK_NAME.match(new_name)):
        raise _error(400, "Bank names must be UPPER_WITH_UNDERSCORE")
    ratio = _ratio_from(body)
    try:
        if new_name is not None and new_name != hash_list.name:
            if db.scalar(select(HashList.id).where(HashList.name == new_name)) is not None:
                raise _error(403, "Bank name already exists")
            lists_service.rename_list(db, actor, hash_list, new_name)
        if ratio is not None:
            lists_service.update_list(
                db, actor, hash_list, enabled=ratio > 0, enabled_ratio=ratio if ratio > 0 else None
            )
    except lists_service.ListForbidden as exc:
        raise _error(403, str(exc)) from None
    except lists_service.ListError as exc:
        raise _error(400, str(exc)) from None
    db.commit()
    if new_name is not None:  # lookups answer under the new name from now on, not after the next refresh
        request.app.state.match_indexes.refresh()
    return _bank_json(hash_list)


@router.delete("/c/bank/{bank_name}", summary="HMA: delete a bank and its content")
def hma_bank_delete(
    bank_name: str, request: Request, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> dict[str, str]:
    hash_list = None
    if actor.can_use_list(bank_name):
        hash_list = db.scalar(select(HashList).where(HashList.name == bank_name, HashList.deleted_at.is_(None)))
    if hash_list is not None and hash_list.kind == "hash" and not hash_list.allowlist:
        lists_service.delete_list(db, actor, hash_list)
        db.commit()
        lists_service.retract_deleted(request.app.state.sessionmaker, actor)
    return {"message": "Done"}  # HMA answers the same for a bank that does not exist


# ---- curation: content -----------------------------------------------------------------------


def _parse_content_id(text: str) -> int:
    if not text.isdigit():
        raise _error(404, f"content '{text}' not found")
    return int(text)


def _content_entries(db: Session, hash_list: HashList, content_id: int) -> list[Entry]:
    """The entries of a content, or 404; a content whose entries are all retracted is deleted."""
    first = db.get(Entry, content_id)
    if first is None or first.list_id != hash_list.id:
        raise _error(404, f"content '{content_id}' not found")
    members = [first]
    if first.external_id.startswith(CONTENT_PREFIX):
        members = list(
            db.scalars(
                select(Entry)
                .where(Entry.list_id == hash_list.id, Entry.external_id == first.external_id)
                .order_by(Entry.id)
            )
        )
        if members[0].id != content_id:  # only the group's first entry id names the content
            raise _error(404, f"content '{content_id}' not found")
    if all(e.status == "retracted" for e in members):
        raise _error(404, f"content '{content_id}' not found")
    return members


def _timestamp(moment: datetime | None) -> int:
    if moment is None:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _stored(note: str) -> tuple[dict[str, Any] | None, str | None]:
    """HMA's (metadata, note) of a content, from its entries' note: the small JSON object this API
    writes, else (an entry noted another way) the note as it is."""
    if note.startswith("{"):
        try:
            data = json.loads(note)
        except ValueError:
            data = None
        if isinstance(data, dict) and set(data) <= METADATA_KEYS | {"note"}:
            metadata = {k: data.get(k) for k in sorted(METADATA_KEYS)} if set(data) & METADATA_KEYS else None
            return metadata, data.get("note")
    return None, note or None


def _disable_until_ts(live: list[Entry]) -> int:
    """HMA's encoding: 1 enabled, 0 disabled for good, else disabled until that Unix time."""
    disabled = [e for e in live if e.status == "disabled"]
    if not disabled:
        return 1
    if any(e.disabled_until is None for e in disabled):
        return 0
    return max(_timestamp(e.disabled_until) for e in disabled)


def _content_json(hash_list: HashList, content_id: int, entries: list[Entry]) -> dict[str, Any]:
    live = [e for e in entries if e.status != "retracted"]
    metadata, note = _stored(live[0].note if live else "")
    return {
        "id": content_id,
        "bank": _bank_json(hash_list),
        "enabled": not any(e.status == "disabled" for e in live),
        "disable_until_ts": _disable_until_ts(live),
        "collab_metadata": {},
        "original_media_uri": (metadata or {}).get("content_uri"),
        "metadata": metadata,
        "note": note,
    }


def _stored_record(hash_list: HashList, content_id: int, entries: list[Entry]) -> dict[str, Any]:
    """What HMA's PUT answers: the stored content record, with ``user_metadata`` and ``note``."""
    live = [e for e in entries if e.status != "retracted"]
    metadata, note = _stored(live[0].note if live else "")
    return {
        "id": content_id,
        "disable_until_ts": _disable_until_ts(live),
        "collab_metadata": {},
        "original_media_uri": (metadata or {}).get("content_uri"),
        "bank": _bank_json(hash_list),
        "user_metadata": metadata,
        "note": note,
    }


@router.get("/c/bank/{bank_name}/content/{content_id}", summary="HMA: one bank content")
def hma_content(
    bank_name: str,
    content_id: str,
    request: Request,
    signal_type: str | None = None,
    include_signals: str | None = None,
    db: Session = Depends(get_read_db),
    principal: Principal = Depends(require("lists:read")),
) -> dict[str, Any]:
    hash_list = _get_bank(db, principal, bank_name)
    shown = enabled_types(_settings(request))
    if signal_type and signal_type not in shown:
        raise _error(400, f"No such signal type '{signal_type}'")
    wanted = SIGNAL_NAMES[signal_type] if signal_type else None
    number = _parse_content_id(content_id)
    entries = _content_entries(db, hash_list, number)
    out = _content_json(hash_list, number, entries)
    if wanted is not None or _bool(include_signals):
        names = {SIGNAL_NAMES[n]: n for n in shown}
        live = [e for e in entries if e.status != "retracted"]
        out["signals"] = {
            names[e.signal_type]: e.value
            for e in live
            if e.signal_type in names and (wanted is None or e.signal_type == wanted)
        }
    return out


def _note_for(metadata: dict[str, Any] | None, note: str | None) -> str:
    """HMA's metadata and note, kept on the entries as a small JSON note (never content)."""
    data: dict[str, Any] = {k: v for k, v in (metadata or {}).items() if v is not None}
    if note:
        data["note"] = note
    return json.dumps(data, sort_keys=True) if data else ""


def _check_metadata(metadata: Any) -> dict[str, Any] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _error(400, "metadata should be a json object")
    unexpected = set(metadata) - METADATA_KEYS
    if unexpected:
        raise _error(400, f"metadata contains unexpected keys: {' ,'.join(sorted(unexpected))}")
    for key in ("content_id", "content_uri"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise _error(400, f"Invalid metadata: {key} should be a string")
    if metadata.get("json") is not None and not isinstance(metadata["json"], dict):
        raise _error(400, "Invalid metadata: json should be a json object")
    return metadata


def _check_note(note: Any) -> str | None:
    if note is None or note == "":
        return None
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise _error(400, f"note must be a string of at most {MAX_NOTE} characters")
    return note


def _add_content(
    db: Session, actor: Principal, hash_list: HashList, signals: dict[str, Any], note: str, settings: Settings
) -> dict[str, Any]:
    if not signals:
        raise _error(400, "No signals given")
    group = CONTENT_PREFIX + uuid.uuid4().hex
    shown = enabled_types(settings)
    records = []
    for hma_name, value in signals.items():
        if hma_name not in shown:
            raise _error(400, f"No such signal type {hma_name}")
        name = SIGNAL_NAMES[hma_name]
        try:
            normalised = get_signal_type(name).validate(value if isinstance(value, str) else "")
        except ValueError as exc:
            raise _error(400, f"Invalid {hma_name} signal: {exc}") from None
        records.append(
            EntryRecord(signal_type=name, value=normalised, external_id=group, source="hma-api", note=note or None)
        )
    try:
        lists_service.add_entries(db, actor, hash_list, records, description="HMA bank content")
    except lists_service.ListError as exc:
        raise _error(400, str(exc)) from None
    content_id = db.scalar(select(func.min(Entry.id)).where(Entry.list_id == hash_list.id, Entry.external_id == group))
    db.commit()
    return {"id": content_id, "signals": {k: r.value for k, r in zip(signals, records, strict=True)}}


@router.post("/c/bank/{bank_name}/content", summary="HMA: add content to a bank by URL or file upload")
async def hma_content_add(
    bank_name: str, request: Request, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> dict[str, Any]:
    hash_list = await run_in_threadpool(_get_bank, db, actor, bank_name)
    url = request.query_params.get("url")
    is_json = request.headers.get("content-type", "").startswith("application/json")
    if url:
        body = await run_in_threadpool(_json_object, await request.body(), False) if is_json else {}
        metadata, note = _check_metadata(body.get("metadata")), _check_note(body.get("note"))
        hmas, _ = await _hash_url(
            _settings(request),
            url,
            request.query_params.get("content_type"),
            request.query_params.get("types"),
            actor,
        )
    elif request.headers.get("content-type", "").startswith("multipart/form-data"):
        hmas, _, fields = await _hash_form(request)
        meta: dict[str, Any] = {k: fields[k] for k in ("content_id", "content_uri") if fields.get(k)}
        if fields.get("metadata"):  # Coop sends the metadata's ``json`` part as a JSON form field
            meta["json"] = _loads(fields["metadata"], "metadata should be a json object")
        metadata, note = _check_metadata(meta or None), _check_note(fields.get("note"))
    else:
        raise _error(400, "Neither `url` nor multipart file upload was received")
    note_text = _note_for(metadata, note)
    return await run_in_threadpool(_add_content, db, actor, hash_list, hmas, note_text, _settings(request))


@router.post("/c/bank/{bank_name}/signal", summary="HMA: add signals directly to a bank")
def hma_signal_add(
    bank_name: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("lists:write")),
    raw: bytes = Depends(raw_body),
) -> dict[str, Any]:
    hash_list = _get_bank(db, actor, bank_name)
    body = _json_object(raw)
    # Beside the signals, HMA takes the content's note and metadata in the same object.
    note = _check_note(body.pop("note", None))
    metadata = _check_metadata(body.pop("metadata", None))
    return _add_content(db, actor, hash_list, body, _note_for(metadata, note), _settings(request))


@router.put("/c/bank/{bank_name}/content/{content_id}", summary="HMA: disable a content until a time; its note")
def hma_content_update(
    bank_name: str,
    content_id: str,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("lists:write")),
    raw: bytes = Depends(raw_body),
) -> dict[str, Any]:
    hash_list = _get_bank(db, actor, bank_name)
    number = _parse_content_id(content_id)
    entries = _content_entries(db, hash_list, number)
    body = _json_object(raw)
    live = [e for e in entries if e.status != "retracted"]
    if "note" in body and body["note"] is not None:
        if not isinstance(body["note"], str) or len(body["note"]) > MAX_NOTE:
            raise _error(400, f"note must be a string of at most {MAX_NOTE} characters")
        metadata, _ = _stored(live[0].note if live else "")
        lists_service.set_note(db, actor, live, _note_for(metadata, body["note"]))  # "" clears it
    if "disable_until_ts" in body:
        try:
            until = int(body["disable_until_ts"])
        except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 reads as infinity
            raise _error(400, f"Invalid int: '{body['disable_until_ts']}'") from None
        if until < 0:
            raise _error(400, "disable_until_ts must be a non-negative integer")
        now = datetime.now(UTC)
        if until > (now + _FIVE_YEARS).timestamp():
            raise _error(400, "disable_until_ts must be less than 5 years in the future")
        if until == 0:  # HMA: disabled for good (until someone enables it)
            lists_service.set_status(db, actor, live, "disabled", reason="HMA disable_until_ts 0: disabled for good")
        elif until > now.timestamp():
            moment = datetime.fromtimestamp(until, UTC)
            lists_service.set_status(db, actor, live, "disabled", reason="HMA disable_until_ts", disabled_until=moment)
        else:  # 1 (HMA's "enabled") or any time already past
            lists_service.set_status(db, actor, live, "active", reason="HMA disable_until_ts")
    db.commit()
    return _stored_record(hash_list, number, entries)


@router.delete("/c/bank/{bank_name}/content/{content_id}", summary="HMA: remove a content (its entries are retracted)")
def hma_content_delete(
    bank_name: str, content_id: str, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> dict[str, int]:
    hash_list = _get_bank(db, actor, bank_name)
    number = _parse_content_id(content_id)
    try:
        entries = _content_entries(db, hash_list, number)
    except HTTPException:
        return {"deleted": 0}
    lists_service.set_status(db, actor, entries, "retracted", reason="HMA content delete")
    db.commit()
    return {"deleted": 1}


@router.get("/c/signal_type", summary="HMA: the signal types this API shows (setting hma_signal_types)")
def hma_signal_types(request: Request, _: Principal = Depends(require("lists:read"))) -> list[dict[str, Any]]:
    return [{"name": name, "enabled_ratio": 1.0} for name in enabled_types(_settings(request))]


@router.get("/c/signal_type/index", summary="HMA: index build status by signal type (database against index)")
def hma_signal_type_index(
    request: Request,
    signal_type: str | None = None,
    db: Session = Depends(get_read_db),
    principal: Principal = Depends(require("lists:read")),
) -> dict[str, Any]:
    names = enabled_types(_settings(request))
    if signal_type is not None:
        if signal_type not in names:
            raise _error(400, f"No such signal type '{signal_type}'")
        names = [signal_type]
    indexes = _indexes(request)
    usable = {i.id: i for i in list(indexes.lists.values()) if i.kind == "hash" and not i.allowlist}
    usable = {k: i for k, i in usable.items() if i.enabled and principal.can_use_list(i.name)}
    built_to = int(time.time() - (time.monotonic() - indexes.last_refresh)) if indexes.last_refresh > 0 else 0
    revisions = dict(db.execute(select(HashList.id, HashList.revision).where(HashList.id.in_(list(usable)))).all())
    behind = any(revisions.get(k, 0) > i.checkpoint for k, i in usable.items())
    out: dict[str, Any] = {}
    for name in names:
        seawall_name = SIGNAL_NAMES[name]
        db_size, newest = db.execute(
            select(func.count(), func.max(Entry.added_at)).where(
                Entry.list_id.in_(list(usable)), Entry.signal_type == seawall_name, Entry.status == "active"
            )
        ).one()
        index_size = 0
        for index in usable.values():
            if seawall_name in index.binary:
                index_size += len(index.binary[seawall_name])
            exact = index.exact.get(seawall_name)
            index_size += len(exact) if exact is not None else 0
        out[name] = {
            "db_size": int(db_size or 0),
            "index_size": index_size,
            "index_out_of_date": behind or index_size != int(db_size or 0),
            "newest_db_item": _timestamp(newest),
            "index_built_to": built_to,
        }
    return out


@router.get("/c/content_type", summary="HMA: the content types Seawall hashes")
def hma_content_types(_: Principal = Depends(require("lists:read"))) -> list[dict[str, Any]]:
    return [{"name": name, "enabled": True} for name in CONTENT_TYPES]


def index_state(request: Request) -> tuple[str, int]:
    """HMA's readiness words: the indexes never loaded, loaded but not refreshed for longer than
    ``hma_index_stale_seconds`` (a refresh failing, the database gone), or serving."""
    indexes: MatchIndexes = request.app.state.match_indexes
    if indexes.last_refresh <= 0:
        return "INDEX-NOT-LOADED", 503
    if time.monotonic() - indexes.last_refresh > _settings(request).hma_index_stale_seconds:
        return "INDEX-STALE", 503
    return "I-AM-ALIVE", 200


@router.get("/status", summary="HMA: readiness (the indexes loaded and fresh)", response_class=PlainTextResponse)
def hma_status(request: Request) -> PlainTextResponse:
    text, status = index_state(request)
    return PlainTextResponse(text, status_code=status)


@router.get("/status/live", summary="HMA: liveness (the process answers)", response_class=PlainTextResponse)
async def hma_status_live() -> PlainTextResponse:
    return PlainTextResponse("I-AM-ALIVE")


def _hma_routes(request: Request) -> list[Any]:
    from fastapi.routing import iter_route_contexts

    return [
        context
        for context in iter_route_contexts(request.app.routes)
        if (context.path or "").startswith(("/h/", "/m/", "/c/", "/status"))
    ]


@router.get("/openapi/openapi.json", summary="HMA: the OpenAPI document of the HMA-compatible API")
def hma_openapi(request: Request) -> JSONResponse:
    # Built once per app (the routes do not change while it runs); public, as /openapi.json is.
    cached = getattr(request.app.state, "hma_openapi", None)
    if cached is None:
        from fastapi.openapi.utils import get_openapi

        import seawall

        cached = get_openapi(
            title="Open Media Match API",
            version=seawall.__version__,
            description="Seawall's HMA-compatible API (Hasher-Matcher-Actioner 2.x paths and shapes). "
            "Every route but /status and this document needs 'Authorization: Bearer <API key>'.",
            routes=_hma_routes(request),
        )
        request.app.state.hma_openapi = cached
    return JSONResponse(cached)
