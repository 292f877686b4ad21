"""`seawall users`, `seawall keys` and `seawall audit`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.permissions import SCOPES, Role, cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction

users_app = typer.Typer(help="Console accounts: create, list, disable, reset passwords.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for machines: create, list, revoke.", no_args_is_help=True)
audit_app = typer.Typer(help="The keyed audit log: verify, checkpoint, export.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    # soft_wrap: a long path in a message stays whole, so it can be copied (and searched for)
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(2)


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else "—"


@users_app.command("create")
def users_create(
    name: str = typer.Argument(..., help="Username."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(r.value for r in Role)}."),
    display_name: str = typer.Option("", "--display-name", help="Full name shown in the console."),
) -> None:
    """Create a console user and print its generated password once."""
    try:
        with transaction(default_sessionmaker()) as session:
            user, password = auth_service.create_user(
                session, cli_principal(), username=name, role=role, display_name=display_name
            )
    except (ValueError, auth_service.Conflict) as exc:
        raise _fail(str(exc)) from None
    err.print(f"created {user.role} [bold]{user.username}[/bold]; the password is shown once:")
    print(password)


@users_app.command("list")
def users_list() -> None:
    """List console users."""
    with transaction(default_sessionmaker()) as session:
        users = auth_service.list_users(session)
        table = Table("username", "role", "status", "last login", "created")
        for u in users:
            status = "disabled" if u.disabled else ("locked" if u.locked_until else "active")
            table.add_row(u.username, u.role, status, _when(u.last_login_at), _when(u.created_at))
    out.print(table)


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="Username.")) -> None:
    """Disable a user: no more logins, open sessions end at once."""
    try:
        with transaction(default_sessionmaker()) as session:
            auth_service.set_user_disabled(session, cli_principal(), name, True)
    except auth_service.NotFound as exc:
        raise _fail(str(exc)) from None
    err.print(f"disabled {name}")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="Username.")) -> None:
    """Enable a disabled or locked user."""
    try:
        with transaction(default_sessionmaker()) as session:
            auth_service.set_user_disabled(session, cli_principal(), name, False)
    except auth_service.NotFound as exc:
        raise _fail(str(exc)) from None
    err.print(f"enabled {name}")


@users_app.command("reset-password")
def users_reset_password(name: str = typer.Argument(..., help="Username.")) -> None:
    """Give a user a new generated password (printed once); this also ends a lock-out."""
    password = auth_service.generate_password()
    try:
        with transaction(default_sessionmaker()) as session:
            auth_service.set_password(session, cli_principal(), name, password)
    except auth_service.NotFound as exc:
        raise _fail(str(exc)) from None
    err.print(f"new password for [bold]{name}[/bold], shown once:")
    print(password)


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="A name for the key, e.g. the partner and system using it."),
    scope: list[str] = typer.Option(..., "--scope", help=f"Repeatable. One of: {', '.join(SCOPES)}."),
    list_name: list[str] = typer.Option([], "--list", help="Repeatable. Limit the key to these lists."),
) -> None:
    """Create an API key; the key itself is printed alone on the last line, once."""
    try:
        with transaction(default_sessionmaker()) as session:
            new = auth_service.create_api_key(
                session, cli_principal(), name=name, scopes=scope, lists=list_name or None
            )
    except (ValueError, auth_service.Conflict) as exc:
        raise _fail(str(exc)) from None
    err.print(f"created key [bold]{name}[/bold] with scopes {', '.join(new.key.scopes)}; it is shown once:")
    print(new.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never the secrets)."""
    with transaction(default_sessionmaker()) as session:
        table = Table("name", "prefix", "scopes", "lists", "status", "last used", "created")
        for k in auth_service.list_api_keys(session):
            table.add_row(
                k.name,
                k.prefix + "…",
                " ".join(k.scopes),
                " ".join(k.lists) if k.lists else "all",
                "revoked" if k.revoked_at else "active",
                _when(k.last_used_at),
                _when(k.created_at),
            )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Revoke an API key; requests with it are refused from now on."""
    try:
        with transaction(default_sessionmaker()) as session:
            auth_service.revoke_api_key(session, cli_principal(), name)
    except auth_service.NotFound as exc:
        raise _fail(str(exc)) from None
    err.print(f"revoked {name}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit chain with the audit key and every signed checkpoint; exit 1 and name the first
    altered, deleted, reordered, forged or cut-off event (exit 2 when the key is missing or wrong)."""
    try:
        with default_sessionmaker()() as session:
            report = audit.verify(session)
    except audit.AuditKeyError as exc:
        raise _fail(str(exc)) from None
    if report.ok:
        out.print(f"[green]OK[/green] {report.describe()}", soft_wrap=True)
        return
    out.print(f"[red]FAILED[/red] {report.describe()}", soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the chain's head into the checkpoint file now (the worker does it on a schedule); exit 1
    when the events since the last checkpoint do not check out (nothing is signed then)."""
    try:
        with default_sessionmaker()() as session:
            outcome = audit.write_checkpoint(session)
    except audit.AuditKeyError as exc:
        raise _fail(str(exc)) from None
    if not outcome.report.ok:
        out.print(f"[red]FAILED[/red] {outcome.message}", soft_wrap=True)
        raise typer.Exit(1)
    out.print(outcome.message, soft_wrap=True)
    if outcome.checkpoint is not None:
        print(json.dumps(outcome.checkpoint.as_dict(), sort_keys=True))


@audit_app.command("public-key")
def audit_public_key() -> None:
    """Print the public key that checks the signed checkpoints (PEM), for a third party to hold."""
    try:
        private = audit.load_signing_key(get_settings(), create=True)
    except audit.AuditKeyError as exc:
        raise _fail(str(exc)) from None
    print(audit.public_pem(private.public_key()).decode(), end="")


@audit_app.command("export")
def audit_export(
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: standard output)."),
) -> None:
    """Write the audit log as JSON lines, in chain order, for an auditor."""
    with default_sessionmaker()() as session:
        if output is None:
            count = audit.export(session, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as fh:
                count = audit.export(session, fh)
    err.print(f"exported {count} events")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
