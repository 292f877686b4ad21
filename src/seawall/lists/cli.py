"""`seawall lists …`: the same service as the API, from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker, transaction
from seawall.lists import service
from seawall.lists.records import EntryRecord
from seawall.media.errors import MediaError

lists_app = typer.Typer(help="Hash, URL and keyword lists: create, add, retire, import, export.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


@lists_app.command("create")
def create(
    name: str = typer.Argument(..., help="List name."),
    kind: str = typer.Option(..., "--kind", help="hash, url or keyword."),
    allowlist: bool = typer.Option(False, "--allowlist", help="Entries that must never trigger action."),
    allowlist_for: list[str] = typer.Option(
        [], "--for", help="With --allowlist: a list whose matches it suppresses (repeatable; default every list)."
    ),
    description: str = typer.Option("", "--description", help="What the list holds."),
    source: str = typer.Option("", "--source", help="Who provides it."),
    threshold: list[str] = typer.Option([], "--threshold", help="Repeatable SIGNAL=N, e.g. pdq=31."),
) -> None:
    """Create a list."""
    thresholds: dict[str, int] = {}
    for item in threshold:
        signal, _, number = item.partition("=")
        if not number.isdigit():
            raise _fail(f"--threshold takes SIGNAL=N, got {item!r}")
        thresholds[signal] = int(number)
    try:
        with transaction(default_sessionmaker()) as session:
            service.create_list(
                session,
                cli_principal(),
                name=name,
                kind=kind,
                allowlist=allowlist,
                description=description,
                source=source,
                thresholds=thresholds,
                allowlist_scope=allowlist_for or None,
            )
    except service.ListError as exc:
        raise _fail(str(exc)) from None
    scope = f" (allowlist for {', '.join(allowlist_for) or 'every list'})" if allowlist else ""
    err.print(f"created {kind} list [bold]{name}[/bold]{scope}")


@lists_app.command("ls")
def ls() -> None:
    """All lists with their entry counts."""
    with default_sessionmaker()() as session:
        table = Table("name", "kind", "enabled", "allowlist", "active", "disabled", "retracted", "revision")
        for hl in service.list_lists(session):
            counts = service.count_entries(session, hl)
            table.add_row(
                hl.name,
                hl.kind,
                "yes" if hl.enabled else "no",
                "yes" if hl.allowlist else "",
                str(counts["active"]),
                str(counts["disabled"]),
                str(counts["retracted"]),
                str(hl.revision),
            )
    out.print(table)


@lists_app.command("show")
def show(
    name: str = typer.Argument(..., help="List name."),
    entries: int = typer.Option(10, "--entries", help="How many of its newest-first entries to show."),
) -> None:
    """A list's settings, counts and first entries."""
    with default_sessionmaker()() as session:
        try:
            hl = service.get_list(session, name)
        except service.ListNotFound as exc:
            raise _fail(str(exc)) from None
        counts = service.count_entries(session, hl)
        scope = ", ".join(hl.allowlist_scope) if hl.allowlist_scope else "every list"
        out.print(f"[bold]{hl.name}[/bold]  {hl.kind} list{f', allowlist for {scope}' if hl.allowlist else ''}")
        out.print(f"  {hl.description or '(no description)'}")
        out.print(f"  enabled: {'yes' if hl.enabled else 'no'}   revision: {hl.revision}   source: {hl.source or '-'}")
        out.print(
            f"  thresholds: {hl.thresholds or 'defaults'}   dihedral PDQ lookups: {'on' if hl.dihedral else 'off'}"
            f"   region matching: {'on' if hl.regions else 'off'}"
        )
        out.print("  entries: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
        if entries:
            table = Table("id", "signal type", "value", "category", "labels", "status")
            for e in service.iter_entries(session, hl, limit=entries):
                table.add_row(str(e.id), e.signal_type, e.value, e.category or "", " ".join(e.labels), e.status)
            out.print(table)


def _set_enabled(name: str, enabled: bool) -> None:
    try:
        with transaction(default_sessionmaker()) as session:
            service.update_list(session, cli_principal(), service.get_list(session, name), enabled=enabled)
    except service.ListNotFound as exc:
        raise _fail(str(exc)) from None
    err.print(f"{'enabled' if enabled else 'disabled'} {name}")


@lists_app.command("delete")
def delete(
    name: str = typer.Argument(..., help="List name."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Delete a list: it stops matching at once and every entry is retracted (feed followers see it)."""
    if not yes and not typer.confirm(f"Delete list {name!r} and retract all its entries?"):
        raise typer.Exit(1)
    factory = default_sessionmaker()
    try:
        with transaction(factory) as session:
            service.delete_list(session, cli_principal(), service.get_list(session, name))
    except service.ListNotFound as exc:
        raise _fail(str(exc)) from None
    retracted = service.retract_deleted(factory, cli_principal())
    err.print(f"deleted {name}: {retracted} entries retracted")


@lists_app.command("enable")
def enable(name: str = typer.Argument(..., help="List name.")) -> None:
    """Match against this list."""
    _set_enabled(name, True)


@lists_app.command("disable")
def disable(name: str = typer.Argument(..., help="List name.")) -> None:
    """Stop matching against this list (its entries are kept)."""
    _set_enabled(name, False)


@lists_app.command("regions")
def regions(
    name: str = typer.Argument(..., help="List name."),
    state: str = typer.Argument(..., help="on or off."),
) -> None:
    """Switch region matching for a list: the regions of uploaded and scanned pictures (borders
    trimmed, embedded, rotation undone) and its entries' trimmed-picture hashes (docs/regions.md)."""
    if state not in ("on", "off"):
        raise _fail("say on or off")
    try:
        with transaction(default_sessionmaker()) as session:
            service.update_list(session, cli_principal(), service.get_list(session, name), regions=state == "on")
    except (service.ListNotFound, service.ListError) as exc:
        raise _fail(str(exc)) from None
    err.print(f"region matching {state} for {name}")


@lists_app.command("add")
def add(
    name: str = typer.Argument(..., help="List name."),
    value: str | None = typer.Argument(None, help="Hash, URL or term (or --file)."),
    file: Path | None = typer.Option(
        None,
        "--file",
        exists=True,
        dir_okay=False,
        help="Hash lists: add a picture's md5 and PDQ (with its trimmed picture's PDQ when it has borders).",
    ),
    signal_type: str | None = typer.Option(None, "--signal-type", help="md5, sha1, sha256, pdq, … (hash lists)."),
    category: str | None = typer.Option(None, "--category", help="UK A/B/C or the list's own scheme."),
    label: list[str] = typer.Option([], "--label", help="Repeatable."),
    level: str | None = typer.Option(None, "--level", help="URL lists: exact, prefix or domain."),
    source: str | None = typer.Option(None, "--source"),
    external_id: str | None = typer.Option(None, "--external-id"),
    note: str | None = typer.Option(None, "--note"),
) -> None:
    """Add one entry, or a picture's entries with --file (adding again changes nothing)."""
    if (value is None) == (file is None):
        raise _fail("give either a value or --file")
    record = EntryRecord(
        signal_type=signal_type or "",
        value=value or "",
        category=category,
        labels=tuple(label),
        level=level,
        source=source,
        external_id=external_id,
        note=note,
    )
    try:
        records = [record] if file is None else service.records_from_media(file, record)
    except MediaError as exc:
        raise _fail(f"{file}: {exc.reason}") from None
    try:
        with transaction(default_sessionmaker()) as session:
            result = service.add_entries(session, cli_principal(), service.get_list(session, name), records)
    except service.InvalidEntries as exc:
        raise _fail(exc.errors[0].reason) from None
    except (service.ListNotFound, service.ListError) as exc:
        raise _fail(str(exc)) from None
    if file is None:
        state = "added" if result.added else ("updated" if result.updated else "already present, unchanged")
    else:
        trimmed = " with a trimmed-picture hash" if any(r.trimmed_value for r in records) else ""
        state = f"{result.added} added, {result.updated} updated, {result.unchanged} unchanged{trimmed}"
    err.print(f"{state} (list revision {result.revision})")


def _change_status(name: str, value: str, signal_type: str | None, status: str, reason: str) -> int:
    try:
        with transaction(default_sessionmaker()) as session:
            hl = service.get_list(session, name)
            entries = service.find_entries(session, hl, value, signal_type)
            if not entries:
                raise _fail(f"no entry {value!r} in list {name!r}")
            return service.set_status(session, cli_principal(), entries, status, reason=reason)
    except (service.ListNotFound, service.ListError) as exc:
        raise _fail(str(exc)) from None


@lists_app.command("retire")
def retire(
    name: str = typer.Argument(..., help="List name."),
    value: str = typer.Argument(..., help="The entry's value."),
    signal_type: str | None = typer.Option(None, "--signal-type"),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Retract an entry: it stops matching, consumers of the feed see the retraction."""
    changed = _change_status(name, value, signal_type, "retracted", reason)
    err.print(f"retired {changed} entr{'y' if changed == 1 else 'ies'}")


@lists_app.command("opinion")
def opinion(
    name: str = typer.Argument(..., help="List name."),
    value: str = typer.Argument(..., help="The entry's value."),
    verdict: str = typer.Option(..., "--verdict", help="true_positive, false_positive or disputed."),
    comment: str = typer.Option("", "--comment"),
    signal_type: str | None = typer.Option(None, "--signal-type"),
) -> None:
    """Record a verdict on an entry; enough false positives disable it pending review."""
    try:
        with transaction(default_sessionmaker()) as session:
            hl = service.get_list(session, name)
            entries = service.find_entries(session, hl, value, signal_type)
            if not entries:
                raise _fail(f"no entry {value!r} in list {name!r}")
            for entry in entries:
                service.add_opinion(
                    session,
                    cli_principal(),
                    entry,
                    verdict,
                    comment,
                    false_positive_threshold=get_settings().false_positive_disable_threshold,
                )
            statuses = sorted({e.status for e in entries})
    except (service.ListNotFound, service.ListError) as exc:
        raise _fail(str(exc)) from None
    err.print(f"recorded {verdict}; entry status: {', '.join(statuses)}")


class _CountingReader:
    """Counts bytes read so the progress bar can follow a file of any size."""

    def __init__(self, raw: BinaryIO, progress: Progress, task: int) -> None:
        self.raw, self.progress, self.task = raw, progress, task

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.progress.advance(self.task, len(data))  # type: ignore[arg-type]
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.progress.advance(self.task, len(data))  # type: ignore[arg-type]
        return data

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.readline, b"")

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.raw, name)


@lists_app.command("import")
def import_(
    name: str = typer.Argument(..., help="List name."),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The file to import."),
    format: str | None = typer.Option(None, "--format", help="csv, jsonl, vics, … (inferred when unambiguous)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Import the good lines, report the bad ones."),
) -> None:
    """Import a file; a bad line stops the import and nothing is kept, unless --skip-invalid."""
    from seawall.lists.formats import get_format, infer_format

    try:
        with file.open("rb") as raw:
            list_format = get_format(format) if format else infer_format(raw.read(8192), file.name)
            raw.seek(0)
            with (
                Progress(
                    TextColumn("importing"),
                    BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(),
                    console=err,
                    disable=not err.is_terminal,
                    transient=True,
                ) as progress,
                transaction(default_sessionmaker()) as session,
            ):
                task = progress.add_task("import", total=file.stat().st_size)
                stream = cast(BinaryIO, _CountingReader(raw, progress, task))
                result = service.add_entries(
                    session,
                    cli_principal(),
                    service.get_list(session, name),
                    list_format.read(stream),
                    skip_invalid=skip_invalid,
                    description=f"import of {file.name} ({list_format.name})",
                )
    except service.InvalidEntries as exc:
        raise _fail(f"{file}: {exc.errors[0]}; nothing was imported (use --skip-invalid to import the rest)") from None
    except (service.ListNotFound, ValueError) as exc:
        raise _fail(str(exc)) from None
    err.print(
        f"{file.name} ({list_format.name}): {result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.invalid} invalid; list revision {result.revision}"
    )
    for error in result.errors:
        err.print(f"  skipped {error}")


@lists_app.command("export")
def export(
    name: str = typer.Argument(..., help="List name."),
    format: str = typer.Option("csv", "--format", help="csv, jsonl, vics, …"),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: standard output)."),
    status: str | None = typer.Option(None, "--status", help="Only entries with this status."),
) -> None:
    """Export a list's entries."""
    from seawall.lists.formats import get_format

    try:
        list_format = get_format(format)
        with default_sessionmaker()() as session:
            hl = service.get_list(session, name)
            records = (
                service.entry_record(e) for e in service.iter_entries(session, hl, service.EntryFilter(status=status))
            )
            if output is None:
                count = list_format.write(records, sys.stdout.buffer)
                sys.stdout.flush()
            else:
                with output.open("wb") as fh:
                    count = list_format.write(records, fh)
    except (service.ListNotFound, ValueError) as exc:
        raise _fail(str(exc)) from None
    err.print(f"exported {count} entries ({list_format.name})")


def register(app: typer.Typer) -> None:
    app.add_typer(lists_app, name="lists")
