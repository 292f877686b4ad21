"""The task queue: a real `seawall worker` process runs queued and scheduled tasks, on SQLite or Redis."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.auth import audit
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_engine, make_sessionmaker
from seawall.tasks import build_huey, cron
from servers import child_environment

REDIS_URL = "redis://127.0.0.1:6379/13"


def _env(home: Path, database_url: str, queue_url: str | None) -> dict[str, str]:
    env = child_environment(SEAWALL_HOME=str(home), SEAWALL_DATABASE_URL=database_url, SEAWALL_LOG_JSON="true")
    env["SEAWALL_AUDIT_CHECKPOINT_CRON"] = "0 0 31 2 *"  # never: the test asks for its checkpoint itself
    if queue_url:
        env["SEAWALL_QUEUE_URL"] = queue_url
    return env


@pytest.fixture
def worker(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, str], Path]]:
    queue_url: str | None = getattr(request, "param", None)
    env = _env(tmp_path / "home", database_url, queue_url)
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "seawall", "worker", "--workers", "1"], env=env, stdout=log, stderr=log
        )
    try:
        yield env, log_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _seed_events(database_url: str) -> None:
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        for i in range(3):
            audit.record(session, SYSTEM, "test.event", "thing", i)
        session.commit()
    engine.dispose()


def _enqueue_and_wait(env: dict[str, str], task: str = "verify_audit_chain_once") -> dict[str, object]:
    code = f"import json; from seawall.auth.tasks import {task} as t; print(json.dumps(t()(blocking=True, timeout=60)))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _check_round_trip(env: dict[str, str], log_path: Path, database_url: str) -> None:
    _seed_events(database_url)
    assert _enqueue_and_wait(env) == {"ok": True, "checked": 3, "seq": None, "problem": None}
    logged = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert any(
        e["message"] == "audit chain intact: 3 events verified with the audit key; no signed checkpoint yet"
        for e in logged
    ), logged
    # The worker signs the head into the checkpoint file in its SEAWALL_HOME and into its log.
    path = Path(env["SEAWALL_HOME"]) / "audit-checkpoints.jsonl"
    assert _enqueue_and_wait(env, "write_checkpoint_once") == {
        "written": True,
        "ok": True,
        "message": f"checkpoint written at event 3 to {path}",
    }
    [line] = path.read_text().splitlines()
    checkpoint = json.loads(line)
    assert checkpoint["seq"] == 3
    logged = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    [entry] = [e for e in logged if "audit_checkpoint" in e]
    assert entry["audit_checkpoint"] == checkpoint and entry["message"] == f"audit checkpoint {line}"
    assert _enqueue_and_wait(env)["checked"] == 3


def test_worker_runs_a_queued_task_on_the_sqlite_store(worker, database_url: str) -> None:  # type: ignore[no-untyped-def]
    env, log_path = worker
    _check_round_trip(env, log_path, database_url)
    assert (Path(env["SEAWALL_HOME"]) / "queue.db").exists()


@pytest.mark.redis
@pytest.mark.parametrize("worker", [REDIS_URL], indirect=True)
def test_worker_runs_a_queued_task_on_redis(redis_available: None, worker, database_url: str) -> None:  # type: ignore[no-untyped-def]
    env, log_path = worker
    _check_round_trip(env, log_path, database_url)
    assert not (Path(env["SEAWALL_HOME"]) / "queue.db").exists()


@pytest.fixture
def redis_available() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis unreachable in CI at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis reachable at {REDIS_URL}: {exc}")


def test_nightly_audit_verification_is_scheduled(tmp_path: Path) -> None:
    import seawall.auth.tasks  # noqa: F401  (registers the periodic task on the shared instance)
    from seawall.tasks import huey

    at_three = huey.read_periodic(dt.datetime(2026, 11, 26, 3, 0))
    at_noon = huey.read_periodic(dt.datetime(2026, 11, 26, 12, 0))
    assert "audit.verify_chain" in [t.name for t in at_three]
    assert "audit.verify_chain" not in [t.name for t in at_noon]
    # Checkpoints every quarter of an hour by default.
    assert "audit.checkpoint" in [t.name for t in huey.read_periodic(dt.datetime(2026, 11, 26, 12, 45))]
    assert "audit.checkpoint" not in [t.name for t in huey.read_periodic(dt.datetime(2026, 11, 26, 12, 46))]


def test_queue_store_selection_and_cron_parsing(tmp_path: Path) -> None:
    assert type(build_huey(Settings(home=tmp_path)).storage).__name__ == "SqliteStorage"
    assert type(build_huey(Settings(home=tmp_path, queue_url=REDIS_URL)).storage).__name__ == "RedisStorage"
    with pytest.raises(ValueError, match="unsupported SEAWALL_QUEUE_URL 'amqp://x'"):
        build_huey(Settings(home=tmp_path, queue_url="amqp://x"))
    with pytest.raises(ValueError, match="a cron expression has 5 fields"):
        cron("0 3 * *")
    assert cron("30 2 * * 1")(dt.datetime(2026, 11, 30, 2, 30)) is True  # a Monday
    assert cron("30 2 * * 1")(dt.datetime(2026, 11, 26, 2, 30)) is False  # a Thursday
