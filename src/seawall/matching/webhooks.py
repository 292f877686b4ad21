"""Webhooks: signed deliveries through the task queue, exponential back-off, a dead-letter list.

Each delivery carries ``X-Seawall-Timestamp`` (Unix seconds), ``X-Seawall-Delivery`` (its id) and
``X-Seawall-Signature: v1=<hex>``, the HMAC-SHA256 of ``"<timestamp>." + body`` under the
webhook's secret. A receiver recomputes it and rejects old timestamps, which stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import utcnow
from seawall.matching.models import Webhook, WebhookDelivery
from seawall.secrets import decrypt_secret, encrypt_secret


class WebhookError(ValueError):
    pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def create_webhook(
    session: Session,
    settings: Settings,
    actor: Principal,
    *,
    name: str,
    url: str,
    secret: str | None = None,
    max_attempts: int = 8,
) -> tuple[Webhook, str]:
    """Register a target; returns it and its signing secret (generated when absent), shown once."""
    if not url.startswith(("http://", "https://")):
        raise WebhookError("a webhook URL starts with http:// or https://")
    if session.scalar(select(Webhook.id).where(Webhook.name == name)) is not None:
        raise WebhookError(f"a webhook named {name!r} exists already")
    if not 1 <= max_attempts <= 50:
        raise WebhookError("max_attempts is 1 to 50")
    secret = secret or secrets.token_urlsafe(32)
    hook = Webhook(name=name, url=url, secret_encrypted=encrypt_secret(settings, secret), max_attempts=max_attempts)
    session.add(hook)
    session.flush()
    audit.record(session, actor, "webhook.create", "webhook", hook.id, {"name": name, "url": url})
    return hook, secret


def list_webhooks(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.name)))


def enqueue(session: Session, target: str, match_id: str | None, payload: dict[str, Any]) -> WebhookDelivery | None:
    """Record a delivery and hand it to the task queue once this transaction commits."""
    hook = session.scalar(select(Webhook).where(Webhook.name == target, Webhook.enabled.is_(True)))
    if hook is None:
        return None
    delivery = WebhookDelivery(webhook_id=hook.id, match_id=match_id, payload=payload, next_attempt_at=utcnow())
    session.add(delivery)
    session.flush()
    _after_commit(session, delivery.id, 0.0)
    return delivery


def queue_delivery(delivery_id: int, delay: float) -> None:
    """Hand a delivery to the task queue (tests replace this to drive attempts themselves)."""
    from seawall.matching.tasks import deliver_webhook

    if delay > 0:
        deliver_webhook.schedule((delivery_id,), delay=delay)
    else:
        deliver_webhook(delivery_id)


def _after_commit(session: Session, delivery_id: int, delay: float) -> None:
    from sqlalchemy import event

    # Only once the delivery row is committed can a worker find it.
    event.listen(session, "after_commit", lambda _s: scheduler(delivery_id, delay), once=True)


scheduler: Callable[[int, float], None] = queue_delivery


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: base, 2 base, 4 base, ... capped at 6 hours."""
    return float(min(settings.webhook_retry_base_seconds * (2 ** max(0, attempts - 1)), 6 * 3600))


def attempt(session: Session, settings: Settings, delivery_id: int, now: datetime | None = None) -> WebhookDelivery:
    """Try one delivery once; on failure schedule the next try, or move it to the dead letters."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise LookupError(f"no webhook delivery {delivery_id}")
    if delivery.state != "pending":
        return delivery
    hook = session.get(Webhook, delivery.webhook_id)
    assert hook is not None
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Seawall-Webhook",
        "x-seawall-timestamp": str(timestamp),
        "x-seawall-delivery": str(delivery.id),
        "x-seawall-signature": sign(decrypt_secret(settings, hook.secret_encrypted), timestamp, body),
    }
    delivery.attempts += 1
    error = ""
    try:
        response = httpx.post(hook.url, content=body, headers=headers, timeout=settings.webhook_timeout_seconds)
        delivery.last_status = response.status_code
        if 200 <= response.status_code < 300:
            delivery.state, delivery.delivered_at, delivery.last_error = "delivered", utcnow(), ""
            delivery.next_attempt_at = None
            return delivery
        error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        delivery.last_status = None
        error = f"{type(exc).__name__}: {exc}"
    delivery.last_error = error
    if delivery.attempts >= hook.max_attempts:
        delivery.state, delivery.next_attempt_at = "dead", None
    else:
        delay = backoff(settings, delivery.attempts)
        delivery.next_attempt_at = (now or utcnow()) + timedelta(seconds=delay)
        _after_commit(session, delivery.id, delay)
    return delivery


def deliveries(session: Session, state: str | None = None, limit: int = 100) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if state:
        query = query.where(WebhookDelivery.state == state)
    return list(session.scalars(query))


def redeliver(session: Session, actor: Principal, delivery_id: int) -> WebhookDelivery:
    """Put a dead (or delivered) delivery back in the queue with a fresh attempt budget."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise LookupError(f"no webhook delivery {delivery_id}")
    delivery.state, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()
    audit.record(session, actor, "webhook.redeliver", "webhook_delivery", delivery.id)
    _after_commit(session, delivery.id, 0.0)
    return delivery
