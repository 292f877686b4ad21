"""Console pages of the matching domain: policies with what their shadow rules would have done,
webhooks and their deliveries (redeliver), and search by hash across lists and assessed items."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth.models import User
from seawall.db import utcnow
from seawall.matching import policies, webhooks
from seawall.matching.models import MatchEvent
from seawall.web.app import render
from seawall.web.deps import console_form, console_require, get_db, get_read_db, principal_of

router = APIRouter(include_in_schema=False)

SHADOW_DAYS = 7
SHADOW_EVENTS = 5000  # the newest match events looked at: a bounded read, whatever the traffic
DELIVERIES = 100


@dataclass
class RuleResults:
    """What one rule did (live) or would have done (shadow) over the recent match log."""

    live: int = 0
    shadow: int = 0
    examples: list[MatchEvent] = field(default_factory=list)


def rule_results(
    session: Session, days: int = SHADOW_DAYS, limit: int = SHADOW_EVENTS
) -> tuple[dict[str, RuleResults], int]:
    """Per rule name: how often it fired for real and in shadow over the last ``days`` (at most the
    newest ``limit`` events, so the page's cost is bounded); and how many events were looked at."""
    since = utcnow() - timedelta(days=days)
    events = list(
        session.scalars(
            select(MatchEvent).where(MatchEvent.occurred_at >= since).order_by(MatchEvent.id.desc()).limit(limit)
        )
    )
    out: dict[str, RuleResults] = {}
    for event in events:
        for name in {a.get("rule") for a in event.actions or () if a.get("rule")}:
            out.setdefault(str(name), RuleResults()).live += 1
        for name in {a.get("rule") for a in event.shadow_actions or () if a.get("rule")}:
            results = out.setdefault(str(name), RuleResults())
            results.shadow += 1
            if len(results.examples) < 5:
                results.examples.append(event)
    return out, len(events)


@router.get("/policies")
def policies_page(
    request: Request,
    db: Session = Depends(get_db),
    reads: Session = Depends(get_read_db),
    _: User = Depends(console_require("admin")),
) -> Response:
    db.rollback()  # the match log is read without SQLite's write lock (the login check's session holds it)
    results, looked_at = rule_results(reads)
    return render(
        request,
        "operator/policies.html",
        page="policies",
        rows=[(p, results.get(p.name, RuleResults())) for p in policies.list_policies(reads)],
        looked_at=looked_at,
        days=SHADOW_DAYS,
    )


@router.get("/webhooks")
def webhooks_page(
    request: Request,
    state: str | None = Query(None),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("admin")),
) -> Response:
    hooks = webhooks.list_webhooks(db)
    names = {h.id: h.name for h in hooks}
    return render(
        request,
        "operator/webhooks.html",
        page="webhooks",
        hooks=hooks,
        names=names,
        deliveries=webhooks.deliveries(db, state or None, DELIVERIES),
        state=state or "",
    )


@router.post("/webhooks/deliveries/{delivery_id}/redeliver")
def redeliver(
    delivery_id: int, request: Request, db: Session = Depends(get_db), _: User = Depends(console_form("admin"))
) -> Response:
    try:
        webhooks.redeliver(db, principal_of(request), delivery_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    db.commit()  # the delivery is queued once committed (webhooks._after_commit)
    return RedirectResponse(f"/webhooks?redelivered={delivery_id}", status_code=303)


# ---- search by hash ----------------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-f]+")
_BY_LENGTH = {32: ("md5",), 40: ("sha1",), 64: ("sha256", "pdq")}


def signal_types_of(value: str, wanted: str = "") -> tuple[str, ...]:
    """Which signal types a pasted hex value may be: MD5 (32), SHA-1 (40), SHA-256 or PDQ (64)."""
    if not _HEX.fullmatch(value):
        raise ValueError("paste a hash in hexadecimal: MD5 (32 digits), SHA-1 (40), SHA-256 or PDQ (64)")
    types = _BY_LENGTH.get(len(value))
    if types is None:
        raise ValueError(f"a hash of {len(value)} hex digits is none of MD5 (32), SHA-1 (40), SHA-256 or PDQ (64)")
    if wanted:
        if wanted not in types:
            raise ValueError(f"a {wanted} hash is not {len(value)} hex digits long")
        return (wanted,)
    return types


@dataclass
class HashSearch:
    entries: list[dict[str, Any]]
    items: list[tuple[Any, int, str]]  # (item, distance, how it was found)


def search_hash(request: Request, db: Session, value: str, types: tuple[str, ...], *, items: bool) -> HashSearch:
    """Entries of every list the user may read within each list's threshold (PDQ through the match
    index, never a table scan), and assessed hotline items: exact by column, near through the
    hotline hash list's index (its entries name the items they came from)."""
    from seawall.hotline.models import Item
    from seawall.matching import service as matching

    settings = request.app.state.settings
    indexes = request.app.state.match_indexes
    indexes.ensure_fresh()
    principal = principal_of(request)
    query = matching.Query(signals={t: [value] for t in types})
    hits = matching.find_hits(db, indexes, query, settings, principal=principal, include_low_quality=True)
    entries = matching.describe_hits(db, indexes, hits)
    found: list[tuple[Any, int, str]] = []
    if items:
        seen: set[int] = set()
        for column in types:
            if column == "pdq":
                continue
            for item in db.scalars(select(Item).where(getattr(Item, column) == value).limit(20)):
                seen.add(item.id)
                found.append((item, 0, column))
        if "pdq" in types:
            near: dict[int, int] = {}
            for entry in entries:
                if entry["list"] == settings.hotline_hash_list and entry["signal_type"] == "pdq":
                    prefix, _, number = (entry.get("external_id") or "").partition(":")
                    if prefix == "hotline-item" and number.isdigit():
                        near[int(number)] = min(entry["distance"], near.get(int(number), entry["distance"]))
            exact_pdq = db.scalars(select(Item).where(Item.pdq == value).limit(20))
            for item in exact_pdq:
                near[item.id] = 0
            if near:
                for item in db.scalars(select(Item).where(Item.id.in_(list(near)[:50]))):
                    if item.id not in seen:
                        found.append((item, near[item.id], "pdq"))
        found.sort(key=lambda f: (f[1], f[0].id))
    return HashSearch(entries, found)


@router.get("/search")
def search_page(
    request: Request,
    q: str = Query("", max_length=200),
    type: str = Query(""),
    db: Session = Depends(get_db),
    _: User = Depends(console_require("lists:read")),
) -> Response:
    value = q.strip().lower()
    error = None
    result = None
    if value:
        try:
            types = signal_types_of(value, type)
        except ValueError as exc:
            error = str(exc)
        else:
            may_read_items = principal_of(request).can("reports:read")
            result = search_hash(request, db, value, types, items=may_read_items)
    assessments: dict[int, Any] = {}
    if result is not None and result.items:
        from seawall.hotline.models import Assessment

        ids = [i.assessment_id for i, _, _ in result.items if i.assessment_id is not None]
        assessments = {a.id: a for a in db.scalars(select(Assessment).where(Assessment.id.in_(ids)))} if ids else {}
    return render(
        request,
        "operator/search.html",
        status_code=422 if error else 200,
        page="search",
        q=q,
        type=type,
        error=error,
        result=result,
        assessments=assessments,
    )
