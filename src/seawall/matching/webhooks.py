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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.fetch import AddressRules, FetchError, safe_client
from seawall.matching.models import Webhook, WebhookDelivery
from seawall.redact import redact_text, redact_url
from seawall.secrets import decrypt_secret, encrypt_secret

#: An attempt in flight keeps others off the delivery this long past the receiver's timeout.
LEASE_MARGIN_SECONDS = 60.0
#: A retry may start this much before its time (workers' clocks differ a little).
CLOCK_SLACK_SECONDS = 5.0


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
    try:
        AddressRules.from_settings(settings).check_url(url)  # a host name is checked at each delivery
    except FetchError as exc:
        raise WebhookError(f"webhook URL {exc}") from None
    if session.scalar(select(Webhook.id).where(Webhook.name == name)) is not None:
        raise WebhookError(f"a webhook named {name!r} exists already")
    if not 1 <= max_attempts <= 50:
        raise WebhookError("max_attempts is 1 to 50")
    secret = secret or secrets.token_urlsafe(32)
    hook = Webhook(name=name, url=url, secret_encrypted=encrypt_secret(settings, secret), max_attempts=max_attempts)
    session.add(hook)
    session.flush()
    audit.record(session, actor, "webhook.create", "webhook", hook.id, {"name": name, "url": redact_url(url)})
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


# A pending delivery this late was lost (its worker died mid-attempt, or the process that recorded
# it stopped before queueing it): queued again. Twice is harmless, the claim admits one attempt.
OVERDUE_SECONDS = 120.0


def requeue_overdue(session: Session, now: datetime | None = None) -> list[int]:
    """Queue again every pending delivery whose next attempt is overdue; returns their ids."""
    moment = (now or utcnow()) - timedelta(seconds=OVERDUE_SECONDS)
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= moment)
            .order_by(WebhookDelivery.id)
            .limit(1000)
        )
    )
    for delivery_id in ids:
        scheduler(delivery_id, 0.0)
    return ids


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: base, 2 base, 4 base, ... capped at 6 hours."""
    return float(min(settings.webhook_retry_base_seconds * (2 ** max(0, attempts - 1)), 6 * 3600))


@dataclass(frozen=True)
class _Outgoing:
    """What one attempt sends, read in the claiming transaction."""

    url: str
    body: bytes
    headers: dict[str, str]
    attempt: int  # the attempt number this worker claimed
    lease: datetime  # the next_attempt_at it set: the claim's token
    max_attempts: int


def _claim(session: Session, settings: Settings, delivery_id: int, now: datetime) -> _Outgoing | None:
    """Take the delivery's next attempt, or None when it is not pending or another worker holds it.

    The claim is a compare-and-set on the attempt count that also moves ``next_attempt_at`` past the
    request's timeout: a second worker (a duplicate task, a redelivery racing a retry) finds the
    delivery not due and leaves it, so one attempt is in flight at a time."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise LookupError(f"no webhook delivery {delivery_id}")
    if delivery.state != "pending":
        return None
    hook = session.get_one(Webhook, delivery.webhook_id)
    due = delivery.next_attempt_at is None or delivery.next_attempt_at <= now + timedelta(seconds=CLOCK_SLACK_SECONDS)
    if not due:
        return None
    lease = now + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
    claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.state == "pending",
            WebhookDelivery.attempts == delivery.attempts,
        )
        .values(attempts=delivery.attempts + 1, next_attempt_at=lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Seawall-Webhook",
        "x-seawall-timestamp": str(timestamp),
        "x-seawall-delivery": str(delivery.id),
        "x-seawall-signature": sign(decrypt_secret(settings, hook.secret_encrypted), timestamp, body),
    }
    return _Outgoing(hook.url, body, headers, delivery.attempts + 1, lease, hook.max_attempts)


def _post(settings: Settings, outgoing: _Outgoing) -> tuple[int | None, str]:
    """(status, error) of one POST under the outgoing-request rules; error is empty on a 2xx."""
    rules = AddressRules.from_settings(settings)
    try:
        with safe_client(rules, timeout=settings.webhook_timeout_seconds) as client:
            response = client.post(outgoing.url, content=outgoing.body, headers=outgoing.headers)
    except FetchError as exc:
        return None, str(exc)
    except httpx.HTTPError as exc:
        return None, redact_text(f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}"


def attempt(
    factory: sessionmaker[Session], settings: Settings, delivery_id: int, now: datetime | None = None
) -> WebhookDelivery:
    """Try one delivery once; on failure schedule the next try, or move it to the dead letters.

    Three steps, so no transaction is open while the receiver answers: claim the attempt and read
    what to send; POST; record the outcome, only if the attempt is still ours (a redelivery in the
    meantime starts a fresh budget, and this attempt's outcome no longer counts)."""
    with transaction(factory) as session:
        outgoing = _claim(session, settings, delivery_id, now or utcnow())
    if outgoing is not None:
        status, error = _post(settings, outgoing)
        delay = _record(factory, settings, delivery_id, outgoing, status, error, now)
        if delay is not None:
            scheduler(delivery_id, delay)
    with factory() as session:
        return session.get_one(WebhookDelivery, delivery_id)


def _record(
    factory: sessionmaker[Session],
    settings: Settings,
    delivery_id: int,
    outgoing: _Outgoing,
    status: int | None,
    error: str,
    now: datetime | None,
) -> float | None:
    """Store the attempt's outcome; the delay before the next try, or None when there is none."""
    with transaction(factory) as session:
        delivery = session.get_one(WebhookDelivery, delivery_id)
        mine = delivery.attempts == outgoing.attempt and delivery.next_attempt_at == outgoing.lease
        if delivery.state != "pending" or not mine:
            return None
        delivery.last_status, delivery.last_error = status, error
        if not error:
            delivery.state, delivery.delivered_at, delivery.next_attempt_at = "delivered", utcnow(), None
            return None
        if outgoing.attempt >= outgoing.max_attempts:
            delivery.state, delivery.next_attempt_at = "dead", None
            return None
        delay = backoff(settings, outgoing.attempt)
        delivery.next_attempt_at = (now or utcnow()) + timedelta(seconds=delay)
        return delay


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
