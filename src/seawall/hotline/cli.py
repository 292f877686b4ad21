"""The hotline from the command line, the same services as the API: `seawall reports …` (intake),
`seawall hosts …` (tracing), `seawall notices …` (notice and takedown), `seawall partners …` and
`seawall referrals …` (partner hotlines, referrals, the law-enforcement export)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction
from seawall.hotline import intake, partners, referrals, signing, tracing
from seawall.hotline.models import Assessment, Case, Host, PartnerHotline

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


# ---- partners and referrals ------------------------------------------------------------------

partners_app = typer.Typer(
    help="Partner hotlines: our signing key, add, list, show, update, remove.", no_args_is_help=True
)
referrals_app = typer.Typer(
    help="Referrals to partner hotlines and to law enforcement: list, show, send, retry, sync, export-le.",
    no_args_is_help=True,
)


def _read_secret(path: str | None) -> str | None:
    """A secret from a file ("-": standard input), never from the command line (shell history, ps)."""
    if path is None:
        return None
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return text.strip() or None


def _public_key_arg(value: str | None) -> str | None:
    """The public key as given, or read from a file when it names one."""
    if value is None or value.startswith(("ed25519:", "-----BEGIN")):
        return value
    path = Path(value)
    if path.is_file():
        return path.read_text()
    return value


def _print_partner(partner: PartnerHotline) -> None:
    shown = partners.describe(partner)
    out.print(f"[bold]{shown['name']}[/bold]  {shown['country']}  {'enabled' if shown['enabled'] else 'disabled'}")
    out.print(f"  endpoint: {shown['endpoint'] or '-'}")
    out.print(f"  public key: {shown['public_key'] or '-'}")
    out.print(f"  fingerprint: {shown['fingerprint'] or '-'}")
    out.print(f"  our API key at its instance: {'stored (sealed)' if shown['has_api_key'] else '-'}")
    out.print(f"  the key it calls us with: {shown['inbound_key'] or '-'}")


@partners_app.command("key")
def partners_key() -> None:
    """Print this instance's public signing key (made on first use), to give to partner hotlines."""
    settings = get_settings()
    public = signing.public_key_text(settings)
    print(public)
    err.print(f"fingerprint {signing.fingerprint(public)}; private key in {signing.key_path(settings)}")


@partners_app.command("add")
def partners_add(
    name: str = typer.Argument(..., help="A short name, e.g. nl-hotline."),
    country: str = typer.Option(..., help="The country whose referrals go to it (ISO 3166 alpha-2)."),
    endpoint: str | None = typer.Option(None, help="Its Seawall's base URL, https://…"),
    public_key: str | None = typer.Option(
        None, help="Its public key (ed25519:… as `seawall partners key` prints), or a file."
    ),
    api_key_file: str | None = typer.Option(None, help="File holding our API key at its instance ('-': stdin)."),
    inbound_key: str | None = typer.Option(
        None, help="An existing API key of ours (referrals:write) it calls us with."
    ),
    issue_key: bool = typer.Option(True, help="Without --inbound-key: issue it a key (printed once)."),
) -> None:
    """Register a partner hotline; prints the key issued to it, to hand over with our public key."""
    settings = get_settings()
    try:
        with transaction(default_sessionmaker()) as session:
            new = partners.create_partner(
                session,
                settings,
                cli_principal(),
                name=name,
                country=country,
                endpoint=endpoint,
                public_key=_public_key_arg(public_key),
                api_key=_read_secret(api_key_file),
                inbound_key=inbound_key,
                issue_key=issue_key,
            )
            _print_partner(new.partner)
    except partners.PartnerError as exc:
        raise _fail(str(exc)) from None
    if new.issued_key:
        err.print(f"The key {name} calls us with (shown once; give it to them with `seawall partners key`'s output):")
        print(new.issued_key)


