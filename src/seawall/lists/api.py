"""Routes under /v1/lists: lists, entries, opinions, import/export and the partner feed."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO, cast

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.lists import service
from seawall.lists.models import HashList
from seawall.lists.records import EntryRecord
from seawall.lists.schemas import (
    EntriesAdd,
    EntryOut,
    EntryPage,
    Feed,
    FeedChange,
    ImportOut,
    ListCreate,
    ListOut,
    ListUpdate,
    OpinionIn,
    OpinionOut,
    RetireIn,
    StatusOut,
)
from seawall.web.deps import get_db, require

router = APIRouter(prefix="/v1/lists", tags=["lists"])


def _list_for(db: Session, principal: Principal, name: str) -> HashList:
    # A key limited to some lists learns nothing about the others, not even that they exist.
    if not principal.can_use_list(name):
        raise HTTPException(404, f"no list named {name!r}")
    try:
        return service.get_list(db, name)
    except service.ListNotFound as exc:
        raise HTTPException(404, str(exc)) from None


def _list_out(db: Session, hash_list: HashList, counts: bool = False) -> ListOut:
    out = ListOut.model_validate(hash_list)
    if counts:
        out.counts = service.count_entries(db, hash_list)
    return out


@router.get("", response_model=list[ListOut], summary="The lists this credential may read")
def list_lists(db: Session = Depends(get_db), principal: Principal = Depends(require("lists:read"))) -> list[ListOut]:
    return [_list_out(db, hl) for hl in service.list_lists(db, principal.lists)]


@router.post("", response_model=ListOut, status_code=201)
def create_list(
    body: ListCreate, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> ListOut:
    try:
        hash_list = service.create_list(db, actor, **body.model_dump())
    except service.ListForbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except service.ListError as exc:
        raise HTTPException(409 if "exists already" in str(exc) else 422, str(exc)) from None
    db.commit()
    return _list_out(db, hash_list)


@router.get("/{name}", response_model=ListOut)
def show_list(
    name: str, db: Session = Depends(get_db), principal: Principal = Depends(require("lists:read"))
) -> ListOut:
    return _list_out(db, _list_for(db, principal, name), counts=True)


@router.patch("/{name}", response_model=ListOut)
def update_list(
    name: str, body: ListUpdate, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> ListOut:
    hash_list = _list_for(db, actor, name)
    changes = body.model_dump(exclude={"allowlist_scope"})
    if "allowlist_scope" in body.model_fields_set:  # null is a value here: every list
        changes["allowlist_scope"] = body.allowlist_scope
    try:
        service.update_list(db, actor, hash_list, **changes)
    except service.ListForbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except service.ListError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    db.refresh(hash_list)
    return _list_out(db, hash_list, counts=True)


@router.delete("/{name}", status_code=204, summary="Delete a list: it stops matching, every entry is retracted")
def delete_list(
    name: str, request: Request, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> None:
    try:
        service.delete_list(db, actor, _list_for(db, actor, name))
    except service.ListForbidden as exc:
        raise HTTPException(403, str(exc)) from None
    db.commit()
    # Retractions in transactions of their own; whatever a crash leaves, the worker finishes.
    service.retract_deleted(request.app.state.sessionmaker, actor)


@router.get("/{name}/entries", response_model=EntryPage)
def list_entries(
    name: str,
    status: str | None = None,
    signal_type: str | None = None,
    category: str | None = None,
    label: str | None = None,
    value_prefix: str | None = Query(None, description="Entries whose value starts with this."),
    after: int = Query(0, ge=0, description="The next_after of the previous page."),
    limit: int = Query(100, ge=1, le=1000),
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("lists:read")),
) -> EntryPage:
    hash_list = _list_for(db, principal, name)
    entry_filter = service.EntryFilter(status, signal_type, category, label, value_prefix)
    rows = list(service.iter_entries(db, hash_list, entry_filter, after_id=after, limit=limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return EntryPage(
        entries=[EntryOut.model_validate(e) for e in rows], next_after=rows[-1].id if more and rows else None
    )


@router.post("/{name}/entries", response_model=ImportOut, summary="Add entries in a batch (idempotent)")
def add_entries(
    name: str, body: EntriesAdd, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> ImportOut:
    hash_list = _list_for(db, actor, name)
    records = [
        EntryRecord(
            signal_type=e.signal_type or "",
            value=e.value,
            category=e.category,
            labels=tuple(e.labels),
            source=e.source,
            external_id=e.external_id,
            note=e.note,
            level=e.level,
        )
        for e in body.entries
    ]
    try:
        result = service.add_entries(db, actor, hash_list, records, skip_invalid=body.skip_invalid)
    except service.InvalidEntries as exc:
        db.rollback()
        raise HTTPException(422, f"nothing was added: entry {exc.errors[0]}") from None
    db.commit()
    return ImportOut(**result.as_dict())


@router.get("/{name}/entries/{entry_id}", response_model=EntryOut)
def show_entry(
    name: str, entry_id: int, db: Session = Depends(get_db), principal: Principal = Depends(require("lists:read"))
) -> EntryOut:
    try:
        return EntryOut.model_validate(service.get_entry(db, _list_for(db, principal, name), entry_id))
    except service.EntryNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/{name}/entries/status", response_model=StatusOut, summary="Retire, disable or restore entries")
def set_status(
    name: str, body: RetireIn, db: Session = Depends(get_db), actor: Principal = Depends(require("lists:write"))
) -> StatusOut:
    hash_list = _list_for(db, actor, name)
    try:
        entries = [service.get_entry(db, hash_list, i) for i in body.entry_ids]
        for value in body.values:
            found = service.find_entries(db, hash_list, value, body.signal_type)
            if not found:
                raise service.EntryNotFound(f"no entry {value!r} in list {name!r}")
            entries.extend(found)
        changed = service.set_status(db, actor, entries, body.status, reason=body.reason)
    except service.EntryNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except service.ListError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    db.refresh(hash_list)
    return StatusOut(changed=changed, revision=hash_list.revision)


@router.post("/{name}/entries/{entry_id}/opinions", response_model=OpinionOut, status_code=201)
def add_opinion(
    name: str,
    entry_id: int,
    body: OpinionIn,
    request: Request,
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("lists:write")),
) -> OpinionOut:
    try:
        entry = service.get_entry(db, _list_for(db, actor, name), entry_id)
        opinion = service.add_opinion(
            db,
            actor,
            entry,
            body.verdict,
            body.comment,
            false_positive_threshold=request.app.state.settings.false_positive_disable_threshold,
        )
    except service.EntryNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except service.ListError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return OpinionOut(
        id=opinion.id,
        verdict=opinion.verdict,
        actor=opinion.actor,
        comment=opinion.comment,
        created_at=opinion.created_at,
        entry_status=entry.status,
    )


@router.get("/{name}/feed", response_model=Feed, summary="Changes after a revision, for partners following a list")
def feed(
    name: str,
    since: int = Query(0, ge=0),
    limit: int = Query(1000, ge=1, le=10_000),
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("lists:read")),
) -> Feed:
    try:
        hash_list = service.feed_list(db, name)
    except service.ListNotFound:
        hash_list = None
    # A key may read the feed under a name it may use, or under the old name of a list renamed
    # since that it may use now (a rename moves keys' limits to the new name).
    renamed = hash_list is not None and hash_list.deleted_at is None and hash_list.name != name
    if hash_list is None or not (principal.can_use_list(name) or (renamed and principal.can_use_list(hash_list.name))):
        raise HTTPException(404, f"no list named {name!r}")
    changes = service.changes_since(db, hash_list, since, limit + 1)
    more = len(changes) > limit
    changes = changes[:limit]
    return Feed(
        list=name,
        list_uid=hash_list.uid,
        deleted=hash_list.deleted_at is not None,
        kind=hash_list.kind,
        since=since,
        next_since=changes[-1].revision if changes else since,
        revision=hash_list.revision,
        more=more,
        changes=[
            FeedChange(
                revision=c.revision,
                op=c.op,
                changed_at=c.changed_at,
                status=c.status,
                entry=EntryOut.model_validate(c.entry) if c.entry is not None else None,
                details=c.details,
            )
            for c in changes
        ],
    )


@router.post("/{name}/import", response_model=ImportOut, summary="Import a file in any supported format")
def import_file(
    name: str,
    file: UploadFile = File(...),
    format: str | None = Form(None, description="Inferred from the file when absent."),
    skip_invalid: bool = Form(False),
    db: Session = Depends(get_db),
    actor: Principal = Depends(require("lists:write")),
) -> ImportOut:
    from seawall.lists.formats import get_format, infer_format

    hash_list = _list_for(db, actor, name)
    try:
        if format:
            list_format = get_format(format)
        else:
            head = file.file.read(8192)
            file.file.seek(0)
            list_format = infer_format(head, file.filename)
        result = service.add_entries(
            db,
            actor,
            hash_list,
            list_format.read(file.file),
            skip_invalid=skip_invalid,
            description=f"import of {file.filename or 'upload'} ({list_format.name})",
        )
    except service.InvalidEntries as exc:
        db.rollback()
        raise HTTPException(422, f"nothing was imported: {exc.errors[0]}") from None
    except ValueError as exc:
        db.rollback()
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return ImportOut(**result.as_dict())


@router.get("/{name}/export", summary="Export the list's entries in a format")
def export(
    name: str,
    format: str = "csv",
    status: str | None = None,
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("lists:read")),
) -> StreamingResponse:
    from seawall.lists.formats import get_format

    hash_list = _list_for(db, principal, name)
    try:
        list_format = get_format(format)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    # Spooled: small lists stay in memory, large ones go to a temporary file, never the whole list in RAM.
    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 (closed by chunks())
    records = (service.entry_record(e) for e in service.iter_entries(db, hash_list, service.EntryFilter(status=status)))
    list_format.write(records, cast(BinaryIO, spool))
    spool.seek(0)

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
