"""Webhook delivery for real: the outgoing-request rules, no transaction open during the POST, and a
real `seawall worker` delivering through the real queue with retries and dead letters.

Signatures are checked as a receiver would write it from the documented header format (hmac and
hashlib here), never with Seawall's own helper."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from receivers import Receiver, receiver_accepts
from seawall.auth import service as auth_service
from seawall.auth.audit import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_sessionmaker, transaction
from seawall.lists import service as lists_service
from seawall.matching import webhooks
from seawall.matching.models import WebhookDelivery
from servers import child_environment


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    calls: list[tuple[int, float]] = []
    monkeypatch.setattr(webhooks, "scheduler", lambda delivery_id, delay: calls.append((delivery_id, delay)))
    return calls


def _pending_delivery(factory: sessionmaker[Session], settings: Settings, url: str, **hook: Any) -> tuple[int, str]:
    """A webhook at ``url`` and one delivery queued for it: (delivery id, signing secret)."""
    with transaction(factory) as session:
        _, secret = webhooks.create_webhook(session, settings, SYSTEM, name="receiver", url=url, **hook)
    with transaction(factory) as session:
        delivery = webhooks.enqueue(session, "receiver", None, {"benign": True, "n": 1})
        assert delivery is not None
        delivery_id = delivery.id
    return delivery_id, secret


# ---- the outgoing-request rules ----------------------------------------------------------------


def test_webhook_urls_are_checked_when_created_and_again_at_each_delivery(
    client: TestClient, db: Session, engine: Engine, settings: Settings, scheduled: list[tuple[int, float]]
) -> None:
    admin = auth_service.create_api_key(db, SYSTEM, name="admin", scopes=["admin"])
    db.commit()
    headers = {"authorization": f"Bearer {admin.secret}"}
    for url, address in (
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe"),
        ("http://[64:ff9b::a00:1]/hook", "64:ff9b::a00:1"),
        ("https://10.0.0.5/hook", "10.0.0.5"),
    ):
        refused = client.post("/v1/webhooks", json={"name": "metadata", "url": url}, headers=headers)
        assert refused.status_code == 422, url
        assert refused.json() == {"detail": f"webhook URL refused: {address} is not a public address"}
    assert client.get("/v1/webhooks", headers=headers).json() == []
    # A host name is resolved at delivery, every time: "localhost" is refused then, and nothing is sent.
    receiver = Receiver()
    try:
        factory = make_sessionmaker(engine)
        delivery_id, _ = _pending_delivery(factory, settings, f"http://localhost:{receiver.port}/hook")
        delivery = webhooks.attempt(factory, settings, delivery_id)
        assert (delivery.state, delivery.attempts, delivery.last_status, delivery.last_error) == (
            "pending",
            1,
            None,
            "refused: localhost resolves to a non-public address",
        )
        assert receiver.received == []
        # Allowing the loopback network (as an operator would for an internal receiver) lets it through.
        settings.fetch_allow_networks = ["127.0.0.0/8", "::1/128"]
        with transaction(factory) as session:
            session.get_one(WebhookDelivery, delivery_id).next_attempt_at = None  # due now
        assert webhooks.attempt(factory, settings, delivery_id).state == "delivered"
        assert len(receiver.received) == 1
    finally:
        receiver.close()


def test_credentials_in_a_webhook_url_stay_out_of_the_audit_log(
    db: Session, engine: Engine, settings: Settings
) -> None:
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        webhooks.create_webhook(
            session,
            settings,
            SYSTEM,
            name="tokened",
            url="https://hooks.example:s3cret-pw@hooks.example.org/in?token=tok-123&x=1",
        )
    [event] = db.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.create")).all()
    assert event.details == {"name": "tokened", "url": "https://hooks.example:***@hooks.example.org/in?token=***&x=1"}


# ---- no transaction open during the POST --------------------------------------------------------


# The write lock is SQLite's; PostgreSQL writers to other rows never wait for each other.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unrelated_write_completes_while_the_receiver_holds_the_post(
    engine: Engine, settings: Settings, scheduled: list[tuple[int, float]]
) -> None:
    settings.fetch_allow_networks = ["127.0.0.0/8"]
    settings.webhook_timeout_seconds = 120  # the receiver holds the answer as long as the test wants
    factory = make_sessionmaker(engine)  # as the worker's: SQLite transactions take the write lock
    hold = threading.Event()
    receiver = Receiver(hold=hold)
    outcome: dict[str, str] = {}
    wrote = threading.Event()

    def deliver() -> None:
        outcome["state"] = webhooks.attempt(factory, settings, delivery_id).state

    def unrelated_write() -> None:
        with transaction(factory) as session:
            lists_service.create_list(session, SYSTEM, name="unrelated", kind="hash")
        wrote.set()

    try:
        delivery_id, secret = _pending_delivery(factory, settings, receiver.url)
        deliverer = threading.Thread(target=deliver, daemon=True)
        deliverer.start()
        assert receiver.arrived.wait(30), "the delivery never reached the receiver"
        writer = threading.Thread(target=unrelated_write, daemon=True)
        writer.start()
        # Generous bound, not a timing: with the lock held, the write would wait for the receiver.
        completed_while_held = wrote.wait(15) and not hold.is_set()
        hold.set()
        deliverer.join(30)
        writer.join(60)
    finally:
        hold.set()
        receiver.close()
    assert completed_while_held
    assert outcome == {"state": "delivered"}
    [(headers, body)] = receiver.received
    assert receiver_accepts(secret, headers, body)


def test_two_workers_racing_for_one_delivery_send_it_once(
    engine: Engine, settings: Settings, scheduled: list[tuple[int, float]]
) -> None:
    settings.fetch_allow_networks = ["127.0.0.0/8"]
    factory = make_sessionmaker(engine)
    hold = threading.Event()
    receiver = Receiver(hold=hold)
    states: list[str] = []
    try:
        delivery_id, _ = _pending_delivery(factory, settings, receiver.url)
        first = threading.Thread(target=lambda: states.append(webhooks.attempt(factory, settings, delivery_id).state))
        first.start()
        assert receiver.arrived.wait(30)
        # A second worker (a duplicate task) while the first attempt is in flight: it leaves the delivery.
        second = webhooks.attempt(factory, settings, delivery_id)
        assert (second.state, second.attempts) == ("pending", 1)
        hold.set()
        first.join(30)
        # And once delivered, another attempt sends nothing.
        assert webhooks.attempt(factory, settings, delivery_id).state == "delivered"
    finally:
        hold.set()
        receiver.close()
    assert states == ["delivered"]
    assert len(receiver.received) == 1
    assert scheduled == [(delivery_id, 0.0)]  # enqueued once; no retry was scheduled


# ---- a real worker, the real queue ---------------------------------------------------------------


@pytest.fixture
def worker_env(tmp_path: Path, database_url: str, settings: Settings) -> dict[str, str]:
    env = child_environment(
        SEAWALL_HOME=str(tmp_path / "worker-home"),
        SEAWALL_DATABASE_URL=database_url,
        SEAWALL_SECRET_KEY=settings.effective_secret_key(),
        SEAWALL_FETCH_ALLOW_NETWORKS='["127.0.0.0/8"]',
        SEAWALL_WEBHOOK_RETRY_BASE_SECONDS="0.01",
        SEAWALL_LOG_JSON="true",
    )
    return env


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "seawall", "worker", "--workers", "2", "--no-periodic"],
            env=worker_env,
            stdout=log,
            stderr=log,
        )
    try:
        yield log_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


# Run in a process of its own (the test's queue is not the worker's): the real scheduler puts each
# delivery on the queue in SEAWALL_HOME once the transaction that recorded it commits.
ENQUEUE = """
import sys
from seawall.db import default_sessionmaker, transaction
from seawall.matching import webhooks
with transaction(default_sessionmaker()) as session:
    for target in sys.argv[1:]:
        webhooks.enqueue(session, target, "m-1", {"match_id": "m-1", "benign": True})