@partners_app.command("ls")
def partners_ls() -> None:
    """Partner hotlines by country."""
    with default_sessionmaker(writes=False)() as session:
        table = Table("name", "country", "endpoint", "fingerprint", "our key", "their key", "enabled")
        for partner in partners.list_partners(session):
            shown = partners.describe(partner)
            table.add_row(
                shown["name"],
                shown["country"],
                shown["endpoint"] or "",
                (shown["fingerprint"] or "")[:16],
                "yes" if shown["has_api_key"] else "no",
                shown["inbound_key"] or "",
                "yes" if shown["enabled"] else "no",
            )
    out.print(table)


@partners_app.command("show")
def partners_show(name: str = typer.Argument(..., help="The partner's name.")) -> None:
    """One partner hotline (never the key we hold at its instance)."""
    with default_sessionmaker(writes=False)() as session:
        try:
            _print_partner(partners.get_partner(session, name))
        except partners.PartnerNotFound as exc:
            raise _fail(str(exc)) from None


@partners_app.command("update")
def partners_update(
    name: str = typer.Argument(..., help="The partner's name."),
    country: str | None = typer.Option(None, help="Its country."),
    endpoint: str | None = typer.Option(None, help="Its Seawall's base URL."),
    public_key: str | None = typer.Option(None, help="Its public key, or a file holding it."),
    api_key_file: str | None = typer.Option(None, help="File holding our API key at its instance ('-': stdin)."),
    inbound_key: str | None = typer.Option(None, help="The API key of ours it calls us with."),
    enabled: bool | None = typer.Option(None, "--enable/--disable", help="Refer to it and accept from it, or not."),
) -> None:
    """Change what is given; the rest stays."""
    changes: dict[str, Any] = {}
    if endpoint is not None:
        changes["endpoint"] = endpoint
    if public_key is not None:
        changes["public_key"] = _public_key_arg(public_key)
    if api_key_file is not None:
        changes["api_key"] = _read_secret(api_key_file)
    if inbound_key is not None:
        changes["inbound_key"] = inbound_key
    try:
        with transaction(default_sessionmaker()) as session:
            partner = partners.update_partner(
                session, get_settings(), cli_principal(), name, country=country, enabled=enabled, **changes
            )
            _print_partner(partner)
    except (partners.PartnerError, partners.PartnerNotFound) as exc:
        raise _fail(str(exc)) from None


@partners_app.command("remove")
def partners_remove(name: str = typer.Argument(..., help="The partner's name.")) -> None:
    """Remove a partner hotline and revoke the key it calls us with (its referrals stay on record)."""
    try:
        with transaction(default_sessionmaker()) as session:
            partners.remove_partner(session, cli_principal(), name)
    except partners.PartnerNotFound as exc:
        raise _fail(str(exc)) from None
    err.print(f"removed {name}")


@referrals_app.command("ls")
def referrals_ls(
    direction: str | None = typer.Option(None, help="out (ours) or in (partners')."),
    state: str | None = typer.Option(
        None, help="pending, failed, received, assessed, actioned, removed, closed, exported."
    ),
    limit: int = typer.Option(50, help="How many, newest first."),
) -> None:
    """Referrals, newest first."""
    with default_sessionmaker(writes=False)() as session:
        table = Table("uid", "created", "dir", "kind", "partner", "case", "state", "attempts", "last error")
        for referral, partner, case in referrals.list_referrals(session, direction=direction, state=state, limit=limit):
            table.add_row(
                referral.uid,
                f"{referral.created_at:%Y-%m-%d %H:%M}",
                referral.direction,
                referral.kind,
                partner.name if partner else "",
                case.reference if case else "",
                referral.state,
                str(referral.attempts),
                referral.last_error[:80],
            )
    out.print(table)


@referrals_app.command("show")
def referrals_show(uid: str = typer.Argument(..., help="The referral's uid.")) -> None:
    """One referral: its state, and the signed document as JSON."""
    with default_sessionmaker(writes=False)() as session:
        referral = referrals.get_referral(session, uid)
        if referral is None:
            raise _fail(f"no referral {uid!r}")
        line = {
            "uid": referral.uid,
            "direction": referral.direction,
            "kind": referral.kind,
            "state": referral.state,
            "remote_id": referral.remote_id,
            "attempts": referral.attempts,
            "last_error": referral.last_error,
            "document": referral.document,
            "signature": referral.signature,
        }
    print(json.dumps(line, indent=2, ensure_ascii=False))


