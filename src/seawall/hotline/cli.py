"""`seawall reports …` (intake) and `seawall hosts …` (tracing): the same services as the API."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction
from seawall.hotline import intake, tracing
from seawall.hotline.models import Case, Host

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


# ---- tracing: `seawall hosts …`, the abuse-contact directory ----

hosts_app = typer.Typer(help="The abuse-contact directory: import, list, show; trace an address.", no_args_is_help=True)


@hosts_app.command("import")
def hosts_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV: asn,domain,name,abuse_email,…"),
) -> None:
    """Add or update contacts by (asn, domain); a bad line stops the import and nothing is kept."""
    try:
        with file.open("rb") as raw, transaction(default_sessionmaker()) as session:
            result = tracing.import_contacts_file(session, cli_principal(), raw, source_name=file.name)
    except tracing.InvalidContacts as exc:
        for error in exc.errors[1:]:
            err.print(f"  also {error}")
        raise _fail(f"{file}: {exc.errors[0]}; nothing was imported") from None
    err.print(f"{file.name}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged")


def _host_row(host: Host) -> list[str]:
    where = host.network if host.source == "rdap" else host.domain or ""
    return [
        str(host.id),
        f"AS{host.asn}" if host.asn is not None else "",
        where or "(retired)",
        host.name,
        host.abuse_email or "",
        host.api_endpoint or "",
        host.language,
        host.source,
        f"{host.updated_at:%Y-%m-%d}",
    ]


@hosts_app.command("ls")
def hosts_ls(
    source: str | None = typer.Option(None, help="import, rdap or manual."),
    limit: int = typer.Option(100, help="How many."),
) -> None:
    """Directory entries (by source, AS, domain) and cached RDAP answers."""
    with default_sessionmaker(writes=False)() as session:
        table = Table(
            "id", "asn", "domain / network", "name", "abuse email", "api endpoint", "lang", "source", "updated"
        )
        for host in tracing.list_hosts(session, source=source, limit=limit):
            table.add_row(*_host_row(host))
    out.print(table)


@hosts_app.command("show")
def hosts_show(key: str = typer.Argument(..., help="An id, an AS (AS64500) or a domain.")) -> None:
    """The entries for an id, an AS or a domain; for a domain, also the entry a case there would get."""
    with default_sessionmaker(writes=False)() as session:
        hosts = tracing.find_hosts(session, key)
        chosen = (
            None if key.upper().startswith("AS") or key.lstrip("#").isdigit() else tracing.host_for(session, None, key)
        )
        if not hosts and chosen is None:
            raise _fail(f"no host entry for {key!r}")
        for host in hosts:
            _print_host(host)
        if chosen is not None and chosen not in hosts:
            out.print(f"{key} has no entry of its own; a case there gets:")
            _print_host(chosen)


def _print_host(host: Host) -> None:
    key = " ".join(
        p for p in (f"AS{host.asn}" if host.asn is not None else "", host.domain or "", host.network or "") if p
    )
    out.print(f"[bold]#{host.id}[/bold] {key}  {host.name}  ({host.source}, {host.updated_at:%Y-%m-%d %H:%M} UTC)")
    out.print(f"  abuse email: {host.abuse_email or '-'}   api endpoint: {host.api_endpoint or '-'}")
    out.print(f"  language: {host.language}")


@hosts_app.command("trace")
def hosts_trace(
    address: str = typer.Argument(..., help="An IP address."),
    domain: str | None = typer.Option(None, help="The page's host name, for the directory's domain entries."),
) -> None:
    """What tracing says of an address with the configured data (and RDAP, if on): a check of the setup."""
    settings = get_settings()
    for problem in tracing.data_problems(settings):
        err.print(f"[yellow]warning:[/yellow] {problem}")
    try:
        trace = tracing.trace_address(settings, address)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    print(json.dumps(dataclasses.asdict(trace)))
    host = tracing.contact_for(default_sessionmaker(), settings, trace, domain)
    if host is None:
        out.print("no contact in the directory" + ("" if settings.trace_rdap else " (RDAP is off)"))
    else:
        _print_host(host)


def register(app: typer.Typer) -> None:
    app.add_typer(reports_app, name="reports")
    app.add_typer(hosts_app, name="hosts")
