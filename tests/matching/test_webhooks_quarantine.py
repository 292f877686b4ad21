"""Webhooks (signed, retried with back-off, dead-lettered, redelivered), quarantine of hot entries, vPDQ."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.matching import policies, webhooks
from seawall.matching.models import WebhookDelivery


class Receiver:
    """A webhook receiver on loopback that fails its first ``failures`` requests with HTTP 503."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 503 if len(receiver.received) <= receiver.failures else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


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
    client: TestClient, db: Session, settings: Settings, scheduled: list[tuple[int, float]]
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
        for _ in range(3):
            db.expire_all()
            delivery = webhooks.attempt(db, settings, delivery_id)
            db.commit()
            states.append((delivery.state, delivery.attempts, delivery.last_error))
        assert states == [("pending", 1, "HTTP 503"), ("pending", 2, "HTTP 503"), ("delivered", 3, "")]
        assert [d for _, d in scheduled[1:]] == [10.0, 20.0]  # exponential back-off from the 10 s base
        headers_seen, raw = receiver.received[-1]
        assert webhooks.verify_signature(
            secret, headers_seen["x-seawall-timestamp"], raw, headers_seen["x-seawall-signature"]
        )
        assert not webhooks.verify_signature(
            "wrong", headers_seen["x-seawall-timestamp"], raw, headers_seen["x-seawall-signature"]
        )
        payload = json.loads(raw)
        assert payload["match_id"] == body["match_id"] and payload["matches"][0]["value"] == value
        assert headers_seen["x-seawall-delivery"] == str(delivery_id)
    finally:
        receiver.close()


def test_webhook_dead_letter_and_manual_redelivery(
    client: TestClient, db: Session, settings: Settings, scheduled: list[tuple[int, float]]
) -> None:
    receiver = Receiver(failures=3)
    try:
        value, _, headers = _setup(db, settings, receiver.url, max_attempts=3)
        client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
        client.get("/v1/match", params={"signal_type": "md5", "value": value}, headers=headers)
        [(delivery_id, _)] = scheduled
        for _ in range(3):
            db.expire_all()
            webhooks.attempt(db, settings, delivery_id)
            db.commit()
        dead = client.get("/v1/webhooks/deliveries", params={"state": "dead"}, headers=headers).json()
        assert [(d["id"], d["attempts"], d["last_status"]) for d in dead] == [(delivery_id, 3, 503)]
        again = client.post(f"/v1/webhooks/deliveries/{delivery_id}/redeliver", headers=headers)
        assert again.json()["state"] == "pending" and again.json()["attempts"] == 0
        assert scheduled[-1] == (delivery_id, 0.0)
        db.expire_all()
        assert webhooks.attempt(db, settings, delivery_id).state == "delivered"
        db.commit()
        assert len(receiver.received) == 4
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
