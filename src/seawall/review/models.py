"""Tables of the review domain: who holds what (claims), what was skipped and why, every reveal of
original media with how long it stayed revealed, each analyst's exposure per day, and preferences.

Grading itself is the hotline's (``hotline.assessment``): this domain only hands out work, shows it
safely and counts what it cost the person doing it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seawall.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")
SUBJECTS = ("item", "case")


class Claim(Base):
    """An analyst's lock on an item or case while grading it; expires on its own."""

    __tablename__ = "review_claims"
    __table_args__ = (UniqueConstraint("subject", "subject_id", name="uq_review_claims_subject"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject: Mapped[str] = mapped_column(String(8))  # item, case
    subject_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    holder: Mapped[str] = mapped_column(String(120))  # the username, shown to others
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Skip(Base):
    """An item or case an analyst handed back with a reason (not handed to them again that day)."""

    __tablename__ = "review_skips"
    __table_args__ = (Index("ix_review_skips_user_at", "user_id", "skipped_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text, default="")
    skipped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reveal(Base):
    """One reveal of an item's original media: who, which, when, and for how long."""

    __tablename__ = "review_reveals"
    __table_args__ = (Index("ix_review_reveals_user_at", "user_id", "revealed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # the one-item URL's secret, hashed
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("hotline_items.id", ondelete="CASCADE"), index=True)
    revealed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # how long it stayed revealed


class Exposure(Base):
    """An analyst's exposure on one day (the hotline's time zone): what the wellbeing limits count."""

    __tablename__ = "review_exposure"
    __table_args__ = (UniqueConstraint("user_id", "day", name="uq_review_exposure_user_day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    day: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    items_viewed: Mapped[int] = mapped_column(Integer, default=0)
    reveals: Mapped[int] = mapped_column(Integer, default=0)
    revealed_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    review_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # time at work on the queues
    breaks: Mapped[int] = mapped_column(Integer, default=0)
    active_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # continuous work began
    last_active_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Preference(Base):
    """How one person wants media shown; None: the organisation's default (settings)."""

    __tablename__ = "review_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    blur: Mapped[float | None] = mapped_column(Float, nullable=True)
    greyscale: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reveal_on_hold: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