@referrals_app.command("send")
def referrals_send(
    case: str = typer.Argument(..., help="A case reference (C-…)."),
    country: str = typer.Option(..., help="Refer it to the partner hotline of this country."),
) -> None:
    """Refer a case by hand (when tracing could not say where it is hosted); the worker delivers it."""
    settings = get_settings()
    try:
        with transaction(default_sessionmaker()) as session:
            found = session.scalar(select(Case).where(Case.reference == case.strip().upper()))
            if found is None:
                raise referrals.ReferralError(f"no case {case!r}")
            referral = referrals.refer(session, settings, cli_principal(), found, country)
            line = {"uid": referral.uid, "state": referral.state, "last_error": referral.last_error}
    except referrals.ReferralError as exc:
        raise _fail(str(exc)) from None
    print(json.dumps(line))


@referrals_app.command("retry")
def referrals_retry(uid: str = typer.Argument(..., help="The referral's uid.")) -> None:
    """Send a referral (or its status update) again, with a fresh budget of attempts."""
    try:
        with transaction(default_sessionmaker()) as session:
            referrals.retry(session, cli_principal(), uid)
    except (LookupError, referrals.ReferralError) as exc:
        raise _fail(str(exc)) from None
    err.print(f"{uid} queued")


@referrals_app.command("sync")
def referrals_sync() -> None:
    """Do now what the worker does every minute: route, follow referred cases, queue due deliveries."""
    report = referrals.sweep(default_sessionmaker(), get_settings())
    print(json.dumps({"routed": report.routed, "progressed": report.progressed, "queued": len(report.queued)}))


@referrals_app.command("export-le")
def referrals_export_le(
    cases: list[str] = typer.Argument(..., help="Case references (C-…) or report references (R-…)."),
    out_dir: Path = typer.Option(..., "--out", help="A new (or empty) folder to write the package into."),
) -> None:
    """Write a law-enforcement referral package (JSON + CSV; no media) and record it."""
    from seawall.hotline import le_export

    try:
        package = le_export.export(default_sessionmaker(), get_settings(), cli_principal(), cases, out_dir)
    except le_export.ExportError as exc:
        raise _fail(str(exc)) from None
    print(
        json.dumps(
            {"package": package.uid, "folder": str(package.folder), "cases": package.cases, "files": package.files}
        )
    )


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


# ---- capture


@reports_app.command("capture")
def capture_command(
    reference: str = typer.Argument(..., help="A report (R-…) or case (C-…) reference."),
    recheck: bool = typer.Option(False, "--recheck", help="Only check whether the case's content is still there."),
) -> None:
    """Capture a report's page now (or re-check it); prints what was found as JSON."""
    from sqlalchemy import select

    from seawall.hotline import capture

    factory = default_sessionmaker()
    with factory() as session:
        wanted = reference.strip().upper()
        report = intake.get_report(session, wanted)
        case_id = report.case_id if report is not None else None
        if report is None:
            case_id = session.scalar(select(Case.id).where(Case.reference == wanted))
    if case_id is None:
        raise _fail(f"no report or case {reference!r}")
    try:
        result = capture.run_capture(
            factory, get_settings(), case_id, purpose="recheck" if recheck else "initial", actor=cli_principal()
        )
    except capture.CaptureError as exc:
        raise _fail(str(exc)) from None
    summary = {
        "case": case_id,
        "capture": result.capture_id,
        "state": result.state,
        "http_status": result.http_status,
        "final_url": result.final_url,
        "error": result.error or None,
        "items": result.items,
        "new_items": result.new_items,
        "inherited": result.inherited,
        "skipped": result.skipped,
    }
    if recheck:
        summary.update(present_items=result.present_items, content_gone=result.content_gone())
    print(json.dumps(summary))
    if result.state in ("failed", "busy"):
        raise typer.Exit(1)


# ---- notices ---------------------------------------------------------------------------------------

notices_app = typer.Typer(
    help="Notices to hosts: list, show, send, re-check, sweep; seal the SMTP password.", no_args_is_help=True
)


