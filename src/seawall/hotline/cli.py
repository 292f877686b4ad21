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
from seawall.hotline.models import Assessment, Case

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


# ---- cases: assessment and QA ---------------------------------------------------------------

cases_app = typer.Typer(help="Hotline cases: what was reported, captured, assessed and checked.", no_args_is_help=True)


def _findings(row: Assessment) -> str:
    from seawall.hotline import classification

    parts = [row.outcome]
    if row.category:
        parts.append(f"cat {row.category}")
    if row.age_band:
        parts.append(f"age {row.age_band}")
    if row.sex:
        parts.append(row.sex)
    if row.children:
        parts.append(f"{row.children} {'child' if row.children == 1 else 'children'}")
    parts.extend(row.flags or ())
    mapped = classification.classify(row.outcome, row.category, row.age_band, row.flags or ())
    if mapped.industry:
        parts.append(f"industry {mapped.industry}")
    if mapped.interpol:
        parts.append(f"interpol {mapped.interpol}")
    return ", ".join(parts)


@cases_app.command("show")
def show_case(reference: str = typer.Argument(..., help="A case reference (C-…) or one of its reports (R-…)")) -> None:
    """One case: its reports, items, assessments (the one in force marked) and QA decisions."""
    from seawall.hotline import assessment

    with default_sessionmaker(writes=False)() as session:
        try:
            case = assessment.find_case(session, reference)
        except assessment.NotFound as exc:
            raise _fail(str(exc)) from None
        detail = assessment.case_detail(session, case)
        out.print(f"[bold]{case.reference}[/bold]  {case.state} (version {case.version})  {case.url or '(hashes)'}")
        if case.hosting_country or case.hosting_ip:
            cdn = " behind a CDN" if case.hosting_behind_cdn else ""
            out.print(
                f"  hosted: {case.hosting_ip or '-'} AS{case.hosting_asn or '-'} {case.hosting_country or '-'}{cdn}"
            )
        for report in detail.reports:
            out.print(f"  report {report.reference}: {report.channel}, {report.reported_at:%Y-%m-%d %H:%M} UTC")
        items = Table("item", "media", "state", "version", "sha256", "found as")
        for item, link in detail.items:
            items.add_row(str(item.id), item.media, item.state, str(item.version), item.sha256[:16], link.found_as)
        if detail.items:
            out.print(items)
        table = Table("id", "subject", "by", "findings", "state", "QA")
        for row in detail.assessments:
            subject = f"item {row.item_id}" if row.subject == "item" else "case" + (" (derived)" if row.derived else "")
            marker = " *" if detail.current is not None and row.id == detail.current.id else ""
            qa = "; ".join(f"{q.decision} by {q.reviewer}" for q in detail.qa.get(row.id, []))
            table.add_row(f"{row.id}{marker}", subject, row.assessor, _findings(row), row.state, qa)
        if detail.assessments:
            out.print(table)
            out.print("  * the assessment that stands for the case")


def register(app: typer.Typer) -> None:
    app.add_typer(reports_app, name="reports")
    app.add_typer(cases_app, name="cases")
