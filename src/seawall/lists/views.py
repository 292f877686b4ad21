"""Console pages for lists: what each list holds, without opening a database shell."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from seawall.auth.models import User
from seawall.lists import service
from seawall.web.app import render
from seawall.web.deps import console_require, get_db

router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/lists")
def lists_page(
    request: Request, db: Session = Depends(get_db), _: User = Depends(console_require("lists:read"))
) -> Response:
    rows = [(hl, service.count_entries(db, hl)) for hl in service.list_lists(db)]
    return render(request, "lists.html", page="lists", rows=rows)


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
    try:
        hash_list = service.get_list(db, name)
    except service.ListNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    entry_filter = service.EntryFilter(status=status or None, value_prefix=q or None)
    entries = list(service.iter_entries(db, hash_list, entry_filter, after_id=after, limit=PAGE + 1))
    next_after = entries[PAGE - 1].id if len(entries) > PAGE else None
    return render(
        request,
        "list_detail.html",
        page="lists",
        hash_list=hash_list,
        counts=service.count_entries(db, hash_list),
        entries=entries[:PAGE],
        next_after=next_after,
        status=status or "",
        q=q or "",
        changes=service.changes_since(db, hash_list, max(0, hash_list.revision - 10), limit=10)[::-1],
    )
