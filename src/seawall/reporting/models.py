"""Tables of authority reporting: report drafts and their submission, the files and IP capture
events they carry, stored credentials, and legal holds over the evidence store.

An **authority report** starts as a draft (from a confirmed decision, or a platform's API call),
is approved by a person (or by the operator's auto-submit policy), then goes through the
authority's submission steps. Each step's outcome is stored before the next starts, so a crash
never repeats a step that the authority already took (see ``service.advance``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seawall.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")

AUTHORITIES = ("ncmec", "nca")
# draft: being put together; approved: a person (or the policy) said submit; opened: the authority
# holds an unfinished report (remote_id known); submitted: filed (cannot be undone); retracted:
# withdrawn before it was filed; cancelled: an opened report cancelled at NCMEC (/cancel) before it
# was filed; failed: an error a person must look at (last_error says which).
REPORT_STATES = ("draft", "approved", "opened", "submitted", "retracted", "cancelled", "failed")
EVENT_NAMES = ("Login", "Registration", "Purchase", "Upload", "Other", "Unknown")
PRIORITIES = (1, 2, 3)  # the NCA's: 1 immediate risk to a child, 2 as soon as practicable, 3 without undue delay


class AuthorityReport(Base):
    __tablename__ = "authority_reports"
    __table_args__ = (
        Index("ix_authority_reports_state", "state"),
        Index("ix_authority_reports_case", "case_id"),
        # One live draft per case and authority: a second confirmation updates it, never duplicates.
        UniqueConstraint("authority", "dedupe_key", name="uq_authority_reports_dedupe"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reference: Mapped[str] = mapped_column(String(24), unique=True)  # ours: AR-…
    authority: Mapped[str] = mapped_column(String(8))  # ncmec, nca
    state: Mapped[str] = mapped_column(String(16), default="draft")
    source: Mapped[str] = mapped_column(String(16))  # decision, api
    dedupe_key: Mapped[str] = mapped_column(String(120))  # "case:12", or the caller's "key:<name>:<external id>"
    owner: Mapped[str | None] = mapped_column(String(120), nullable=True)  # the API key that filed it
    case_id: Mapped[int | None] = mapped_column(ForeignKey("hotline_cases.id", ondelete="SET NULL"), nullable=True)
    assessment_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    jurisdiction: Mapped[str] = mapped_column(String(8), default="US")  # decides the retention period
    # incidentSummary, internetDetails, reporter and reported person facts (schemas.ReportFacts)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # the priority's deadline
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The authority's report id, stored the moment it answers: after that, never submit again.
    remote_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # retracted or cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # a worker's step in flight
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_request_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    document_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the sent document, in the vault
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuthorityReportFile(Base):
    """A file a report carries: its original hashes, its classification, where its bytes are kept."""

    __tablename__ = "authority_report_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("authority_reports.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    evidence_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    file_name: Mapped[str] = mapped_column(String(255), default="")
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha1: Mapped[str | None] = mapped_column(String(40), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    classification: Mapped[str | None] = mapped_column(String(2), nullable=True)  # A1 A2 B1 B2
    annotations: Mapped[list[str]] = mapped_column(JSON, default=list)  # fileAnnotations, presence-only
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # to the platform
    exif: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # submission progress of this file at the authority
    remote_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    details_sent: Mapped[bool] = mapped_column(Boolean, default=False)


class IpCaptureEvent(Base):
    """An IP address the platform saw the reported account use, and when."""

    __tablename__ = "authority_ip_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("authority_reports.id", ondelete="CASCADE"), index=True)
    ip_address: Mapped[str] = mapped_column(String(64))
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event_name: Mapped[str] = mapped_column(String(16), default="Unknown")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    possible_proxy: Mapped[bool] = mapped_column(Boolean, default=False)


class AuthorityCredential(Base):
    """An authority's login, the secret part encrypted (seawall.secrets): never shown again."""

    __tablename__ = "authority_credentials"

    authority: Mapped[str] = mapped_column(String(8), primary_key=True)
    username: Mapped[str] = mapped_column(String(200))
    secret_sealed: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(120))


class LegalHold(Base):
    """A hold on a case: no evidence under it (its items, its reports) is purged until released."""

    __tablename__ = "legal_holds"
    __table_args__ = (Index("ix_legal_holds_case", "case_id", "released_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("hotline_cases.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