def _notice_json(notice_id: int, document: bool = False) -> str:
    from seawall.hotline import notices

    with default_sessionmaker(writes=False)() as session:
        try:
            notice = notices.get_notice(session, notice_id)
        except LookupError as exc:
            raise _fail(str(exc)) from None
        return json.dumps(notices.as_dict(*notices.with_case(session, notice), document=document), default=str)


@notices_app.command("ls")
def notices_ls(
    state: str | None = typer.Option(None, help="pending, sent, failed, removed, escalated or closed."),
    case: str | None = typer.Option(None, help="Only this case's (C-…)."),
    limit: int = typer.Option(50, help="How many, newest first."),
) -> None:
    """Notices, newest first: case, recipient, state, checks, takedown time."""
    from seawall.hotline import notices

    with default_sessionmaker(writes=False)() as session:
        try:
            rows = notices.list_notices(session, state=state, case=case, limit=limit)
        except notices.NoticeError as exc:
            raise _fail(str(exc)) from None
        table = Table("id", "case", "state", "channel", "recipient", "sent", "checks", "takedown (s)", "last error")
        for notice, found, _ in rows:
            table.add_row(
                str(notice.id),
                found.reference,
                notice.state,
                notice.channel,
                notice.recipient or "-",
                notice.sent_at.strftime("%Y-%m-%d %H:%M") if notice.sent_at else "-",
                str(notice.checks),
                str(notice.takedown_seconds) if notice.takedown_seconds is not None else "-",
                notice.last_error[:60],
            )
    out.print(table)


@notices_app.command("show")
def notices_show(notice_id: int = typer.Argument(..., help="The notice's id.")) -> None:
    """One notice as JSON, with the XARF report it carries."""
    print(_notice_json(notice_id, document=True))


@notices_app.command("send")
def notices_send(notice_id: int = typer.Argument(..., help="The notice's id.")) -> None:
    """Send a pending or failed notice now (a fresh budget of attempts); prints the notice as JSON."""
    from seawall.hotline import notices

    factory = default_sessionmaker()
    try:
        with transaction(factory) as session:
            notices.retry(session, cli_principal(), notice_id, queue=False)
    except LookupError as exc:
        raise _fail(str(exc)) from None
    except notices.NoticeError as exc:
        raise _fail(str(exc)) from None
    notices.send(factory, get_settings(), notice_id)
    print(_notice_json(notice_id))


@notices_app.command("recheck")
def notices_recheck(notice_id: int = typer.Argument(..., help="The notice's id.")) -> None:
    """Re-check a sent notice's content now; prints the notice as JSON (state removed if it is gone)."""
    from seawall.hotline import notices

    factory = default_sessionmaker()
    try:
        with transaction(factory) as session:
            notices.request_recheck(session, cli_principal(), notice_id, queue=False)
    except LookupError as exc:
        raise _fail(str(exc)) from None
    except notices.NoticeError as exc:
        raise _fail(str(exc)) from None
    notices.recheck(factory, get_settings(), notice_id)
    print(_notice_json(notice_id))


@notices_app.command("sweep")
def notices_sweep() -> None:
    """What the worker does every minute: address waiting notices, queue the sends and re-checks due."""
    from seawall.hotline import notices

    report = notices.sweep(default_sessionmaker(), get_settings())
    print(json.dumps({"routed": report.routed, "sends": report.sends, "checks": report.checks}))


@notices_app.command("seal-password")
def notices_seal_password() -> None:
    """Read the SMTP password from standard input; print the sealed value for SEAWALL_NOTICE_SMTP_PASSWORD."""
    from seawall.hotline import mail

    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise _fail("no password on standard input")
    print(mail.seal_password(get_settings(), password))


def register(app: typer.Typer) -> None:
    app.add_typer(reports_app, name="reports")
    app.add_typer(notices_app, name="notices")
    app.add_typer(partners_app, name="partners")
    app.add_typer(referrals_app, name="referrals")
    app.add_typer(hosts_app, name="hosts")
    app.add_typer(cases_app, name="cases")
