"""Shapes of the hotline API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class ReportSignalIn(BaseModel):
    signal_type: str
    value: str


class ReportCreate(BaseModel):
    """A partner's report: a URL (what it shows is fetched and assessed), or hashes, or both."""

    url: str | None = Field(None, max_length=2048)
    description: str = Field("", max_length=5000)
    content_type: str | None = Field(None, description="images, videos or other")
    site_type: str | None = Field(None, description="image_host, cyberlocker, forum, social_network, …")
    external_id: str | None = Field(None, max_length=200, description="Your id: sending it again is idempotent.")
    urgent: bool = Field(False, description="A child may be at immediate risk: assessed first.")
    signals: list[ReportSignalIn] = Field(default_factory=list, max_length=100)


class ReportCreated(BaseModel):
    reference: str
    pin: str | None = Field(description="For the public status page; shown once (null when the report existed).")
    status: str


class ReportBatch(BaseModel):
    reports: list[ReportCreate] = Field(max_length=1000)


class ReportBatchItem(BaseModel):
    reference: str | None = None
    pin: str | None = None
    status: str | None = None
    error: str | None = None


class ReportBatchOut(BaseModel):
    results: list[ReportBatchItem]


class ReportOut(BaseModel):
    reference: str
    status: str = Field(description="received, assessed, action taken, closed (or withdrawn)")
    channel: str
    url: str | None
    content_type: str | None
    site_type: str | None
    external_id: str | None
    reported_at: datetime
    case: str | None = Field(description="The case reference: reports of one URL share a case.")


# ---- referrals: the documents hotlines exchange, and the partner directory ----------------------
# Documents are validated after their signature is checked; unknown fields are ignored (a newer
# sender may add some), a different type or version is refused.

_HEX64 = r"^[0-9a-f]{64}$"


class Party(BaseModel):
    """A hotline as a document names it: the key fingerprint is what counts, the name is for people."""

    name: str | None = Field(None, max_length=200)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    key: str | None = Field(None, pattern=_HEX64, description="SHA-256 (hex) of the hotline's Ed25519 public key")


class Hosting(BaseModel):
    address: str | None = Field(None, max_length=64)
    asn: int | None = None
    as_name: str | None = Field(None, max_length=200)
    country: str | None = Field(None, max_length=2)
    behind_cdn: bool = False


class CaptureFacts(BaseModel):
    at: datetime | None = None
    final_url: str | None = Field(None, max_length=2048)
    http_status: int | None = None
    address: str | None = Field(None, max_length=64)


class Classification(BaseModel):
    """An assessment in our own terms, and in the other schemes partners speak (``schemes``)."""

    outcome: str = Field(max_length=16)
    category: str | None = Field(None, max_length=1)
    age_band: str | None = Field(None, max_length=8)
    sex: str | None = Field(None, max_length=16)
    children: int | None = None
    flags: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=20)
    site_type: str | None = Field(None, max_length=32)
    state: str = Field(max_length=16, description="submitted, confirmed (by QA) …")
    assessed_at: datetime | None = None
    confirmed_at: datetime | None = None
    schemes: dict[str, Any] = Field(default_factory=dict, description="industry, interpol, project_vic …")


class ItemFacts(BaseModel):
    md5: str = Field(pattern=r"^[0-9a-f]{32}$")
    sha1: str = Field(pattern=r"^[0-9a-f]{40}$")
    sha256: str = Field(pattern=_HEX64)
    pdq: str | None = Field(None, pattern=_HEX64)
    media: str = Field(max_length=16)
    mime: str = Field("", max_length=100)
    size: int = 0
    classification: Classification | None = None


class CaseFacts(BaseModel):
    reference: str = Field(max_length=40)
    opened_at: datetime | None = None


class Timeline(BaseModel):
    reported_at: datetime | None = None
    captured_at: datetime | None = None
    assessed_at: datetime | None = None
    confirmed_at: datetime | None = None
    referred_at: datetime | None = None


class ReferralDocument(BaseModel):
    """A case referred to the hotline of the hosting country: the URL, hashes and classification —
    never media."""

    type: Literal["seawall.referral"]
    version: Literal[1]
    uid: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    created_at: datetime
    sender: Party
    recipient: Party
    url: str | None = Field(None, max_length=2048)
    case: CaseFacts
    hosting: Hosting | None = None
    capture: CaptureFacts | None = None
    classification: Classification | None = None
    items: list[ItemFacts] = Field(default_factory=list, max_length=1000)
    timeline: Timeline = Field(default_factory=Timeline)


