"""Console pages of the statistics: the dashboard (``/stats``) and the annual report
(``/stats/report?year=2022``), which prints on A4; and the same report published at
``/public/stats/report`` when the operator chooses (``SEAWALL_STATS_PUBLIC``), with small counts
suppressed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from seawall.auth.models import User
from seawall.config import Settings
from seawall.stats import figures
from seawall.web.app import render
from seawall.web.deps import console_require, get_db

router = APIRouter(include_in_schema=False)
YEAR = Query(None, ge=1900, le=9999, description="The year shown (default: the last with data).")


@router.get("/stats")
def dashboard(
    request: Request,
    year: int | None = YEAR,
    _: User = Depends(console_require("stats:read")),
    db: Session = Depends(get_db),
) -> Response:
    settings: Settings = request.app.state.settings
    overview = figures.overview(db, settings, year, request.state.principal)
    return render(request, "stats.html", page="stats", overview=overview, public=False, timezone=settings.timezone)


def _report(request: Request, db: Session, year: int | None, *, public: bool) -> Response:
    settings: Settings = request.app.state.settings
    overview = figures.overview(db, settings, year, None, public=public)
    tables = figures.report_tables(db, settings, overview.year, public=public)
    return render(
        request,
        "stats_report.html",
        page="stats",
        overview=overview,
        tables=tables,
        public=public,
        hotline=settings.hotline_name,
        timezone=settings.timezone,
    )


@router.get("/stats/report")
def annual_report(
    request: Request,
    year: int | None = YEAR,
    _: User = Depends(console_require("stats:read")),
    db: Session = Depends(get_db),
) -> Response:
    return _report(request, db, year, public=False)


@router.get("/public/stats/report")
def public_report(request: Request, year: int | None = YEAR, db: Session = Depends(get_db)) -> Response:
    """Aggregates only, small counts suppressed; absent unless the operator publishes it."""
    if not request.app.state.settings.stats_public:
        raise HTTPException(404, "Not Found")
    return _report(request, db, year, public=True)
