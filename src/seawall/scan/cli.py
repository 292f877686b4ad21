"""`seawall scan` and `seawall scans`: bulk scanning on Dask from the command line."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import default_sessionmaker

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def scan(
    sources: list[str] = typer.Argument(
        None, help="Folders, files (archives and WARC crawls included) or fsspec URLs (s3://, gs://, file://)."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="A Dask scheduler's address (tcp://host:8786); default: a local cluster."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local cluster worker processes (default: cores)."
    ),
    list_name: list[str] = typer.Option(
        [], "--lists", "-l", help="Repeatable. Only these lists (default: all enabled)."
    ),
    out_file: Path | None = typer.Option(
        None, "--out", help="Results file: JSON lines, or Parquet when it ends in .parquet (default: standard output)."
    ),
    resume: int | None = typer.Option(None, "--resume", help="Go on with this run: its unfinished partitions only."),
    fast: bool = typer.Option(False, "--fast", help="Faster, reduced-size decoding (hashes may differ slightly)."),
    report: bool = typer.Option(False, "--report", help="Open a hotline report (channel proactive) for each match."),
    rate: float | None = typer.Option(None, "--rate", min=0.001, help="At most this many files a second."),
) -> None:
    """Scan folders, archives, WARC crawls and object stores against the lists; one JSON line per item.

    The run and its checkpoints are kept in the database: after a crash, `--resume RUN` scans only
    what was not done. Exit status 1 when some items could not be scanned."""
    from seawall.scan import service
    from seawall.scan.sources import ScanError

    settings = get_settings()
    factory = default_sessionmaker()
    principal = cli_principal()
    try:
        if resume is not None:
            if sources:
                raise _fail("--resume scans the run's own sources: name none")
            with factory() as session:
                run = service.get_run(session, resume)
                if out_file is not None and str(out_file.resolve()) != (run.out or ""):
                    raise _fail(f"run {resume} writes its results to {run.out or 'standard output'}")
                if run.state == "finished":
                    err.print(f"run {resume} is finished already")
                    return
            run_id = resume
        else:
            if not sources:
                raise _fail("name a source to scan, or --resume a run")
            options = service.ScanOptions(lists=list_name or None, fast=fast, report=report)
            with factory() as session:
                run = service.create_run(session, settings, principal, list(sources), options, out_file)
                session.commit()
                run_id = run.id
        err.print(f"scan run [bold]{run_id}[/bold]: {run.partitions} partition(s); resume with --resume {run_id}")
        with Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as bar:
            task = bar.add_task("scan", total=run.partitions, completed=run.partitions_done, figures="")

            def show(progress: service.Progress) -> None:
                r = progress.run
                figures = f"{r['items']} items, {progress.rate:.1f}/s, {r['matches']} matches, {r['errors']} errors"
                bar.update(task, completed=r["partitions_done"], figures=figures)

            ended = service.execute(
                factory, settings, principal, run_id, scheduler=scheduler, workers=workers, rate=rate, on_progress=show
            )
    except ScanError as exc:
        raise _fail(str(exc)) from None
    except LookupError as exc:
        raise _fail(str(exc)) from None
    summary = service.run_dict(ended)
    err.print(
        f"run {run_id} {summary['state']}: {summary['items']} items, {summary['media']} media, "
        f"{summary['matches']} matched, {summary['skipped']} skipped, {summary['errors']} errors"
    )
    if ended.state != "finished":
        raise typer.Exit(3)
    if ended.errors:
        raise typer.Exit(1)


def scans(limit: int = typer.Option(20, "--limit")) -> None:
    """Recent scan runs, newest first."""
    from seawall.scan import service

    with default_sessionmaker()() as session:
        table = Table("id", "state", "partitions", "items", "media", "matches", "errors", "sources")
        for run in service.list_runs(session, limit):
            table.add_row(
                str(run.id),
                run.state,
                f"{run.partitions_done}/{run.partitions}",
                str(run.items),
                str(run.media),
                str(run.matches),
                str(run.errors),
                ", ".join(run.sources)[:80],
            )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
    app.command("scans")(scans)