"""


def test_a_real_worker_delivers_through_the_queue_with_retries_and_dead_letters(
    engine: Engine, settings: Settings, worker_env: dict[str, str], worker: Path
) -> None:
    settings.fetch_allow_networks = ["127.0.0.0/8"]
    flaky, down = Receiver(failures=2), Receiver(failures=100)
    factory = make_sessionmaker(engine)
    try:
        with transaction(factory) as session:
            _, flaky_secret = webhooks.create_webhook(
                session, settings, SYSTEM, name="flaky", url=flaky.url, max_attempts=5
            )
            webhooks.create_webhook(session, settings, SYSTEM, name="down", url=down.url, max_attempts=2)
        queued = subprocess.run(
            [sys.executable, "-c", ENQUEUE, "flaky", "down"], env=worker_env, capture_output=True, text=True, timeout=60
        )
        assert queued.returncode == 0, queued.stderr
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with factory() as session:
                states = [d.state for d in session.scalars(select(WebhookDelivery))]
            if len(states) == 2 and "pending" not in states:
                break
            time.sleep(0.1)
    finally:
        flaky.close()
        down.close()
    with factory() as session:
        rows = {d.state: (d.attempts, d.last_status, d.last_error) for d in session.scalars(select(WebhookDelivery))}
    assert rows == {"delivered": (3, 204, ""), "dead": (2, 503, "HTTP 503")}, worker.read_text()[-3000:]
    assert len(flaky.received) == 3 and len(down.received) == 2
    # Every attempt of one delivery carries its id and the same body, each signed afresh.
    assert len({h["x-seawall-delivery"] for h, _ in flaky.received}) == 1
    assert {b for _, b in flaky.received} == {b'{"benign":true,"match_id":"m-1"}'}
    for headers, body in flaky.received:
        assert receiver_accepts(flaky_secret, headers, body)
        assert not receiver_accepts("not-the-secret", headers, body)
        assert not receiver_accepts(flaky_secret, headers, body + b" ")
