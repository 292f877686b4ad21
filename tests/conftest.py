"""Shared fixtures: reference data, databases (SQLite and PostgreSQL), a live server."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Command output is checked by its text: a wide terminal, so rich never wraps a message because the
# temporary path in it is long (as it is under pytest-xdist's per-worker folders).
os.environ["COLUMNS"] = "200"

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from seawall import migrate
from seawall.config import Settings
from seawall.db import make_engine, make_sessionmaker
from servers import free_port, serve

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def reference_data_dir() -> Path | None:
    """Meta's PDQ/vPDQ reference data, read in place: $SEAWALL_REFERENCE_DATA or ../shared/data."""
    configured = os.environ.get("SEAWALL_REFERENCE_DATA")
    path = Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "data"
    return path if (path / "pdq").is_dir() else None


@pytest.fixture(scope="session")
def reference_data() -> Path:
    path = reference_data_dir()
    if path is None:
        pytest.skip(
            "reference data absent: set SEAWALL_REFERENCE_DATA or place Meta's PDQ/vPDQ data "
            "in ../shared/data (CI always has it)"
        )
    return path


@pytest.fixture(scope="session", autouse=True)
def audit_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One audit key for the run, outside every database: every process a test starts (it inherits the
    environment) writes and checks the audit chain with it, whatever its SEAWALL_HOME."""
    from seawall.config import reset_settings

    path = tmp_path_factory.mktemp("audit-key") / "audit.key"
    os.environ["SEAWALL_AUDIT_KEY_FILE"] = str(path)
    reset_settings()
    yield path
    os.environ.pop("SEAWALL_AUDIT_KEY_FILE", None)
    reset_settings()


# ---- databases -------------------------------------------------------------------------------
# Every database test runs on SQLite and on PostgreSQL. PostgreSQL comes from
# SEAWALL_TEST_DATABASE_URL (CI), or a throwaway cluster started from initdb/pg_ctl.


class _ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder, run as an unprivileged user when we are root."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="seawall-pg-")
        self.port = free_port()
        self.data = os.path.join(self.dir, "data")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
            os.chmod(self.dir, 0o755)
            self.as_user = ["runuser", "-u", "nobody", "--"]

    @staticmethod
    def binary(name: str) -> str | None:
        found = shutil.which(name)
        if found:
            return found
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        return candidates[-1] if candidates else None

    def start(self) -> str:
        initdb, pg_ctl = self.binary("initdb"), self.binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("no initdb/pg_ctl binaries found")
        subprocess.run(
            [*self.as_user, initdb, "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [*self.as_user, pg_ctl, "-D", self.data, "-o", options, "-l", os.path.join(self.dir, "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        pg_ctl = self.binary("pg_ctl")
        if pg_ctl:
            subprocess.run([*self.as_user, pg_ctl, "-D", self.data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A URL to a PostgreSQL database whose user may create databases."""
    configured = os.environ.get("SEAWALL_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    cluster = _ThrowawayCluster()
    try:
        url = cluster.start()
    except Exception as exc:  # no binaries, no permission: skip, saying why (never in CI)
        cluster.stop()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unavailable in CI: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: SEAWALL_TEST_DATABASE_URL unset and no throwaway cluster ({exc})")
    yield url
    cluster.stop()


def _admin_engine(admin_url: str) -> Engine:
    return make_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    name = f"seawall_tmpl_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine(postgres_admin_url)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, poolclass=NullPool)
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "seawall.db"
    engine = make_engine(f"sqlite+pysqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _sqlite_database(template: Path, folder: Path) -> str:
    target = folder / "seawall.db"
    shutil.copyfile(template, target)
    return f"sqlite+pysqlite:///{target}"


@contextlib.contextmanager
def _postgres_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a clone of ``template``, or empty), dropped afterwards."""
    name = f"seawall_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(admin_url)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test, on each backend in turn."""
    if request.param == "sqlite":
        yield _sqlite_database(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    template = request.getfixturevalue("postgres_template")
    with _postgres_database(request.getfixturevalue("postgres_admin_url"), template) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no schema at all, on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite+pysqlite:///{tmp_path / 'empty.db'}"
        return
    with _postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine, writes=False)() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        login_max_failures=3,
        queue_immediate=True,
    )


@pytest.fixture
def app(settings: Settings, engine: Engine):  # type: ignore[no-untyped-def]
    from seawall.web.app import create_app

    return create_app(settings, engine)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


class LiveServer:
    def __init__(self, url: str, app) -> None:  # type: ignore[no-untyped-def]
        self.url = url
        self.app = app


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The app served by a real uvicorn on 127.0.0.1, in a thread."""
    with serve(app) as url:
        yield LiveServer(url, app)


# ---- browser ---------------------------------------------------------------------------------

CHROMIUM = os.environ.get("SEAWALL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium missing at {CHROMIUM} in CI (.ci/run installs the chromium package)")
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def save_screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
