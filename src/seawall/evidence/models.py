"""The evidence store's table: what each stored object is, never its bytes.

An object's bytes live encrypted in a backend (a file under ``SEAWALL_HOME/evidence``), under a data
key of its own; the row keeps that data key wrapped by the master key, and the master key's id, so a
later key rotation can find what each key wrapped. ``purpose`` and ``subject`` say why the object is
kept and for what (retention and legal hold will decide by them); ``deleted_at`` marks an object
whose bytes were destroyed, the row staying as the record that it existed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from seawall.db import Base, UTCDateTime, utcnow


class EvidenceObject(Base):
    __tablename__ = "evidence_objects"
    __table_args__ = (
        Index("ix_evidence_objects_subject", "subject", "purpose"),
        Index("ix_evidence_objects_sha256", "sha256"),
        Index("ix_evidence_objects_retain_until", "retain_until"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a uuid4, also the stored file's name
    purpose: Mapped[str] = mapped_column(String(32))  # e.g. capture, thumbnail
    subject: Mapped[str] = mapped_column(String(120))  # what it belongs to, e.g. "item:12"
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)  # of the plaintext
    sha256: Mapped[str] = mapped_column(String(64))  # of the plaintext, checked on every read
    backend: Mapped[str] = mapped_column(String(16), default="local")
    key_id: Mapped[str] = mapped_column(String(32))  # the master key that wrapped the data key
    wrapped_key: Mapped[str] = mapped_column(Text)  # base64: nonce, then the AES-GCM-wrapped data key
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Migration p15_reporting: when retention lets the purge destroy it (None: no schedule, kept).
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
