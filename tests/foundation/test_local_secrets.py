"""Secrets on this machine: credentials masked wherever a URL is shown or logged, and the data folder,
the secret key and the SQLite files readable by their owner only."""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from seawall.cli import app as cli_app
from seawall.config import Settings, reset_settings
from seawall.db import make_engine
from seawall.matching.service import Query
from seawall.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.org/in", "https://hooks.example.org/in"),
        ("https://someone.example:pw@hooks.example.org/in", "https://someone.example:***@hooks.example.org/in"),
        ("https://token123.example@example.org/x", "https://***@example.org/x"),  # a bare token as userinfo
        ("postgresql+psycopg://postgres@db:5432/seawall", "postgresql+psycopg://postgres@db:5432/seawall"),
        ("postgresql+psycopg://u:pa/ss@db/seawall", "postgresql+psycopg://u:***@db/seawall"),  # unencoded '/'
        (
            "postgresql+psycopg://db/seawall?sslmode=require&password=pw1&sslpassword=pw2",
            "postgresql+psycopg://db/seawall?sslmode=require&password=***&sslpassword=***",
        ),
        ("redis://:queue-pw@redis:6379/0?token=t", "redis://:***@redis:6379/0?token=***"),
        (
            "https://bucket.s3.example/x.csv?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&X-Amz-Expires=60",
            "https://bucket.s3.example/x.csv?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        (
            "https://api.example/x?key=k1&api_key=k2&sig=s&page=2#top",
            "https://api.example/x?key=***&api_key=***&sig=***&page=2#top",
        ),
        ("https://example.org/users/@me?q=a", "https://example.org/users/@me?q=a"),
        ("sqlite+pysqlite:////var/seawall/seawall.db", "sqlite+pysqlite:////var/seawall/seawall.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_every_url_in_a_message() -> None:
    message = "GET https://u.example:p@a.example/x?token=t answered 401; then http://b.example/?session=s failed"
    assert redact_text(message) == (
        "GET https://u.example:***@a.example/x?token=*** answered 401; then http://b.example/?session=*** failed"
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    for name in [k for k in os.environ if k.startswith("SEAWALL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEAWALL_SECRET_KEY", "very-secret-value")
    reset_settings()
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli_app, list(args))
    reset_settings()


def test_config_and_the_serve_banner_mask_passwords_given_as_query_parameters(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    database = "postgresql+psycopg://seawall:pw-user@db.test:5432/seawall?password=pw-query&sslpassword=pw-ssl"
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database)
    monkeypatch.setenv("SEAWALL_QUEUE_URL", "redis://:pw-queue@redis.test:6379/0?token=pw-token")
    reset_settings()
    result = cli("config")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = "postgresql+psycopg://seawall:***@db.test:5432/seawall?password=***&sslpassword=***"
    assert shown["database_url"] == shown["effective_database_url"] == expected
    assert shown["queue_url"] == "redis://:***@redis.test:6379/0?token=***"
    assert "pw-" not in result.stdout and "very-secret-value" not in result.stdout
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.update(kwargs))
    banner = cli("serve", "--port", "8999")
    assert banner.exit_code == 0, banner.output
    assert served["port"] == 8999
    assert f"(database:{expected})" in "".join(banner.output.split())  # the console wraps long lines
    assert "pw-" not in banner.output


def test_the_match_log_keeps_no_credentials_a_url_carried() -> None:
    query = Query(url="https://uploader.example:pw@files.example/a.jpg?token=t0k&size=2")
    assert query.public_signals() == {"url": "https://uploader.example:***@files.example/a.jpg?token=***&size=2"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, whatever the test runner's: new files 0644 and folders 0755 unless asked otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_the_home_folder_and_the_secret_key_are_private_from_creation(tmp_path: Path, umask_022: None) -> None:
    settings = Settings(home=tmp_path / "home")
    key = settings.effective_secret_key()
    assert len(key) >= 64
    assert _mode(tmp_path / "home") == 0o700
    assert _mode(tmp_path / "home" / "secret.key") == 0o600
    assert Settings(home=tmp_path / "home").effective_secret_key() == key  # kept, never replaced
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["secret.key"]  # no temporary file left


def test_two_processes_creating_the_secret_key_at_once_agree_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the key between this one's check and its write: this one must use the
    other's key (the file the other already uses), not replace it with its own."""
    home = tmp_path / "home"
    tokens = iter(["key-of-this-process", "key-of-the-other-process"])
    seen_by_other: list[str] = []
    real = secrets.token_urlsafe

    def token_urlsafe(nbytes: int | None = None) -> str:
        token = next(tokens)
        if token == "key-of-this-process":
            seen_by_other.append(Settings(home=home).effective_secret_key())  # the other one, meanwhile
        return token

    monkeypatch.setattr(secrets, "token_urlsafe", token_urlsafe)
    try:
        mine = Settings(home=home).effective_secret_key()
    finally:
        monkeypatch.setattr(secrets, "token_urlsafe", real)
    assert seen_by_other == ["key-of-the-other-process"]
    assert mine == "key-of-the-other-process"
    assert (home / "secret.key").read_text() == "key-of-the-other-process"


def test_the_sqlite_database_and_its_wal_and_shm_files_are_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "seawall.db"
    engine = make_engine(f"sqlite+pysqlite:///{path}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        files = {p.name: _mode(p) for p in tmp_path.iterdir()}
    finally:
        engine.dispose()
    assert files == {"seawall.db": 0o600, "seawall.db-wal": 0o600, "seawall.db-shm": 0o600}
    # A database made before (0644): the first connection of an engine makes it private too.
    path.chmod(0o644)
    engine = make_engine(f"sqlite+pysqlite:///{path}")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()
    assert _mode(path) == 0o600