REFERRAL_STATUSES = ("received", "assessed", "actioned", "removed", "closed")


class StatusDocument(BaseModel):
    """What became of a referral at the hotline that received it."""

    type: Literal["seawall.referral_status"]
    version: Literal[1]
    referral: str = Field(max_length=64, description="the referring hotline's uid of the referral")
    reference: str | None = Field(None, max_length=64, description="the receiving hotline's report reference")
    status: Literal["received", "assessed", "actioned", "removed", "closed"]
    at: datetime
    sender: Party
    recipient: Party


class SignedDocument(BaseModel):
    """What travels: a document and the Ed25519 signature (base64) of its canonical JSON."""

    document: dict[str, Any]
    signature: str = Field(max_length=200)


class ReferralAccepted(BaseModel):
    reference: str = Field(description="The report this referral became in the receiving hotline's queue.")
    status: str


class ReferralStatusOut(BaseModel):
    referral: str
    state: str


class ReferralOut(BaseModel):
    uid: str
    direction: str
    kind: str
    partner: str | None
    case: str | None
    state: str
    remote_id: str | None
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime


class PartnerCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    country: str = Field(min_length=2, max_length=2)
    endpoint: str | None = Field(None, max_length=2048, description="The partner Seawall's base URL.")
    public_key: str | None = Field(None, max_length=2000, description="ed25519:<base64> or PEM.")
    api_key: str | None = Field(None, max_length=400, description="Our API key at the partner's instance.")
    inbound_key: str | None = Field(None, max_length=120, description="An existing key of ours it calls us with.")
    issue_key: bool = Field(True, description="Without inbound_key: issue it a key (referrals:write), shown once.")


class PartnerUpdate(BaseModel):
    """Only the fields sent change; null clears endpoint, keys."""

    country: str | None = Field(None, min_length=2, max_length=2)
    endpoint: str | None = Field(None, max_length=2048)
    public_key: str | None = Field(None, max_length=2000)
    api_key: str | None = Field(None, max_length=400)
    inbound_key: str | None = Field(None, max_length=120)
    enabled: bool | None = None


class PartnerOut(BaseModel):
    name: str
    country: str
    endpoint: str | None
    public_key: str | None
    fingerprint: str | None
    has_api_key: bool
    inbound_key: str | None
    enabled: bool
    created_at: datetime


class PartnerCreated(PartnerOut):
    issued_key: str | None = Field(description="The key issued to the partner, shown once: give it to them.")


class PublicKeyOut(BaseModel):
    public_key: str
    fingerprint: str


# ---- tracing: the abuse-contact directory ----


class HostOut(BaseModel):
    """An abuse contact: imported into the directory (by AS, domain or both), or an RDAP answer
    cached for a network."""

    id: int
    asn: int | None
    domain: str | None
    network: str | None = Field(description="An RDAP answer's network (source rdap).")
    name: str
    abuse_email: str | None
    api_endpoint: str | None
    language: str
    source: str = Field(description="import, rdap or manual")
    updated_at: datetime


class HostList(BaseModel):
    hosts: list[HostOut]


# ---- assessment and QA ----------------------------------------------------------------------


class AssessmentCreate(BaseModel):
    """An analyst's assessment of an item, or of a case (its URL). ``version``: the version of the
    item or case you read; a save based on an older one is refused (409)."""

    version: int = Field(description="The item's or case's version as you read it.")
    outcome: str | None = Field(None, description="csam, not_csam, other_illegal, inaccessible or duplicate")
    category: str | None = Field(None, description="UK category A, B or C (csam only, required there)")
    age_band: str | None = Field(None, description="Youngest visible child: 0-2, 3-6, 7-10, 11-13, 14-15, 16-17")
    sex: str | None = Field(None, description="girl, boy, both or unidentified")
    children: int | None = Field(None, description="Number of children shown")
    flags: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="self_generated, commercial, disguised, ai_generated, sextortion, multi_child",
    )
    site_type: str | None = None
    url_level: str | None = Field(None, description="Cases: list the URL at exact (default), prefix or domain level")
    comment: str = Field("", max_length=5000)
    derive: bool = Field(
        False, description="Cases: take the findings from the items (youngest child, most severe category)."
    )


class QaCreate(BaseModel):
    decision: str = Field(description="confirm or reject")
    comment: str = Field("", max_length=5000, description="Why (required to reject: the assessor reads it).")


