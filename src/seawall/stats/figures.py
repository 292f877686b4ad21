"""What the dashboard and the annual report show: headline figures with their year-on-year change,
and sections each made of a chart, the table it is drawn from, and the API query that gives it as CSV."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline.models import AGE_BANDS
from seawall.stats import charts, service
from seawall.stats.models import CubeCount
from seawall.stats.service import Query

HEADLINES = (
    ("pages", "Web pages actioned"),
    ("images", "Images and videos"),
    ("reports", "Reports received"),
    ("self_reports", "Self-reports"),
    ("notices", "Notices sent"),
)


@dataclass
class Headline:
    title: str
    count: int | str
    previous: int | str
    change_pct: float | None


@dataclass
class Section:
    title: str
    svg: str
    columns: list[str]
    rows: list[list[Any]]
    csv: str  # the /v1/stats query giving the same figures
    note: str = ""


@dataclass
class Overview:
    year: int
    years: list[int]
    headlines: list[Headline] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    public: bool = False
    threshold: int = 0


def years_with_data(session: Session) -> list[int]:
    low, high = session.execute(
        select(func.min(CubeCount.period), func.max(CubeCount.period)).where(
            CubeCount.measure == "pages", CubeCount.grain == "m", CubeCount.dims == "", CubeCount.count > 0
        )
    ).one()
    if low is None:
        return [date.today().year]
    return list(range(low.year, high.year + 1))


def _csv(**params: Any) -> str:
    query = [(k, v) for k, value in params.items() for v in (value if isinstance(value, list) else [value])]
    return "/v1/stats?" + urlencode([*query, ("format", "csv")])


def _year(year: int) -> tuple[date, date]:
    return date(year, 1, 1), date(year, 12, 31)


def _hide(value: int, threshold: int) -> int | str:
    return f"<{threshold}" if threshold and 0 < value < threshold else value


def overview(
    session: Session,
    settings: Settings,
    year: int | None,
    principal: Principal | None = None,
    *,
    public: bool = False,
) -> Overview:
    """The figures for ``year`` (default: the last with data) and the trend charts up to it. ``public``:
    counts below the publication threshold are shown as ``<N`` and drawn as zero."""
    years = years_with_data(session)
    year = year if year is not None else years[-1]
    threshold = settings.stats_public_threshold if public else 0
    start, end = _year(year)
    result = Overview(year=year, years=years, public=public, threshold=threshold)

    def hide(value: int) -> int | str:
        return _hide(value, threshold)

    def drawn(value: int) -> int:
        return 0 if threshold and value < threshold else value

    for measure, title in HEADLINES:
        rows = service.table(
            session, settings, Query(measure=measure, by=["year"], start=start, end=end), principal
        ).rows
        count, previous = (rows[0]["count"], rows[0]["previous"]) if rows else (0, 0)
        hidden = threshold and (0 < count < threshold or 0 < previous < threshold)
        result.headlines.append(
            Headline(title, hide(count), hide(previous), None if hidden else service._change(count, previous))
        )
    takedown = service.table(session, settings, Query(measure="takedown", by=["year"], start=start, end=end)).rows
    median = takedown[0]["median_hours"] if takedown and takedown[0]["count"] >= max(threshold, 1) else None
    result.headlines.append(Headline("Median takedown time (hours)", median if median is not None else "-", "", None))

    # Pages per half-year by age band, over every year up to this one.
    first = date(min(years[0], year), 1, 1)
    by_band = service.table(
        session, settings, Query(measure="pages", by=["half_year", "age_band"], start=first, end=end)
    ).rows
    halves = sorted({r["half_year"] for r in by_band})
    bands = [b for b in AGE_BANDS if any(r["age_band"] == b for r in by_band)]
    if any(r["age_band"] is None for r in by_band):
        bands.append("unknown")
    grid = {(r["half_year"], r["age_band"] or "unknown"): r["count"] for r in by_band}
    series = {band: [drawn(grid.get((h, band), 0)) for h in halves] for band in bands}
    result.sections.append(
        Section(
            "Web pages per half-year, by the youngest child's age band",
            charts.stacked_bars("Web pages per half-year by age band", halves, series),
            ["half-year", *bands],
            [[h, *(hide(grid.get((h, b), 0)) for b in bands)] for h in halves],
            _csv(measure="pages", by=["half_year", "age_band"], to=end.isoformat()),
        )
    )

    # The self-generated share over time.
    shares = service.table(
        session, settings, Query(measure="pages", by=["half_year", "self_generated"], start=first, end=end)
    ).rows
    totals: dict[str, int] = {}
    selfmade: dict[str, int] = {}
    for r in shares:
        totals[r["half_year"]] = totals.get(r["half_year"], 0) + r["count"]
        if r["self_generated"]:
            selfmade[r["half_year"]] = r["count"]
    share_values = [
        service._pct(selfmade.get(h, 0), totals.get(h, 0)) if totals.get(h, 0) >= max(threshold, 1) else None
        for h in halves
    ]
    result.sections.append(
        Section(
            "Self-generated share of web pages",
            charts.line("Self-generated share per half-year", halves, share_values),
            ["half-year", "self-generated", "all pages", "share %"],
            [
                [h, hide(selfmade.get(h, 0)), hide(totals.get(h, 0)), "" if v is None else v]
                for h, v in zip(halves, share_values, strict=True)
            ],
            _csv(measure="pages", by=["half_year", "self_generated"], to=end.isoformat()),
        )
    )

    # Takedown time for the notices sent this year.
    bands_taken = service.takedown_distribution(session, settings, start, end)
    result.sections.append(
        Section(
            f"Takedown time, notices sent in {year}",
            charts.hbars("Takedown time", [b for b, _ in bands_taken], [drawn(n) for _, n in bands_taken]),
            ["time to removal", "notices"],
            [[b, hide(n)] for b, n in bands_taken],
            _csv(measure="takedown", by="year", **{"from": start.isoformat()}, to=end.isoformat()),
            note="From the notice being sent to the content being found gone.",
        )
    )

    # Hosting countries this year.
    countries = service.table(
        session, settings, Query(measure="pages", by=["year", "hosting_country"], start=start, end=end)
    ).rows
    ranked = sorted((r for r in countries if r["count"]), key=lambda r: (-r["count"], r["hosting_country"] or ""))[:10]
    result.sections.append(
        Section(
            f"Where the web pages were hosted in {year} (top 10)",
            charts.hbars(
                "Hosting countries",
                [r["hosting_country"] or "unknown" for r in ranked],
                [drawn(r["count"]) for r in ranked],
            ),
            ["country", "pages", "share %", "a year earlier", "change %"],
            [
                [
                    r["hosting_country"] or "unknown",
                    hide(r["count"]),
                    r["share_pct"] if not threshold or r["count"] >= threshold else "",
                    hide(r["previous"]),
                    "" if r["change_pct"] is None or (threshold and r["previous"] < threshold) else r["change_pct"],
                ]
                for r in ranked
            ],
            _csv(measure="pages", by=["year", "hosting_country"], **{"from": start.isoformat()}, to=end.isoformat()),
        )
    )
    return result


def report_tables(
    session: Session, settings: Settings, year: int, *, public: bool = False
) -> list[tuple[str, list[str], list[list[Any]], str]]:
    """The annual report's extra tables: age band by self-generated, category, site type (this year
    against the last)."""
    threshold = settings.stats_public_threshold if public else 0
    start, end = _year(year)
    out = []
    for title, by in (
        ("Web pages by age band and self-generated", ["year", "age_band", "self_generated"]),
        ("Web pages by category", ["year", "category"]),
        ("Web pages by site type", ["year", "site_type"]),
        ("Images and videos by age band", ["year", "age_band"]),
    ):
        measure = "images" if title.startswith("Images") else "pages"
        result = service.table(session, settings, Query(measure=measure, by=by, start=start, end=end))
        rows = service.suppress(result.rows, threshold) if threshold else result.rows
        dims = by[1:]
        columns = [d.replace("_", " ") for d in dims] + ["count", "a year earlier", "change %", "share %"]
        table = [
            [
                *("yes" if r[d] is True else "no" if r[d] is False else r[d] or "unknown" for d in dims),
                r["count"],
                r["previous"],
                "" if r["change_pct"] is None else r["change_pct"],
                "" if r["share_pct"] is None else r["share_pct"],
            ]
            for r in rows
            if r["count"] or r["previous"]
        ]
        out.append(
            (title, columns, table, _csv(measure=measure, by=by, **{"from": start.isoformat()}, to=end.isoformat()))
        )
    return out
