"""Tables of the matching domain: the match log, policies, webhooks and their deliveries, quarantine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seawall.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class MatchEvent(Base):
    """One request that matched something: signals and entry ids, never content."""

    __tablename__ = "match_events"
    __table_args__ = (Index("ix_match_events_at", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    match_id: Mapped[str] = mapped_column(String(36), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    principal: Mapped[str] = mapped_column(String(120))
    media: Mapped[str | None] = mapped_column(String(16), nullable=True)
    signals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    matches: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    shadow_actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowlisted: Mapped[bool] = mapped_column(Boolean, default=False)


class Policy(Base):
    """A rule from matches to actions, evaluated in ``position`` order."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=100)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    shadow: Mapped[bool] = mapped_column(Boolean, default=False)  # record what it would do, do nothing
    stop: Mapped[bool] = mapped_column(Boolean, default=False)  # no later rule is evaluated after this one fires
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Webhook(Base):
    """A target that receives decisions, signed with HMAC-SHA256 over timestamp and body."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One payload on its way to a webhook: attempts, the last error, and whether it is dead."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state", "state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    match_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EntryMatchBucket(Base):
    """Distinct contents that matched one entry in one hour: the baseline its rate is compared with."""

    __tablename__ = "entry_match_buckets"
    __table_args__ = (UniqueConstraint("entry_id", "hour", name="uq_entry_match_buckets_entry_hour"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigInteger)
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=0)


class EntryMatchContent(Base):
    """One distinct content one caller matched an entry with, in one hour: what quarantine counts
    (a caller repeating one hash, or one request repeating it, is counted once)."""

    __tablename__ = "entry_match_contents"
    __table_args__ = (
        UniqueConstraint("entry_id", "hour", "principal", "content", name="uq_entry_match_contents_identity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigInteger)
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    principal: Mapped[str] = mapped_column(String(120))
    content: Mapped[str] = mapped_column(String(64))


class EntryQuarantine(Base):
    """An entry whose match rate jumped far above its baseline: its actions pause until reviewed —
    for the callers whose matches made the jump (``callers``), or for everyone once an admin says so."""

    __tablename__ = "entry_quarantine"

    entry_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text)
    callers: Mapped[list[str]] = mapped_column(JSON, default=list)
    everyone: Mapped[bool] = mapped_column(Boolean, default=False)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
