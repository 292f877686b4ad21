"""Console pages for lists: what each list holds, and the curator's actions on it (add entries, retire,
give opinions, import with progress, export), plus the quarantine page. Routes parse, authorise, call
the same service functions as /v1 and render."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO, cast

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from seawall.auth.models import User
from seawall.lists import service
from seawall.lists.formats import format_names, get_format, infer_format
from seawall.lists.models import HashList
from seawall.lists.records import EntryRecord
from seawall.web.app import render
from seawall.web.deps import console_form, console_require, get_db, get_read_db, principal_of

router = APIRouter(include_in_schema=False)
PAGE = 50
MAX_FORM_ENTRIES = 1000  # one textarea's worth; larger sets go through the import


def _list_for(db: Session, request: Request, name: str) -> HashList:
    if not principal_of(request).can_use_list(name):
        raise HTTPException(404, f"no list named {name!r}")
    try:
        return service.get_list(db, name)
    except service.ListNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/lists")
def lists_page(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("lists:read"))
) -> Response:
    rows = [(hl, service.count_entries(db, hl)) for hl in service.list_lists(db)]
    return render(request, "lists.html", page="lists", rows=rows)


def _list_page(
    request: Request,
    db: Session,
    hash_list: HashList,
    *,
    status: str = "",
    q: str = "",
    after: int = 0,
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    entry_filter = service.EntryFilter(status=status or None, value_prefix=q or None)
    entries = list(service.iter_entries(db, hash_list, entry_filter, after_id=after, limit=PAGE + 1))
    next_after = entries[PAGE - 1].id if len(entries) > PAGE else None
    return render(
        request,
        "list_detail.html",
        status_code=status_code,
        page="lists",
        hash_list=hash_list,
        counts=service.count_entries(db, hash_list),
        entries=entries[:PAGE],
        next_after=next_after,
        status=status,
        q=q,
        changes=service.changes_since(db, hash_list, max(0, hash_list.revision - 10), limit=10)[::-1],
        can_write=principal_of(request).can("lists:write"),
        formats=format_names(),
        message=message,
        error=error,
    )


@router.get("/lists/{name}")
def list_page(
    name: str,
    request: Request,
    status: str | None = Query(None),
    q: str | None = Query(None, description="value prefix"),
    after: int = Query(0, ge=0),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("lists:read")),
) -> Response:
    hash_list = _list_for(db, request, name)
    return _list_page(request, db, hash_list, status=status or "", q=q or "", after=after)


def _parse_entry_lines(text: str, signal_type: str, category: str) -> list[EntryRecord]:
    """One entry a line: ``value`` (the form's signal type) or ``signal_type,value``."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, comma, value = line.partition(",")
        if not comma:
            kind, value = signal_type, line
        records.append(EntryRecord(signal_type=kind.strip(), value=value.strip(), category=category or None))
    if len(records) > MAX_FORM_ENTRIES:
        raise ValueError(f"at most {MAX_FORM_ENTRIES} entries a form; import a file for more")
    return records


@router.post("/lists/{name}/entries")
def add_entries(
    name: str,
    request: Request,
    values: str = Form(""),
    signal_type: str = Form(""),
    category: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_form("lists:write")),
) -> Response:
    hash_list = _list_for(db, request, name)
    try:
        records = _parse_entry_lines(values, signal_type.strip(), category.strip())
        if not records:
            raise ValueError("no entries given: one value a line")
        result = service.add_entries(db, principal_of(request), hash_list, records)
    except service.InvalidEntries as exc:
        db.rollback()
        return _list_page(request, db, hash_list, error=f"Nothing was added: entry {exc.errors[0]}", status_code=422)
    except ValueError as exc:
        db.rollback()
        return _list_page(request, db, hash_list, error=f"Nothing was added: {exc}", status_code=422)
    db.commit()
    db.refresh(hash_list)
    counts = result.as_dict()
    return _list_page(
        request,
        db,
        hash_list,
        message=f"Added {counts['added']}, updated {counts['updated']}, unchanged {counts['unchanged']}.",
    )


@router.post("/lists/{name}/status")
def set_status(
    name: str,
    request: Request,
    status: str = Form(...),
    reason: str = Form(""),
    entry_id: list[int] = Form([]),
    db: Session = Depends(get_db),
    _: User = Depends(console_form("lists:write")),
) -> Response:
    hash_list = _list_for(db, request, name)
    try:
        entries = [service.get_entry(db, hash_list, i) for i in entry_id[:PAGE]]
        if not entries:
            raise service.ListError("select at least one entry")
        changed = service.set_status(db, principal_of(request), entries, status, reason=reason.strip())
    except (service.EntryNotFound, service.ListError) as exc:
        db.rollback()
        return _list_page(request, db, hash_list, error=f"Nothing was changed: {exc}", status_code=422)
    db.commit()
    db.refresh(hash_list)
    return _list_page(request, db, hash_list, message=f"{changed} entries set to {status}.")


@router.post("/lists/{name}/entries/{entry_id}/opinions")
def add_opinion(
    name: str,
    entry_id: int,
    request: Request,
    verdict: str = Form(...),
    comment: str = Form(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_form("lists:write")),
) -> Response:
    hash_list = _list_for(db, request, name)
    try:
        entry = service.get_entry(db, hash_list, entry_id)
        service.add_opinion(
            db,
            principal_of(request),
            entry,
            verdict,
            comment.strip(),
            false_positive_threshold=request.app.state.settings.false_positive_disable_threshold,
        )
    except service.EntryNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except service.ListError as exc:
        db.rollback()
        return _list_page(request, db, hash_list, error=f"No opinion recorded: {exc}", status_code=422)
    db.commit()
    db.refresh(hash_list)
    return _list_page(
        request, db, hash_list, message=f"Opinion recorded on entry {entry_id}: {verdict.replace('_', ' ')}."
    )


