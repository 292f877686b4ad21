"""Tables of the lists domain: lists, entries, opinions, and the change log that feeds sync and matching."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from seawall.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite only auto-increments INTEGER keys


def new_list_uid() -> str:
    return uuid.uuid4().hex


class HashList(Base):
    """A named collection of entries (HMA calls it a bank). ``kind`` is hash, url or keyword.

    A deleted list stays as a tombstone (``deleted_at``, its name freed by renaming it out of the
    names a list can take), so feed followers still read its retractions and no id is reused.
    """

    __tablename__ = "lists"
    # SQLite: ids of deleted rows are never handed out again (without it, max(id) + 1 is reused).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stable identity that never collides: names are reused, ids once were; index folders use this.
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_list_uid)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(200), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # HMA's matching_enabled_ratio: the share of contents (chosen by a stable hash of the content,
    # so the same content is always in or out) an enabled list is matched for. 1.0: every content.
    enabled_ratio: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    allowlist: Mapped[bool] = mapped_column(Boolean, default=False)
    # Per-signal-type match thresholds, e.g. {"pdq": 31}; a type not named uses its default.
    thresholds: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    # PDQ lookups also try the 8 rotations and flips of the query.
    dihedral: Mapped[bool] = mapped_column(Boolean, default=True)
    # Uploads and scans also match the regions of a picture (borders trimmed, embedded picture),
    # and entries' trimmed hashes are searched (docs/regions.md).
    regions: Mapped[bool] = mapped_column(Boolean, default=True)
    # An allowlist suppresses matches on these lists only (names); None: on every list.
    allowlist_scope: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120), default="")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    former_name: Mapped[str | None] = mapped_column(String(120), nullable=True, index=True)  # a tombstone's name


class Entry(Base):
    """One signal (or URL, or term) in a list, with its provenance and status."""

    __tablename__ = "list_entries"
    __table_args__ = (
        # Idempotent imports: one entry per list, signal type, value and external id ("" when none).
        UniqueConstraint("list_id", "signal_type", "value", "external_id", name="uq_list_entries_identity"),
        Index("ix_list_entries_list_status", "list_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    signal_type: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(2048))
    external_id: Mapped[str] = mapped_column(String(200), default="")
    category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(200), default="")
    level: Mapped[str | None] = mapped_column(String(16), nullable=True)  # URL entries: exact, prefix, domain
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    disabled_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    added_by: Mapped[str] = mapped_column(String(120), default="")
    match_count: Mapped[int] = mapped_column(BigInteger, default=0)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)  # the list revision of its last change
    # PDQ of the picture with its borders trimmed, when the entry was added from media that had
    # them: matched as this entry, retired with it (docs/regions.md).
    trimmed_value: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trimmed_box: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)

    hash_list: Mapped[HashList] = relationship(lazy="joined")


class Opinion(Base):
    """Someone's verdict on an entry: true positive, false positive, disputed."""

    __tablename__ = "entry_opinions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("list_entries.id", ondelete="CASCADE"), index=True)
    verdict: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(120))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Opinions on entries that came from an exchange are sent back; this records when.
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ListChange(Base):
    """One change to a list at one revision: what any consumer asks for with "since revision R"."""

    __tablename__ = "list_changes"
    __table_args__ = (UniqueConstraint("list_id", "revision", name="uq_list_changes_revision"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    op: Mapped[str] = mapped_column(String(16))  # add, update, status, list
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(120), default="")
