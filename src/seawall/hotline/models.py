"""Tables of the hotline domain: reports, cases, captures, items, assessments and QA, hosts,
notices, partner hotlines and referrals.

A **report** is what someone told the hotline (a URL, or hashes). Reports of the same URL (by its
normalised form) share one **case**, the unit analysts work on. Capturing a case's URL records a
**capture** and the media found as **items** (one row per distinct content, by SHA-256, shared by
every case that showed it). **Assessments** judge an item or a case; **QA** confirms or rejects them.
A confirmed case in the hotline's own country gets a **notice** to its host, re-checked until the
content is gone; elsewhere a **referral** to the partner hotline of the hosting country.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from seawall.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")
# Byte order, whatever the database's locale: hex text compared as addresses.
HexAddress = String(32).with_variant(String(32, collation="C"), "postgresql")

# Where a report came from (every report records one).
CHANNELS = ("public", "partner", "match", "proactive", "self_report", "import", "referral")
# What the reporter saw, and where (the public form's choices; partners send the same words).
CONTENT_TYPES = ("images", "videos", "other")
SITE_TYPES = (
    "image_host",
    "cyberlocker",
    "forum",
    "social_network",
    "chat",
    "blog",
    "website",
    "video_channel",
    "search",
    "banner_site",
    "other",
)
# A case's life. The public status page shows only received / assessed / action taken / closed.
CASE_STATES = ("open", "captured", "assessed", "confirmed", "notified", "referred", "removed", "closed")
# Assessment vocabulary (docs/classification.md maps it to the other schemes).
OUTCOMES = ("csam", "not_csam", "other_illegal", "inaccessible", "duplicate")
CATEGORIES = ("A", "B", "C")
AGE_BANDS = ("0-2", "3-6", "7-10", "11-13", "14-15", "16-17")
SEXES = ("girl", "boy", "both", "unidentified")
FLAGS = ("self_generated", "commercial", "disguised", "ai_generated", "sextortion", "multi_child")
ASSESSMENT_STATES = ("submitted", "confirmed", "rejected", "superseded")


class Case(Base):
    """One reported URL (or one submission of hashes), worked on once however often it is reported."""

    __tablename__ = "hotline_cases"
    __table_args__ = (
        Index("ix_hotline_cases_url_hash", "url_hash"),
        Index("ix_hotline_cases_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="url")  # url, or hashes (no page to fetch)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    url_key: Mapped[str | None] = mapped_column(Text, nullable=True)  # the normalised URL
    url_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # its SHA-256, indexed
    state: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Optimistic lock: every change bumps it; a save based on an older version is refused.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Hosting trace of the last capture.
    hosting_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hosting_asn: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hosting_as_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    hosting_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    hosting_behind_cdn: Mapped[bool] = mapped_column(Boolean, default=False)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hotline_hosts.id", ondelete="SET NULL"), nullable=True)


class Report(Base):
    """Something a person or partner told the hotline. Its reference and PIN let the reporter ask
    for its status; only the PIN's hash is kept."""

    __tablename__ = "hotline_reports"
    __table_args__ = (
        # A partner's resubmission of its own report is the same report.
        UniqueConstraint("partner", "external_id", name="uq_hotline_reports_partner_external"),
        Index("ix_hotline_reports_reported_at", "reported_at"),
        Index("ix_hotline_reports_case", "case_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    pin_hash: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("hotline_cases.id", ondelete="SET NULL"), nullable=True)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    site_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # The reporter's contact address, encrypted (seawall.secrets): shown only to those who may see it.
    contact_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    partner: Mapped[str | None] = mapped_column(String(120), nullable=True)  # the API key or instance that filed it
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    age_band: Mapped[str | None] = mapped_column(String(8), nullable=True)  # a self-report's own age band
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReportSignal(Base):
    """A hash submitted with a report (a partner's upload hashes, a child's self-report)."""

    __tablename__ = "hotline_report_signals"
    __table_args__ = (UniqueConstraint("report_id", "signal_type", "value", name="uq_hotline_report_signals"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("hotline_reports.id", ondelete="CASCADE"), index=True)
    signal_type: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(256))


class Capture(Base):
    """One fetch of a case's URL: what answered, from where, and what media it showed."""

    __tablename__ = "hotline_captures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("hotline_cases.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default="initial")  # initial, recheck
    notice_id: Mapped[int | None] = mapped_column(
        ForeignKey("hotline_notices.id", ondelete="SET NULL"), nullable=True, index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="running")  # running, done, gone, failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    final_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    redirects: Mapped[list[str]] = mapped_column(JSON, default=list)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tls: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # issuer, subject, validity
    error: Mapped[str] = mapped_column(Text, default="")
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # when the page answered
    media_found: Mapped[int] = mapped_column(Integer, default=0)
    # Media the page showed that were not kept, each {"url", "found_as", "reason"} (refused, too big, …).
    skipped: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # SHA-256 of every media file this capture fetched: a re-check compares them with the listed ones.
    media_sha256: Mapped[list[str]] = mapped_column(JSON, default=list)


class Item(Base):
    """One piece of media (one distinct content, by SHA-256), wherever it was seen."""

    __tablename__ = "hotline_items"
    __table_args__ = (Index("ix_hotline_items_pdq", "pdq"), Index("ix_hotline_items_state", "state"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    md5: Mapped[str] = mapped_column(String(32), index=True)
    sha1: Mapped[str] = mapped_column(String(40), index=True)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The PDQ of the picture with its borders trimmed (when it had borders), and that box: listed
    # beside the PDQ when the item is confirmed, so clean copies match too (docs/regions.md).
    pdq_trimmed: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_trimmed_box: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    media: Mapped[str] = mapped_column(String(16))  # image, video
    mime: Mapped[str] = mapped_column(String(100), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    evidence_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the encrypted original
    thumbnail_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # blurred greyscale render
    # to_grade (an analyst must see it), graded, inherited (an earlier assessment of the same or a
    # near-identical item applies: never queued again)
    state: Mapped[str] = mapped_column(String(16), default="to_grade")
    # The assessment that applies (its own, or the one it inherited); no foreign key: assessments
    # point at items, and a cycle of keys would make both tables hard to migrate on SQLite.
    assessment_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    matches: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # list matches when captured
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Optimistic lock (migration 0011): every change to its assessment bumps it; a stale save is refused.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class CaseItem(Base):
    """An item as a case's page showed it."""

    __tablename__ = "hotline_case_items"
    __table_args__ = (UniqueConstraint("case_id", "item_id", name="uq_hotline_case_items"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("hotline_cases.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("hotline_items.id", ondelete="CASCADE"), index=True)
    capture_id: Mapped[int | None] = mapped_column(
        ForeignKey("hotline_captures.id", ondelete="SET NULL"), nullable=True
    )
    media_url: Mapped[str] = mapped_column(String(2048), default="")
    found_as: Mapped[str] = mapped_column(String(16), default="")  # img, srcset, source, video, link, css, direct
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Assessment(Base):
    """An analyst's decision on an item or a case (a URL). ``derived``: a case's assessment worked out
    from its items' by the IWF rules (youngest child, most severe category)."""

    __tablename__ = "hotline_assessments"
    __table_args__ = (
        Index("ix_hotline_assessments_item", "item_id"),
        Index("ix_hotline_assessments_case", "case_id"),
        Index("ix_hotline_assessments_state", "state"),
        Index("ix_hotline_assessments_assessed_at", "assessed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject: Mapped[str] = mapped_column(String(8))  # item, case
    item_id: Mapped[int | None] = mapped_column(ForeignKey("hotline_items.id", ondelete="CASCADE"), nullable=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("hotline_cases.id", ondelete="CASCADE"), nullable=True)
    assessor: Mapped[str] = mapped_column(String(120))
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(1), nullable=True)
    age_band: Mapped[str | None] = mapped_column(String(8), nullable=True)  # the youngest visible child
    sex: Mapped[str | None] = mapped_column(String(16), nullable=True)
    children: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    site_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    url_level: Mapped[str | None] = mapped_column(String(8), nullable=True)  # a case's: exact, prefix, domain
    comment: Mapped[str] = mapped_column(Text, default="")
    derived: Mapped[bool] = mapped_column(Boolean, default=False)
    inherited_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the assessment it copies
    state: Mapped[str] = mapped_column(String(16), default="submitted")
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    audit_sample: Mapped[bool] = mapped_column(Boolean, default=False)  # picked for the QA audit sample
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # confirmed or rejected


class QaDecision(Base):
    """A second person's check of an assessment."""

    __tablename__ = "hotline_qa_decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("hotline_assessments.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(120))
    decision: Mapped[str] = mapped_column(String(8))  # confirm, reject
    comment: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Host(Base):
    """The hotline's abuse-contact directory: who hosts an AS or a domain, and how to reach them."""

    __tablename__ = "hotline_hosts"
    __table_args__ = (
        UniqueConstraint("asn", "domain", name="uq_hotline_hosts_asn_domain"),
        # A directory entry for an AS alone, or a domain alone, exists once too (NULLs are never equal).
        Index(
            "uq_hotline_hosts_asn_only",
            "asn",
            unique=True,
            sqlite_where=text("domain IS NULL AND source != 'rdap'"),
            postgresql_where=text("domain IS NULL AND source != 'rdap'"),
        ),
        Index(
            "uq_hotline_hosts_domain_only",
            "domain",
            unique=True,
            sqlite_where=text("asn IS NULL AND source != 'rdap'"),
            postgresql_where=text("asn IS NULL AND source != 'rdap'"),
        ),
        UniqueConstraint("range_start", "range_end", name="uq_hotline_hosts_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asn: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    domain: Mapped[str | None] = mapped_column(String(255), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    abuse_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    api_endpoint: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    source: Mapped[str] = mapped_column(String(16), default="import")  # import, rdap, manual
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # An RDAP answer is cached for the network it named (source "rdap", no asn or domain): that
    # network as written, and its first and last addresses as 32 hex digits of IPv6 (IPv4 mapped),
    # which compare in address order as text.
    network: Mapped[str | None] = mapped_column(String(100), nullable=True)
    range_start: Mapped[str | None] = mapped_column(HexAddress, nullable=True)
    range_end: Mapped[str | None] = mapped_column(HexAddress, nullable=True)


class Notice(Base):
    """A takedown request to a host, and its timeline until the content is gone."""

    __tablename__ = "hotline_notices"
    __table_args__ = (Index("ix_hotline_notices_due", "state", "next_check_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("hotline_cases.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hotline_hosts.id", ondelete="SET NULL"), nullable=True)
    channel: Mapped[str] = mapped_column(String(8))  # smtp, api
    recipient: Mapped[str] = mapped_column(String(2048))
    language: Mapped[str] = mapped_column(String(8), default="en")
    document: Mapped[dict[str, Any]] = mapped_column(JSON)  # the XARF report as sent
    # pending (not sent yet), sent, failed (sending failed for good), removed, escalated, closed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    send_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    checks: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    takedown_seconds: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # sent -> found gone
    # Migration 0013: when an analyst closed it, and what the recipient's server called the message
    # (the SMTP Message-ID, or the reference a host's API answered with).
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class PartnerHotline(Base):
    """A hotline Seawall refers reports to (and accepts them from): one per country, typically."""

    __tablename__ = "hotline_partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    country: Mapped[str] = mapped_column(String(2), index=True)
    endpoint: Mapped[str | None] = mapped_column(String(2048), nullable=True)  # its Seawall's base URL
    api_key_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)  # our key at its instance
    public_key: Mapped[str | None] = mapped_column(Text, nullable=True)  # checks what it signs
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The name of the API key (referrals:write) it uses at our instance: how we know who is calling.
    inbound_key: Mapped[str | None] = mapped_column(String(120), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Referral(Base):
    """A case passed to another hotline (out), or one passed to us (in), with its status updates."""

    __tablename__ = "hotline_referrals"
    __table_args__ = (UniqueConstraint("partner_id", "direction", "remote_id", name="uq_hotline_referrals_remote"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    direction: Mapped[str] = mapped_column(String(4))  # out, in
    partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("hotline_partners.id", ondelete="SET NULL"), nullable=True
    )
    case_id: Mapped[int | None] = mapped_column(ForeignKey("hotline_cases.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="hotline")  # hotline, law_enforcement
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(Text, default="")
    remote_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the other side's id
    # hotline out: pending, failed, then what the partner reports: received, assessed, actioned, removed
    # or closed; in: the same from received on; law_enforcement: exported
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # When the next delivery attempt is due (out: the document; in: a status update); while one is in
    # flight, the end of its lease. None: nothing to send.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    reported_state: Mapped[str | None] = mapped_column(String(16), nullable=True)  # in: the last state sent back
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
