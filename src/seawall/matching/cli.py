"""`seawall match`, `seawall policies`, `seawall webhooks`: the matching service without a server.

The matching modules are imported inside the commands: they load the index's compiled kernels,
which other commands (`seawall lists import`, say) have no use for.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction

policies_app = typer.Typer(help="Action policies: list, apply a YAML file, export.", no_args_is_help=True)
webhooks_app = typer.Typer(
    help="Webhook targets and deliveries: create, list, dead letters, redeliver.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def match(
    paths: list[Path] = typer.Argument(..., help="Files or folders to match."),
    list_name: list[str] = typer.Option(
        [], "--lists", "-l", help="Repeatable. Only these lists (default: all enabled)."
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Match every file below named folders."),
    record: bool = typer.Option(False, "--record", help="Write matches to the match log and run actions."),
) -> None:
    """Hash and match local files against the lists in SEAWALL_HOME; one JSON object per file."""
    from seawall.matching import service
    from seawall.matching.indexes import MatchIndexes
    from seawall.media.budget import keep_freed_memory
    from seawall.media.errors import MediaError
    from seawall.signals.hashing import expand_paths, hash_file

    settings = get_settings()
    keep_freed_memory()  # file after file: the next picture reuses the last one's buffers
    # Loading the indexes and matching only read: no write lock held meanwhile (on SQLite a write
    # session takes it when it begins). Only a recorded match is written, in a short write of its own.
    reads, writes = default_sessionmaker(writes=False), default_sessionmaker()
    indexes = MatchIndexes(reads, folder=settings.home / "index")
    indexes.refresh()
    files = list(expand_paths([str(p) for p in paths], recursive=recursive))
    failed = False
    principal = cli_principal()
    with Progress(
        TextColumn("matching"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("match", total=len(files))
        for path in files:
            try:
                hashed = hash_file(path, dihedral=True, regions=settings.match_regions)
            except MediaError as exc:
                print(json.dumps({"path": str(path), "error": exc.reason}), flush=True)
                failed = True
                progress.advance(task)
                continue
            except OSError as exc:
                print(json.dumps({"path": str(path), "error": f"cannot read file: {exc.strerror or exc}"}), flush=True)
                failed = True
                progress.advance(task)
                continue
            query = service.Query.from_hash(hashed)
            with reads() as session:
                outcome = service.evaluate(session, indexes, query, settings, principal, lists=list_name or None)
            if record and outcome.matches:
                service.record_matches(writes, settings, principal, [(query, outcome)])
            print(json.dumps({"path": str(path), **outcome.as_dict()}), flush=True)
            progress.advance(task)
    indexes.stop()
    if failed:
        raise typer.Exit(1)


@policies_app.command("list")
def policies_list() -> None:
    """The rules, in evaluation order."""
    from seawall.matching import policies

    with default_sessionmaker()() as session:
        table = Table("position", "name", "mode", "conditions", "actions")
        for p in policies.list_policies(session):
            mode = "disabled" if not p.enabled else ("shadow" if p.shadow else "live") + (", stop" if p.stop else "")
            actions = ", ".join(a["type"] + (f"→{a['target']}" if a.get("target") else "") for a in p.actions)
            table.add_row(str(p.position), p.name, mode, json.dumps(p.conditions), actions)
    out.print(table)


@policies_app.command("apply")
def policies_apply(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML with a top-level 'policies:' list."),
    keep_others: bool = typer.Option(False, "--keep-others", help="Keep rules that are not in the file."),
) -> None:
    """Make the rules those of a YAML file (a rule not in the file is removed unless --keep-others)."""
    from seawall.matching import policies

    try:
        with transaction(default_sessionmaker()) as session:
            saved = policies.apply_yaml(session, cli_principal(), file.read_text(), replace=not keep_others)
    except policies.PolicyError as exc:
        raise _fail(f"{file}: {exc}") from None
    err.print(f"applied {len(saved)} rule(s) from {file}")


@policies_app.command("export")
def policies_export() -> None:
    """Print the rules as YAML (the format `policies apply` reads)."""
    from seawall.matching import policies

    with default_sessionmaker()() as session:
        print(policies.dump_yaml(session), end="")


@webhooks_app.command("create")
def webhooks_create(
    name: str = typer.Argument(..., help="Name that policies use as the webhook target."),
    url: str = typer.Argument(..., help="Where deliveries are POSTed."),
    max_attempts: int = typer.Option(8, "--max-attempts", help="Attempts before a delivery is dead-lettered."),
) -> None:
    """Register a webhook; its signing secret is printed alone on the last line, once."""
    from seawall.matching import webhooks

    try:
        with transaction(default_sessionmaker()) as session:
            _, secret = webhooks.create_webhook(
                session, get_settings(), cli_principal(), name=name, url=url, max_attempts=max_attempts
            )
    except webhooks.WebhookError as exc:
        raise _fail(str(exc)) from None
    err.print(f"created webhook [bold]{name}[/bold]; the signing secret is shown once:")
    print(secret)


@webhooks_app.command("list")
def webhooks_list() -> None:
    """Webhook targets."""
    from seawall.matching import webhooks

    with default_sessionmaker()() as session:
        table = Table("name", "url", "enabled", "max attempts")
        for w in webhooks.list_webhooks(session):
            table.add_row(w.name, w.url, "yes" if w.enabled else "no", str(w.max_attempts))
    out.print(table)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    state: str | None = typer.Option(None, "--state", help="pending, delivered or dead (the dead letters)."),
    limit: int = typer.Option(50, "--limit"),
) -> None:
    """Recent deliveries, newest first."""
    from seawall.matching import webhooks

    with default_sessionmaker()() as session:
        table = Table("id", "state", "attempts", "last status", "last error", "created")
        for d in webhooks.deliveries(session, state, limit):
            table.add_row(
                str(d.id),
                d.state,
                str(d.attempts),
                str(d.last_status or ""),
                d.last_error[:60],
                d.created_at.strftime("%Y-%m-%d %H:%M"),
            )
    out.print(table)


@webhooks_app.command("redeliver")
def webhooks_redeliver(delivery_id: int = typer.Argument(..., help="The delivery's id.")) -> None:
    """Queue a delivery again (typically a dead letter) with a fresh attempt budget."""
    from seawall.matching import webhooks

    try:
        with transaction(default_sessionmaker()) as session:
            webhooks.redeliver(session, cli_principal(), delivery_id)
    except LookupError as exc:
        raise _fail(str(exc)) from None
    err.print(f"delivery {delivery_id} queued again")


def register(app: typer.Typer) -> None:
    app.command("match")(match)
    app.add_typer(policies_app, name="policies")
    app.add_typer(webhooks_app, name="webhooks")
