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
