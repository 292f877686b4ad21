"""Migrations on both backends, readiness, the CLI's contracts, configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect
from typer.testing import CliRunner

from seawall import migrate
from seawall.cli import app as cli_app
from seawall.config import Settings, reset_settings
from seawall.db import make_engine
from seawall.models import Base
from seawall.web.app import create_app


def test_migrations_upgrade_from_empty_and_downgrade_to_base(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as c:
            assert migrate.current_revision(c) is None and not migrate.is_current(c)
        migrate.upgrade(engine)
        with engine.connect() as c:
            assert migrate.is_current(c)
            tables = set(inspect(c).get_table_names())
        assert set(Base.metadata.tables) <= tables
        migrate.downgrade(engine, "base")
        with engine.connect() as c:
            assert migrate.current_revision(c) is None
            assert set(inspect(c).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)  # and back up again, cleanly
        with engine.connect() as c:
            assert migrate.is_current(c)
    finally:
        engine.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    """Autogenerate finds nothing to do: every model change has its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_readyz_is_not_ready_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", secret_key="k", metrics_token="m"
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json() == {"ready": False}  # anyone: ready or not, no more
        response = client.get("/readyz", headers={"authorization": "Bearer m"})  # no database needed
        assert response.status_code == 503
        body = response.json()
        assert body["ready"] is False and body["checks"]["database"]["ready"] is False
        assert "OperationalError" in body["checks"]["database"]["error"]
        assert client.get("/healthz").status_code == 200


def test_readyz_is_not_ready_before_migrations(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, secret_key="k", metrics_token="m")
    with TestClient(create_app(settings)) as client:
        body = client.get("/readyz", headers={"authorization": "Bearer m"}).json()
    assert body["ready"] is False
    assert body["checks"]["database"] == {"ready": False, "revision": None, "head": migrate.head_revision()}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SEAWALL_DATABASE_URL", raising=False)
    reset_settings()
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli_app, list(args))
    reset_settings()


def test_cli_help_lists_every_command(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("serve", "worker", "config", "db", "users", "keys", "audit", "demo"):
        assert f" {command} " in result.output


def test_cli_db_users_keys_round_trip(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("db", "current").stdout.strip() == f"(empty) (head is {migrate.head_revision()})"
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "current").stdout.strip() == f"{migrate.head_revision()} (head)"
    created = cli("users", "create", "erin", "--role", "senior_analyst")
    assert created.exit_code == 0, created.output
    password = created.stdout.strip().splitlines()[-1]
    assert len(password) >= 15 and " " not in password
    assert cli("users", "create", "erin", "--role", "analyst").exit_code == 2
    bad_role = cli("users", "create", "fay", "--role", "superuser")
    assert bad_role.exit_code == 2 and "unknown role 'superuser'" in bad_role.output
    listed = cli("users", "list")
    assert "erin" in listed.output and "senior_analyst" in listed.output and "active" in listed.output
    assert cli("users", "disable", "erin").exit_code == 0
    assert "disabled" in cli("users", "list").output
    key = cli("keys", "create", "platform-a", "--scope", "match", "--scope", "lists:read", "--list", "demo")
    assert key.exit_code == 0, key.output
    secret = key.stdout.strip().splitlines()[-1]
    assert secret.startswith("swk_") and len(secret) > 40
    keys = cli("keys", "list").output
    assert "platform-a" in keys and secret not in keys and "active" in keys
    assert cli("keys", "revoke", "platform-a").exit_code == 0
    assert "revoked" in cli("keys", "list").output
    assert cli("keys", "revoke", "nope").exit_code == 2
    assert cli("audit", "verify").exit_code == 0
    exported = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--output", str(exported)).exit_code == 0
    actions = [json.loads(line)["action"] for line in exported.read_text().splitlines()]
    assert actions == ["user.create", "user.disable", "key.create", "key.revoke"]


def test_cli_demo_seeds_an_admin_once(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    first = cli("demo", "--if-empty")
    assert first.exit_code == 0 and "console login  admin /" in first.output
    second = cli("demo", "--if-empty")
    assert second.exit_code == 0 and "nothing seeded" in second.output


def test_config_masks_secrets(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SEAWALL_DATABASE_URL", "postgresql+psycopg://seawall:hunter2-secret@db.test:5432/seawall")
    monkeypatch.setenv("SEAWALL_SECRET_KEY", "very-secret-value")
    reset_settings()
    result = cli("config")
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert "hunter2-secret" not in result.stdout and "very-secret-value" not in result.stdout
    assert shown["database_url"] == "postgresql+psycopg://seawall:***@db.test:5432/seawall"
    assert shown["secret_key"] == "********"
