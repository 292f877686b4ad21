"""The `seawall` command. Thin: every command calls into a domain."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable

import typer
from rich.console import Console

from seawall import __version__
from seawall.config import get_settings

app = typer.Typer(
    name="seawall",
    help="Seawall: hash, match, review, take down and report CSAM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema: upgrade, current, downgrade.", no_args_is_help=True)
app.add_typer(db_app, name="db")
err = Console(stderr=True)

# Each domain that has commands exposes ``register(app)`` in its ``cli`` module.
DOMAIN_CLIS = [
    "seawall.auth.cli",
    "seawall.signals.cli",
    "seawall.lists.cli",
    "seawall.lists.exchanges.cli",
    "seawall.matching.cli",
    "seawall.hotline.cli",
    "seawall.stats.cli",
    "seawall.scan.cli",
    "seawall.reporting.cli",
]
# Each domain that seeds demo data exposes ``seed_demo(session, console) -> None`` in its ``demo`` module.
DEMO_SEEDERS = [
    "seawall.auth.demo",
    "seawall.matching.demo",
    "seawall.hotline.demo",
    "seawall.review.demo",
    "seawall.stats.demo",
]


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Seawall: hash, match, review, take down and report CSAM."""
    from seawall.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


@app.command()
def config() -> None:
    """Print the effective settings (secrets masked)."""
    print(json.dumps(get_settings().masked(), indent=2, default=str))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from seawall import migrate
    from seawall.db import default_engine

    migrate.upgrade(default_engine(), revision)
    db_current()


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision ('base' for empty).")) -> None:
    """Revert migrations down to REVISION."""
    from seawall import migrate
    from seawall.db import default_engine

    migrate.downgrade(default_engine(), revision)
    db_current()


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision and whether it is the newest."""
    from seawall import migrate
    from seawall.db import default_engine

    with default_engine().connect() as connection:
        current = migrate.current_revision(connection)
    head = migrate.head_revision()
    print(f"{current or '(empty)'}{' (head)' if current == head else f' (head is {head})'}")


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default SEAWALL_HOST)."),
    port: int | None = typer.Option(None, help="Port (default SEAWALL_PORT)."),
    workers: int = typer.Option(1, help="Worker processes."),
) -> None:
    """Serve the API and the console."""
    import uvicorn

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    database = settings.masked()["effective_database_url"]
    err.print(f"Seawall {__version__} serving on [bold]http://{host}:{port}[/bold]  (database: {database})")
    uvicorn.run(
        "seawall.web.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


@app.command()
def worker(
    workers: int = typer.Option(2, help="Concurrent task threads."),
    periodic: bool = typer.Option(True, help="Run scheduled tasks (audit verification, syncs…)."),
) -> None:
    """Run background tasks: scheduled checks, syncs, deliveries with retries."""
    from huey.consumer import Consumer

    from seawall.tasks import huey, load_task_modules

    load_task_modules()
    mode = "on" if periodic else "off"
    err.print(f"Seawall worker: queue {type(huey.storage).__name__}, {workers} threads, periodic tasks {mode}")
    Consumer(huey, workers=workers, worker_type="thread", periodic=periodic, check_worker_health=True).run()


@app.command()
def demo(
    if_empty: bool = typer.Option(False, "--if-empty", help="Only when the database has no users yet."),
) -> None:
    """Seed demo data: an admin account (password printed) and each domain's examples."""
    from sqlalchemy import func, select

    from seawall.auth.models import User
    from seawall.db import default_sessionmaker, transaction

    with transaction(default_sessionmaker()) as session:
        if if_empty and session.scalar(select(func.count()).select_from(User)):
            err.print("demo data: the database has users already; nothing seeded")
            return
        for name in DEMO_SEEDERS:
            seeder: Callable[..., None] = importlib.import_module(name).seed_demo
            seeder(session, err)


for _module in DOMAIN_CLIS:
    importlib.import_module(_module).register(app)


def main() -> None:
    app()