@router.post("/lists/{name}/import")
def import_file(
    name: str,
    request: Request,
    file: UploadFile = File(...),
    format: str = Form(""),
    skip_invalid: bool = Form(False),
    db: Session = Depends(get_db),
    _: User = Depends(console_form("lists:write")),
) -> Response:
    """The page's script sends the file with a progress bar and asks for JSON; without script the
    form posts and the list page shows the result."""
    wants_json = "application/json" in request.headers.get("accept", "")
    hash_list = _list_for(db, request, name)
    try:
        if format:
            list_format = get_format(format)
        else:
            head = file.file.read(8192)
            file.file.seek(0)
            list_format = infer_format(head, file.filename)
        result = service.add_entries(
            db,
            principal_of(request),
            hash_list,
            list_format.read(file.file),
            skip_invalid=skip_invalid,
            description=f"import of {file.filename or 'upload'} ({list_format.name})",
        )
    except service.InvalidEntries as exc:
        db.rollback()
        problem = f"Nothing was imported: {exc.errors[0]}"
    except ValueError as exc:
        db.rollback()
        problem = f"Nothing was imported: {exc}"
    else:
        db.commit()
        db.refresh(hash_list)
        counts = result.as_dict()
        text = (
            f"Imported {file.filename or 'the file'}: added {counts['added']}, "
            f"updated {counts['updated']}, unchanged {counts['unchanged']}."
        )
        if wants_json:
            return JSONResponse({"ok": True, "message": text, **counts})
        return _list_page(request, db, hash_list, message=text)
    if wants_json:
        return JSONResponse({"ok": False, "message": problem}, status_code=422)
    return _list_page(request, db, hash_list, error=problem, status_code=422)


@router.get("/lists/{name}/export")
def export(
    name: str,
    request: Request,
    format: str = Query("csv"),
    status: str | None = Query(None),
    db: Session = Depends(get_db),
    reads: Session = Depends(get_read_db),
    _: User = Depends(console_require("lists:read")),
) -> Response:
    # The login check's transaction ends here: on SQLite it holds the write lock, and reading a
    # whole list must not (a read session reads it; the audit event is one short write after).
    db.rollback()
    hash_list = _list_for(reads, request, name)
    try:
        list_format = get_format(format)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    # Spooled like the API's export: small lists in memory, large ones in a temporary file.
    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 (closed by chunks())
    entry_filter = service.EntryFilter(status=status or None)
    entries = service.iter_entries(reads, hash_list, entry_filter)
    list_format.write((service.entry_record(e) for e in entries), cast(BinaryIO, spool))
    list_id = hash_list.id
    reads.rollback()
    spool.seek(0)
    from seawall.auth import audit

    details = {"name": name, "format": list_format.name}
    audit.record(db, principal_of(request), "list.export", "list", list_id, details)
    db.commit()

    def chunks() -> Iterator[bytes]:
        with spool:
            while block := spool.read(65536):
                yield block

    extension = list_format.extensions[0] if list_format.extensions else ""
    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"content-disposition": f'attachment; filename="{name}{extension}"'},
    )


# ---- quarantine ---------------------------------------------------------------------------------


@router.get("/quarantine")
def quarantine_page(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("lists:read"))
) -> Response:
    from seawall.matching import service as matching

    principal = principal_of(request)
    rows = matching.list_quarantine(db, principal)
    return render(request, "operator/quarantine.html", page="quarantine", rows=rows, can_release=principal.can("admin"))


@router.post("/quarantine/{entry_id}/release")
def release_quarantine(
    entry_id: int, request: Request, db: Session = Depends(get_db), _: User = Depends(console_form("admin"))
) -> Response:
    from seawall.matching import service as matching

    try:
        matching.release_quarantine(db, principal_of(request), entry_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()
    return RedirectResponse("/quarantine", status_code=303)


# ---- exchanges ----------------------------------------------------------------------------------


@router.get("/exchanges")
def exchanges_page(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("lists:write"))
) -> Response:
    from seawall.lists.exchanges import service as exchanges

    principal = principal_of(request)
    rows = [exchanges.status(e) for e in exchanges.list_exchanges(db) if principal.can_use_list(e.hash_list.name)]
    return render(
        request, "operator/exchanges.html", page="exchanges", rows=rows, queued=request.query_params.get("queued")
    )


@router.post("/exchanges/{name}/sync")
def sync_exchange(
    name: str, request: Request, db: Session = Depends(get_db), _: User = Depends(console_form("lists:write"))
) -> Response:
    """Run now: the sync is queued for a worker (it fetches from outside; never inside this request)."""
    from seawall.auth import audit
    from seawall.lists.exchanges import service as exchanges
    from seawall.lists.exchanges.tasks import sync_exchange as queue_sync

    try:
        exchange = exchanges.get_exchange(db, name)
    except exchanges.ExchangeNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    if not principal_of(request).can_use_list(exchange.hash_list.name):
        raise HTTPException(404, f"no exchange named {name!r}")
    audit.record(db, principal_of(request), "exchange.sync_requested", "exchange", exchange.id, {"name": name})
    db.commit()
    db.close()
    queue_sync(name)
    return RedirectResponse(f"/exchanges?queued={name}", status_code=303)
