"""Webhooks (signed, retried with back-off, dead-lettered, redelivered), quarantine of hot entries, vPDQ."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from receivers import Receiver, receiver_accepts
from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_sessionmaker, utcnow
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.matching import policies, webhooks
from seawall.matching.models import WebhookDelivery


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The receivers here listen on loopback: allowed as an operator would allow an internal one."""
    settings.fetch_allow_networks = ["127.0.0.0/8"]
    return settings


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """Deliveries handed to the queue, recorded instead of run, so the test drives each attempt."""
    calls: list[tuple[int, float]] = []
    monkeypatch.setattr(webhooks, "scheduler", lambda delivery_id, delay: calls.append((delivery_id, delay)))
    return calls


def _setup(db: Session, settings: Settings, url: str, max_attempts: int) -> tuple[str, str, dict[str, str]]:
    value = hashlib.md5(b"benign webhook").hexdigest()
    hl = lists_service.create_list(db, SYSTEM, name="known", kind="hash")
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("md5", value, category="A")])
    _, secret = webhooks.create_webhook(
        db, settings, SYSTEM, name="trust-and-safety", url=url, max_attempts=max_attempts
    )
    policies.upsert_policy(
        db, SYSTEM, name="notify", conditions={}, actions=[{"type": "webhook", "target": "trust-and-safety"}]
    )
    key = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["match", "admin"])
    db.commit()
    return value, secret, {"authorization": f"Bearer {key.secret}"}


def test_webhook_retries_with_backoff_then_delivers_signed(
    client: TestClient, db: Session, engine: Engine, settings: Settings, scheduled: list[tuple[int, float]]
) -> None:
    receiver = Receiver(failures=2)
    try:
        value, secret, headers = _setup(db, settings, receiver.url, max_attempts=5)
        client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
        body = client.get("/v1/match", params={"signal_type": "md5", "value": value}, headers=headers).json()
        assert body["actions"] == [{"type": "webhook", "target": "trust-and-safety", "rule": "notify"}]
        [(delivery_id, delay)] = scheduled
        assert delay == 0.0
        states = []
        factory, clock = make_sessionmaker(engine), utcnow()
        for wait in (0, 10, 20):  # the test's clock moves on by each back-off
            clock += timedelta(seconds=wait)
            delivery = webhooks.attempt(factory, settings, delivery_id, now=clock)
            states.append((delivery.state, delivery.attempts, delivery.last_error))
            if wait == 0:  # before its back-off has passed, a retry does nothing
                early = webhooks.attempt(factory, settings, delivery_id, now=clock + timedelta(seconds=4))
                assert (early.attempts, len(receiver.received)) == (1, 1)
        assert states == [("pending", 1, "HTTP 503"), ("pending", 2, "HTTP 503"), ("delivered", 3, "")]
        assert [d for _, d in scheduled[1:]] == [10.0, 20.0]  # exponential back-off from the 10 s base
        headers_seen, raw = receiver.received[-1]
        # Checked as a receiver writes it from the documented format, not with Seawall's own helper.
        assert receiver_accepts(secret, headers_seen, raw)
        assert not receiver_accepts("wrong", headers_seen, raw)
        assert not receiver_accepts(secret, headers_seen, raw.replace(b"trust", b"TRUST"))
        assert not receiver_accepts(secret, {**headers_seen, "x-seawall-timestamp": "1700000000"}, raw)
        # The helper the module offers receivers agrees.
        assert webhooks.verify_signature(
            secret, headers_seen["x-seawall-timestamp"], raw, headers_seen["x-seawall-signature"]
        )
        payload = json.loads(raw)
        assert payload["match_id"] == body["match_id"] and payload["matches"][0]["value"] == value
        assert headers_seen["x-seawall-delivery"] == str(delivery_id)
    finally:
        receiver.close()


def test_webhook_dead_letter_and_manual_redelivery(
    client: TestClient, db: Session, engine: Engine, settings: Settings, scheduled: list[tuple[int, float]]
) -> None:
    receiver = Receiver(failures=3)
    try:
        value, _, headers = _setup(db, settings, receiver.url, max_attempts=3)
        client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
        client.get("/v1/match", params={"signal_type": "md5", "value": value}, headers=headers)
        [(delivery_id, _)] = scheduled
        factory, clock = make_sessionmaker(engine), utcnow()
        for wait in (0, 10, 20):
            clock += timedelta(seconds=wait)
            webhooks.attempt(factory, settings, delivery_id, now=clock)
        dead = client.get("/v1/webhooks/deliveries", params={"state": "dead"}, headers=headers).json()
        assert [(d["id"], d["attempts"], d["last_status"]) for d in dead] == [(delivery_id, 3, 503)]
        again = client.post(f"/v1/webhooks/deliveries/{delivery_id}/redeliver", headers=headers)
        assert again.json()["state"] == "pending" and again.json()["attempts"] == 0
        assert scheduled[-1] == (delivery_id, 0.0)
        assert webhooks.attempt(make_sessionmaker(engine), settings, delivery_id).state == "delivered"
        assert len(receiver.received) == 4
    finally:
        receiver.close()


def test_a_delivery_lost_with_its_worker_is_queued_again(
    client: TestClient, db: Session, engine: Engine, settings: Settings, scheduled: list[tuple[int, float]]
) -> None:
    receiver = Receiver(failures=0)
    try:
        value, _, headers = _setup(db, settings, receiver.url, max_attempts=3)
        client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
        client.get("/v1/match", params={"signal_type": "md5", "value": value}, headers=headers)
        [(delivery_id, _)] = scheduled
        factory = make_sessionmaker(engine)
        with factory() as session:  # nothing is overdue yet: the queued attempt will run
            assert webhooks.requeue_overdue(session) == []
        # Its worker died: the attempt it had queued never ran.
        with factory() as session:
            assert webhooks.requeue_overdue(session, now=utcnow() + timedelta(minutes=5)) == [delivery_id]
        assert scheduled[-1] == (delivery_id, 0.0)
        assert webhooks.attempt(factory, settings, delivery_id).state == "delivered"
        with factory() as session:  # delivered: never queued again
            assert webhooks.requeue_overdue(session, now=utcnow() + timedelta(hours=1)) == []
        assert len(receiver.received) == 1
    finally:
        receiver.close()


def test_video_matches_by_vpdq_percentages(client: TestClient, db: Session, reference_data: Path) -> None:
    listed = reference_data / "vpdq" / "vpdq" / "sample-hashes" / "chair-orig-22-sd-bar.txt"
    upload = reference_data / "vpdq" / "tmk" / "sample-videos" / "chair-22-sd-grey-bar.mp4"
    from seawall.signals.vpdq import loads

    frames = loads(listed.read_text())
    hl = lists_service.create_list(db, SYSTEM, name="videos", kind="hash")
    records = [EntryRecord("vpdq", f.hex, external_id="chair-video") for f in frames if f.quality >= 50]
    lists_service.add_entries(db, SYSTEM, hl, records)
    key = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["match"])
    db.commit()
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
    result = client.post(
        "/v1/match",
        files={"file": ("clip.mp4", upload.read_bytes(), "video/mp4")},
        headers={"authorization": f"Bearer {key.secret}"},
    ).json()
    [found] = result["matches"]
    assert (found["list"], found["signal_type"], found["external_id"]) == ("videos", "vpdq", "chair-video")
    assert found["candidate_match_percent"] >= 80.0 and found["query_match_percent"] >= 80.0
    assert db.scalar(select(WebhookDelivery.id)) is None
