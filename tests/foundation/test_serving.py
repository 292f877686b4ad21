"""How `seawall serve` runs the app: its factory, and what a served process does at start-up."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from seawall.cli import app as cli_app
from seawall.config import Settings
from seawall.web.app import create_app


def test_serve_runs_the_serving_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    result = CliRunner().invoke(cli_app, ["serve", "--port", "8123", "--workers", "2"])
    assert result.exit_code == 0, result.output
    [(target, options)] = calls
    assert target == "seawall.web.app:serve_app" and options["factory"] is True
    assert options["workers"] == 2 and options["port"] == 8123 and options["access_log"] is False


def test_a_served_app_sets_what_it_loaded_aside_from_garbage_collection(settings: Settings, engine: Engine) -> None:
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(settings, engine, serving=True)) as client:
            assert gc.get_freeze_count() > 0
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        gc.unfreeze()


def test_an_app_built_for_tests_leaves_garbage_collection_alone(settings: Settings, engine: Engine) -> None:
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0
