"""``seawall stats …``: tables by period and dimension, historical import, rebuild — the same
services as the API."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction
from seawall.stats import service

stats_app = typer.Typer(help="Statistics and trends: table, import urls|images, rebuild.", no_args_is_help=True)
import_app = typer.Typer(
    help="Import a hotline's past years (CSV with a header, idempotent by id).", no_args_is_help=True
)
stats_app.add_typer(import_app, name="import")
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"--{name} is a day, YYYY-MM-DD (got {value!r})") from None


@stats_app.command("table")
def table(
    measure: str = typer.Option("pages", help=f"One of {', '.join(service.MEASURES)}."),
    by: list[str] = typer.Option(
        [], "--by", help="A period (day, week, month, quarter, half_year, year) or dimension."
    ),
    where: list[str] = typer.Option([], "--where", help="dimension=value, e.g. self_generated=true."),
    since: int | None = typer.Option(None, help="Base year for growth, e.g. 2020."),
    start: str | None = typer.Option(None, "--from", help="First local day, YYYY-MM-DD."),
    end: str | None = typer.Option(None, "--to", help="Last local day, YYYY-MM-DD."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """Counts by period and dimension, with share, year-on-year change and growth since a base year."""
    if fmt not in ("table", "json", "csv"):
        raise _fail(f"--format is table, json or csv (got {fmt!r})")
    try:
        query = service.Query(
            measure=measure,
            by=service.parse_by(by),
            where=service.parse_where(where),
            start=_day(start, "from"),
            end=_day(end, "to"),
            since=since,
        )
        with default_sessionmaker(writes=False)() as session:
            result = service.table(session, get_settings(), query)
    except service.StatsError as exc:
        raise _fail(str(exc)) from None
    if fmt == "json":
        print(json.dumps({"rows": result.rows}, indent=2))
    elif fmt == "csv":
        sys.stdout.write(service.to_csv(result))
    else:
        grid = Table(*result.columns, title=f"{measure} ({result.source})")
        for row in result.rows:
            grid.add_row(*("" if row.get(c) is None else str(row[c]) for c in result.columns))
        out.print(grid)


def _import(kind: str, path: Path) -> None:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    try:
        with transaction(default_sessionmaker()) as session:
            done = service.import_records(session, get_settings(), kind, text)
    except service.StatsError as exc:
        raise _fail(f"{path}: {exc}; nothing was imported") from None
    out.print(
        f"{done.read} {kind} read: {done.added} added, {done.replaced} replaced, {done.unchanged} already imported"
    )


@import_app.command("urls")
def import_urls(path: Path = typer.Argument(..., help="CSV file ('-' for standard input).")) -> None:
    """One assessed page per line: id, reported_at, assessed_at, url, outcome, category, age_band, sex,
    self_generated, commercial, ai_generated, site_type, hosting_country, channel."""
    _import("urls", path)


@import_app.command("images")
def import_images(path: Path = typer.Argument(..., help="CSV file ('-' for standard input).")) -> None:
    """One assessed image per line: id, assessed_at, category, age_band, sex, self_generated, url."""
    _import("images", path)


@stats_app.command("rebuild")
def rebuild() -> None:
    """Write records for assessments confirmed before statistics existed, move every record to its day
    in SEAWALL_TIMEZONE, and recompute the cube."""
    started = datetime.now()
    with transaction(default_sessionmaker()) as session:
        done = service.rebuild(session, get_settings())
    seconds = (datetime.now() - started).total_seconds()
    out.print(
        f"{done['assessments']} confirmed assessments recorded, {done['days_moved']} records moved to another day, "
        f"{done['cells']} cube cells written in {seconds:.1f} s"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(stats_app, name="stats")
