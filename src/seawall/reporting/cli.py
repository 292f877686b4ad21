"""``seawall authority-reports …`` (drafts, submission, retraction, the NCA pack, credentials) and
``seawall vault …`` (key rotation, retention purge, legal holds)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction
from seawall.fetch import AddressRules
from seawall.reporting import cybertipline, retention, service

reports_app = typer.Typer(help="Authority reports: NCMEC CyberTipline and the UK NCA.", no_args_is_help=True)
vault_app = typer.Typer(help="The evidence vault: key rotation, retention purge, legal holds.", no_args_is_help=True)
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(1)


@reports_app.command("ls")
def ls(
    state: str | None = typer.Option(None, help="draft, approved, opened, submitted, retracted, cancelled, failed."),
    limit: int = typer.Option(50, help="How many, newest first."),
) -> None:
    """Authority reports, newest first; an NCA report past its priority's deadline shows OVERDUE."""
    with default_sessionmaker(writes=False)() as session:
        rows = [service.summary(session, r) for r in service.listing(session, state=state, limit=limit)]
    table = Table("reference", "authority", "state", "case", "priority", "due", "remote id", "error")
    for r in rows:
        due = (r["due_at"] or "")[:16] + (" OVERDUE" if r["overdue"] else "")
        state_text = r["state"] + (" (half-finished)" if r["half_finished"] else "")
        table.add_row(
            r["reference"],
            r["authority"],
            state_text,
            r["case"] or "",
            str(r["priority"]),
            due,
            r["remote_id"] or "",
            r["last_error"][:60],
        )
    Console().print(table)


@reports_app.command("show")
def show(reference: str) -> None:
    """One report as JSON (its facts, files by hash, IP events, submission state)."""
    with default_sessionmaker(writes=False)() as session:
        try:
            print(service.dumps(service.summary(session, service.get(session, reference))))
        except service.NotFound as exc:
            raise _fail(str(exc)) from None


@reports_app.command("submit")
def submit(
    reference: str,
    now: bool = typer.Option(False, "--now", help="Submit in this process instead of through the worker."),
) -> None:
    """Approve a draft for submission (the worker submits it; --now: here and now)."""
    settings, factory = get_settings(), default_sessionmaker()
    try:
        with transaction(factory) as session:
            row = service.get(session, reference)
            service.approve(session, settings, cli_principal(), row)
            report_id = row.id
    except (service.NotFound, service.ReportingError, service.Conflict) as exc:
        raise _fail(str(exc)) from None
    if now:
        row = service.advance(factory, settings, report_id)
        if row.state == "failed":
            raise _fail(f"{reference} failed: {row.last_error}")
    with factory() as session:
        print(service.dumps(service.summary(session, service.get(session, reference))))


@reports_app.command("retract")
def retract(reference: str) -> None:
    """Withdraw a report that is not filed yet (NCMEC's /retract for one it holds unfinished)."""
    factory = default_sessionmaker()
    try:
        row = service.retract(factory, get_settings(), cli_principal(), reference)
    except (service.NotFound, service.ReportingError, service.Conflict, cybertipline.CyberTiplineError) as exc:
        raise _fail(str(exc)) from None
    print(json.dumps({"reference": row.reference, "state": row.state, "remote_id": row.remote_id}))


@reports_app.command("cancel")
def cancel(reference: str) -> None:
    """Cancel a report NCMEC holds opened but unfinished (NCMEC's /cancel); it ends 'cancelled'."""
    factory = default_sessionmaker()
    try:
        row = service.cancel(factory, get_settings(), cli_principal(), reference)
    except (service.NotFound, service.ReportingError, service.Conflict, cybertipline.CyberTiplineError) as exc:
        raise _fail(str(exc)) from None
    print(json.dumps({"reference": row.reference, "state": row.state, "remote_id": row.remote_id}))