class QaOut(BaseModel):
    reviewer: str
    decision: str
    comment: str
    decided_at: datetime


class ClassificationOut(BaseModel):
    uk_category: str | None
    age_band: str | None
    industry: str | None = Field(description="A1, A2, B1, B2 (CyberTipline industry classification)")
    interpol: str | None = Field(description="baseline, national or not_illegal")
    project_vic: int | None = Field(description="Project VIC US category 0-4")


class AssessmentOut(BaseModel):
    id: int
    subject: str = Field(description="item or case")
    item_id: int | None
    case: str | None = Field(description="The case reference (case assessments)")
    assessor: str
    assessed_at: datetime
    outcome: str
    category: str | None
    age_band: str | None
    sex: str | None
    children: int | None
    flags: list[str]
    site_type: str | None
    url_level: str | None
    comment: str
    derived: bool
    inherited_from: int | None
    state: str = Field(description="submitted, confirmed, rejected or superseded")
    confirmations: int
    audit_sample: bool
    decided_at: datetime | None
    classification: ClassificationOut
    qa: list[QaOut]


class AssessmentSaved(BaseModel):
    assessment: AssessmentOut
    version: int = Field(description="The item's or case's version after this save.")


class QaResultOut(BaseModel):
    assessment: AssessmentOut
    final: bool = Field(description="This confirmation made the assessment final.")
    confirmations_needed: int
    hash_entries: int = Field(description="The item's entries in the hotline's hash list")
    url_entries: int = Field(description="The case's entries in the hotline's URL list")
    retracted: int = Field(description="Entries of an earlier confirmed assessment retracted")
    inherited: list[int] = Field(description="Items that inherited this assessment")
    dispatched: str | None = Field(description="notice, referral or none; null when nothing was due")


class ReportSignalOut(BaseModel):
    signal_type: str
    value: str
    lists: list[str] = Field(
        default_factory=list, description="Lists with an active entry of exactly this value (near PDQ: /v1/match)"
    )


class CaseReportOut(BaseModel):
    reference: str
    channel: str
    reported_at: datetime
    content_type: str | None
    site_type: str | None
    description: str
    urgent: bool
    age_band: str | None = None
    withdrawn_at: datetime | None = None
    signals: list[ReportSignalOut] = Field(default_factory=list, description="Hashes the report carried")


class CaseItemOut(BaseModel):
    id: int
    sha256: str
    md5: str
    sha1: str
    pdq: str | None
    pdq_quality: int | None
    media: str
    mime: str
    size: int
    state: str = Field(description="to_grade, graded or inherited")
    version: int
    assessment_id: int | None
    media_url: str
    found_as: str


class CaseOut(BaseModel):
    reference: str
    kind: str
    url: str | None
    state: str
    version: int
    priority: int
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    hosting_ip: str | None
    hosting_asn: int | None
    hosting_as_name: str | None
    hosting_country: str | None
    hosting_behind_cdn: bool
    reports: list[CaseReportOut]
    items: list[CaseItemOut]
    assessment: AssessmentOut | None = Field(description="The assessment that stands for the case (its URL)")
    assessments: list[AssessmentOut] = Field(description="Every assessment of the case and its items, oldest first")


class NoticeOut(BaseModel):
    """A notice to a host and its timeline until the content is gone."""

    id: int
    case: str = Field(description="The case's reference.")
    url: str | None
    host: str | None = Field(description="The abuse-contact directory's entry it went to.")
    channel: str = Field(description="smtp or api")
    recipient: str = Field(description="The abuse address or API endpoint (empty while no contact is known).")
    language: str
    state: str = Field(description="pending, sent, failed, removed, escalated or closed")
    report_id: str | None = Field(description="The XARF report's id.")
    created_at: datetime
    sent_at: datetime | None
    send_attempts: int
    last_error: str
    message_id: str | None = Field(description="The SMTP Message-ID, or the reference the host's API answered.")
    checks: int
    next_check_at: datetime | None = Field(description="When the next send or re-check is due.")
    reminded_at: datetime | None
    escalated_at: datetime | None
    removed_at: datetime | None
    closed_at: datetime | None
    takedown_seconds: int | None = Field(description="Sent → the first re-check that found the content gone.")


class NoticeDetail(NoticeOut):
    document: dict[str, Any] = Field(description="The XARF v4 report as sent (hash values, never media).")


class NoticeClose(BaseModel):
    comment: str = Field("", max_length=2000)
