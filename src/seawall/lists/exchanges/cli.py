"""`seawall exchanges …`: configure exchanges, see their status, sync one now."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service
from seawall.lists.exchanges.base import exchange_types

exchanges_app = typer.Typer(
    help="Exchanges: pull lists from files, other Seawall instances, NCMEC, StopNCII.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _parse_config(items: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise _fail(f"--config takes KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(text)  # numbers, booleans, null
            if not isinstance(value, (int, float, bool)) and value is not None:
                value = text
        except ValueError:
            value = text
        config[key.strip()] = value
    return config


@exchanges_app.command("types")
def types() -> None:
    """The exchange types this installation knows, with their settings (* secret)."""
    table = Table("type", "description", "settings")
    for name, cls in exchange_types().items():
        secrets = cls.secret_fields()
        fields = ", ".join(f"{f}{'*' if f in secrets else ''}" for f in cls.Config.model_fields)
        table.add_row(name, cls.description, fields)
    out.print(table)


@exchanges_app.command("create")
def create(
    name: str = typer.Argument(..., help="Exchange name."),
    type_: str = typer.Option(..., "--type", help="file, seawall, ncmec, stopncii or a plugin."),
    list_name: str = typer.Option(..., "--list", help="The list it feeds."),
    config: list[str] = typer.Option([], "--config", help="Repeatable KEY=VALUE setting."),
    interval: int = typer.Option(60, "--interval", help="Minutes between scheduled syncs."),
    disabled: bool = typer.Option(False, "--disabled", help="Create it without scheduling it."),
) -> None:
    """Create an exchange."""
    try:
        with transaction(default_sessionmaker()) as session:
            service.create_exchange(
                session,
                get_settings(),
                cli_principal(),
                name=name,
                type=type_,
                list_name=list_name,
                config=_parse_config(config),
                interval_minutes=interval,
                enabled=not disabled,
            )
    except (lists_service.ListError, lists_service.ListNotFound) as exc:
        raise _fail(str(exc)) from None
    err.print(f"created {type_} exchange [bold]{name}[/bold] feeding {list_name}")


@exchanges_app.command("set")
def set_(
    name: str = typer.Argument(..., help="Exchange name."),
    config: list[str] = typer.Option([], "--config", help="Repeatable KEY=VALUE setting to change."),
    interval: int | None = typer.Option(None, "--interval", help="Minutes between scheduled syncs."),
    reset_checkpoint: bool = typer.Option(False, "--reset-checkpoint", help="Start again from the beginning."),
) -> None:
    """Change an exchange's settings."""
    try:
        with transaction(default_sessionmaker()) as session:
            service.update_exchange(
                session,
                get_settings(),
                cli_principal(),
                service.get_exchange(session, name),
                config=_parse_config(config),
                interval_minutes=interval,
                reset_checkpoint=reset_checkpoint,
            )
    except (lists_service.ListError, service.ExchangeNotFound) as exc:
        raise _fail(str(exc)) from None
    err.print(f"updated {name}")


def _set_enabled(name: str, enabled: bool) -> None:
    try:
        with transaction(default_sessionmaker()) as session:
            exchange = service.get_exchange(session, name)
            service.update_exchange(session, get_settings(), cli_principal(), exchange, enabled=enabled)
    except service.ExchangeNotFound as exc:
        raise _fail(str(exc)) from None
    err.print(f"{'enabled' if enabled else 'disabled'} {name}")


@exchanges_app.command("enable")
def enable(name: str = typer.Argument(..., help="Exchange name.")) -> None:
    """Sync this exchange on its schedule."""
    _set_enabled(name, True)


@exchanges_app.command("disable")
def disable(name: str = typer.Argument(..., help="Exchange name.")) -> None:
    """Stop scheduled syncs of this exchange."""
    _set_enabled(name, False)


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


@exchanges_app.command("list")
def list_() -> None:
    """All exchanges with their last run."""
    table = Table("name", "type", "list", "enabled", "every", "last run", "last success", "+", "~", "-", "error")
    with default_sessionmaker()() as session:
        for exchange in service.list_exchanges(session):
            s = service.status(exchange)
            table.add_row(
                s["name"],
                s["type"],
                s["list"],
                "yes" if s["enabled"] else "no",
                f"{s['interval_minutes']} min",
                _when(s["last_run_at"]),
                _when(s["last_success_at"]),
                str(s["last_added"]),
                str(s["last_updated"]),
                str(s["last_retired"]),
                (s["last_error"] or "")[:60],
            )
    out.print(table)


@exchanges_app.command("show")
def show(
    name: str = typer.Argument(..., help="Exchange name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """An exchange's settings (secrets masked), checkpoint and last run."""
    with default_sessionmaker()() as session:
        try:
            s = service.status(service.get_exchange(session, name))
        except service.ExchangeNotFound as exc:
            raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(s, indent=2, default=str))
        return
    out.print(f"[bold]{s['name']}[/bold]  {s['type']} exchange feeding list {s['list']}")
    out.print(f"  enabled: {'yes' if s['enabled'] else 'no'}   every {s['interval_minutes']} min   due: {s['due']}")
    out.print(f"  config: {json.dumps(s['config'])}")
    out.print(f"  checkpoint: {json.dumps(s['checkpoint'])}")
    out.print(f"  last run: {_when(s['last_run_at'])}   success: {_when(s['last_success_at'])}", highlight=False)
    out.print(f"  last failure: {_when(s['last_failure_at'])}   running: {s['running']}", highlight=False)
    out.print(f"  last counts: {s['last_added']} added, {s['last_updated']} updated, {s['last_retired']} retired")
    if s["last_error"]:
        out.print(f"  last error: {s['last_error']}", markup=False)


@exchanges_app.command("sync")
def sync(name: str = typer.Argument(..., help="Exchange name.")) -> None:
    """Sync now, in this process (resumes from the checkpoint)."""
    try:
        report = service.run_sync(default_sessionmaker(), get_settings(), name, actor=cli_principal())
    except (service.ExchangeNotFound, service.ExchangeBusy) as exc:
        raise _fail(str(exc)) from None
    summary = (
        f"{name}: {report.added} added, {report.updated} updated, {report.retired} retired, "
        f"{report.invalid} invalid, {report.feedback_sent} opinion(s) sent"
    )
    if not report.ok:
        err.print(summary)
        raise _fail(report.error or "failed")
    err.print(summary)


def register(app: typer.Typer) -> None:
    app.add_typer(exchanges_app, name="exchanges")


if __name__ == "__main__":  # `python -m seawall.lists.exchanges.cli …` before it is wired into `seawall`
    exchanges_app()
