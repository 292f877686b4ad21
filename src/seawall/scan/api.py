"""Scan runs over HTTP: their progress as the run table records it (scans run in their own process)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Query as QueryParam
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.scan import service
from seawall.scan.models import ScanRun
from seawall.web.deps import get_db, require

router = APIRouter(prefix="/v1", tags=["scans"])


def _visible(principal: Principal, run: ScanRun) -> bool:
    """A key limited to some lists sees only runs confined to those lists: a run over every list
    counts matches on lists that are not its own."""
    if principal.lists is None:
        return True
    wanted = run.options.get("lists") or []
    return bool(wanted) and all(principal.can_use_list(name) for name in wanted)


@router.get("/scans", summary="Recent scan runs and their progress")
def list_scans(
    limit: int = QueryParam(50, ge=1, le=500),
    db: Session = Depends(get_db),
    principal: Principal = Depends(require("ops")),
) -> list[dict[str, Any]]:
    return [service.run_dict(r) for r in service.list_runs(db, limit) if _visible(principal, r)]


@router.get("/scans/{run_id}", summary="One scan run: sources, partitions done, counts, rate")
def get_scan(
    run_id: int, db: Session = Depends(get_db), principal: Principal = Depends(require("ops"))
) -> dict[str, Any]:
    run = db.get(ScanRun, run_id)
    if run is None or not _visible(principal, run):
        raise HTTPException(404, f"no scan run {run_id}")
    return service.run_dict(run)
