"""Shapes of the hotline API."""

from __future__ import annotations

from datetime import datetime

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


class CaseReportOut(BaseModel):
    reference: str
    channel: str
    reported_at: datetime
    content_type: str | None
    site_type: str | None
    description: str
    urgent: bool


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
