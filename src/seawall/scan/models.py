"""Tables of the scan domain: runs and their partitions, the checkpoints a killed scan resumes from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seawall.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")
RUN_STATES = ("running", "finished", "incomplete", "interrupted")  # incomplete: some partitions failed
COUNTERS = ("items", "media", "skipped", "errors", "matches", "bytes")


class ScanRun(Base):
    """One scan: what it covers, how far it got, and where its results go."""

    __tablename__ = "scan_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="running")
    principal: Mapped[str] = mapped_column(String(120))
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # lists, fast, report
    out: Mapped[str | None] = mapped_column(Text, nullable=True)  # the results file, None for stdout
    out_offset: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes of it that checkpoints cover
    partitions: Mapped[int] = mapped_column(Integer, default=0)
    partitions_done: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(BigInteger, default=0)
    media: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    matches: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ScanPartition(Base):
    """A unit of work (a batch of files, or one archive or WARC file), checkpointed when done."""

    __tablename__ = "scan_partitions"
    __table_args__ = (
        UniqueConstraint("run_id", "number", name="uq_scan_partitions_run_number"),
        Index("ix_scan_partitions_run_state", "run_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("scan_runs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, done, failed
    items: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    matches: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
