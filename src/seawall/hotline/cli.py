"""`seawall reports …`: the hotline's intake from the command line (the same service as the API)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction
from seawall.hotline import intake
from seawall.hotline.models import Case

reports_app = typer.Typer(help="Hotline reports: create, list, show.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


@reports_app.command("create")
def create(
    urls: list[str] = typer.Argument(..., help="One report per URL."),
    channel: str = typer.Option("import", help="public, partner, proactive, import … (recorded on the report)."),
    description: str = typer.Option("", help="What the reporter said."),
    content_type: str | None = typer.Option(None, help="images, videos or other."),
    site_type: str | None = typer.Option(None, help="image_host, forum, … (see docs)."),
    urgent: bool = typer.Option(False, "--urgent", help="Assessed first."),
) -> None:
    """Report URLs (prints each report's reference, case and PIN as JSON lines)."""
    settings = get_settings()
    failed = False
    for url in urls:
        report = intake.ReportIn(
            channel=channel,
            url=url,
            description=description,
            content_type=content_type,
            site_type=site_type,
            urgent=urgent,
        )
        try:
            with transaction(default_sessionmaker()) as session:
                done = intake.submit(session, settings, cli_principal(), report)
                line = {
                    "url": url,
                    "reference": done.report.reference,
                    "pin": done.pin,
                    "case": done.case.reference,
                    "new_case": done.new_case,
                }
        except intake.IntakeError as exc:
            failed = True
            line = {"url": url, "error": str(exc)}
        print(json.dumps(line))
    if failed:
        raise typer.Exit(1)


@reports_app.command("ls")
def ls(
    status: str | None = typer.Option(None, help="received, assessed, action taken, closed, or a case state."),
    channel: str | None = typer.Option(None, help="Only reports from this channel."),
    limit: int = typer.Option(50, help="How many, newest first."),
) -> None:
    """Reports, newest first, with their case and its state."""
    with default_sessionmaker(writes=False)() as session:
        rows = intake.list_reports(session, status=status, channel=channel, limit=limit)
        table = Table("reference", "reported", "channel", "case", "state", "url")
        for report, case in rows:
            table.add_row(
                report.reference,
                f"{report.reported_at:%Y-%m-%d %H:%M}",
                report.channel,
                case.reference if case else "",
                case.state if case else "",
                report.url or "(hashes)",
            )
    out.print(table)


@reports_app.command("show")
def show(reference: str = typer.Argument(..., help="A report reference, R-…")) -> None:
    """One report: its channel, URL, case and the case's state."""
    with default_sessionmaker(writes=False)() as session:
        report = intake.get_report(session, reference)
        if report is None:
            raise _fail(f"no report {reference!r}")
        case = session.get(Case, report.case_id) if report.case_id is not None else None
        out.print(
            f"[bold]{report.reference}[/bold]  {report.channel} report of {report.reported_at:%Y-%m-%d %H:%M} UTC"
        )
        out.print(f"  url: {report.url or '(hashes only)'}")
        out.print(f"  seen: {report.content_type or '-'} on {report.site_type or '-'}   urgent: {report.urgent}")
        if report.description:
            out.print(f"  description: {report.description}")
        signals = intake.signals_of(session, report)
        if signals:
            out.print("  hashes: " + ", ".join(f"{t}:{v}" for t, v in signals))
        if case is not None:
            out.print(f"  case: {case.reference} ({case.state}); public status: {intake.public_status(case)}")


def register(app: typer.Typer) -> None:
    app.add_typer(reports_app, name="reports")