@reports_app.command("export")
def export(reference: str) -> None:
    """The NCA report pack as JSON, for the NCA's portal."""
    with transaction(default_sessionmaker()) as session:
        try:
            document = service.export_pack(session, get_settings(), cli_principal(), service.get(session, reference))
        except service.NotFound as exc:
            raise _fail(str(exc)) from None
    print(service.dumps(document))


@reports_app.command("credentials")
def credentials(
    authority: str = typer.Argument(..., help="ncmec or nca."),
    username: str = typer.Option(..., prompt=True, help="The login the authority issued."),
    password: str = typer.Option(..., prompt=True, hide_input=True, help="Its password or token (stored encrypted)."),
) -> None:
    """Store an authority's login; the password encrypted, never printed or logged."""
    try:
        with transaction(default_sessionmaker()) as session:
            service.set_credentials(session, get_settings(), cli_principal(), authority, username, password)
    except service.ReportingError as exc:
        raise _fail(str(exc)) from None
    print(f"{authority} credentials stored for {username}")


@reports_app.command("fetch-xsd")
def fetch_xsd() -> None:
    """Fetch NCMEC's schema from your account (GET /xsd) into SEAWALL_HOME: documents are then validated."""
    settings = get_settings()
    with default_sessionmaker(writes=False)() as session:
        try:
            username, password = service.credentials(session, settings, "ncmec")
        except service.ReportingError as exc:
            raise _fail(str(exc)) from None
    try:
        with cybertipline.CyberTiplineClient(
            settings.cybertipline_url, username, password, rules=AddressRules.from_settings(settings)
        ) as client:
            data = client.xsd()
    except cybertipline.CyberTiplineError as exc:
        raise _fail(str(exc)) from None
    path = cybertipline.schema_path(settings.ensure_home())
    path.write_bytes(data)
    print(f"saved {len(data)} bytes to {path}")


@vault_app.command("rotate")
def rotate() -> None:
    """Re-wrap every object's data key under the current master key (content untouched).

    Set the new key as SEAWALL_EVIDENCE_KEY (or the key file) and the old one in
    SEAWALL_EVIDENCE_PREVIOUS_KEYS, run this, then drop the old key."""
    from seawall.evidence import service as evidence

    try:
        done = evidence.rotate(default_sessionmaker(), get_settings(), cli_principal())
    except evidence.EvidenceError as exc:
        raise _fail(str(exc)) from None
    print(json.dumps({"rewrapped": done.rewrapped, "key_id": done.current, "missing_keys": done.missing_keys}))
    if done.missing_keys:
        raise _fail(
            "some objects were sealed with keys that are not configured: add them to SEAWALL_EVIDENCE_PREVIOUS_KEYS"
        )


@vault_app.command("purge")
def purge() -> None:
    """Destroy evidence whose retention ended (never under a legal hold); what the worker does daily."""
    result = retention.purge(default_sessionmaker(), get_settings())
    print(json.dumps({"purged": result.purged, "held": result.held}))


@vault_app.command("hold")
def hold(case: str, reason: str = typer.Option(..., help="The order or request the hold answers.")) -> None:
    """Place a legal hold on a case: nothing under it is purged until it is released."""
    try:
        with transaction(default_sessionmaker()) as session:
            placed = retention.place_hold(session, cli_principal(), case, reason)
            hold_id = placed.id
    except (service.NotFound, service.ReportingError) as exc:
        raise _fail(str(exc)) from None
    print(json.dumps({"hold": hold_id, "case": case}))


@vault_app.command("release")
def release(hold_id: int) -> None:
    """Release a legal hold."""
    try:
        with transaction(default_sessionmaker()) as session:
            retention.release_hold(session, cli_principal(), hold_id)
    except service.NotFound as exc:
        raise _fail(str(exc)) from None
    print(json.dumps({"hold": hold_id, "released": True}))


def register(app: typer.Typer) -> None:
    app.add_typer(reports_app, name="authority-reports")
    app.add_typer(vault_app, name="vault")
