"""``GET /v1/stats``: a statistics table as JSON, or CSV (``Accept: text/csv`` or ``format=csv``)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.stats import service
from seawall.web.deps import get_db, require

router = APIRouter(prefix="/v1", tags=["stats"])


@router.get("/stats")
def stats_table(
    request: Request,
    measure: str = Query("pages", description=f"One of {', '.join(service.MEASURES)}."),
    by: list[str] = Query([], description="A period (day … year) and up to two dimensions; repeat or comma-separate."),
    where: list[str] = Query([], description="dimension:value filters, e.g. self_generated:true."),
    start: date | None = Query(None, alias="from", description="First local day (default: the first with data)."),
    end: date | None = Query(None, alias="to", description="Last local day (default: the last with data)."),
    since: int | None = Query(None, description="Base year for growth (e.g. 2020)."),
    format: str | None = Query(None, description="csv for CSV (or send Accept: text/csv)."),
    principal: Principal = Depends(require("stats:read")),
    db: Session = Depends(get_db),
) -> Response:
    """Counts by period and dimension with share, year-on-year change and growth since a base year.
    Aggregates only; a list-limited key counts matches to its own lists only."""
    try:
        query = service.Query(
            measure=measure,
            by=service.parse_by(by),
            where=service.parse_where(where),
            start=start,
            end=end,
            since=since,
        )
        result = service.table(db, request.app.state.settings, query, principal)
    except service.StatsError as exc:
        raise HTTPException(422, str(exc)) from None
    if format == "csv" or "text/csv" in request.headers.get("accept", ""):
        return Response(
            service.to_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="seawall-{measure}.csv"'},
        )
    return JSONResponse({"rows": result.rows, "source": result.source})
