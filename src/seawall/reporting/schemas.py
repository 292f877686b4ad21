"""Shapes of the authority-reports API at its edge (pydantic); bounded sizes on every field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from seawall.reporting import service


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonIn(_Strict):
    """The reported account, as the platform knows it (CyberTipline ``personOrUserReported``)."""

    esp_identifier: str | None = Field(None, max_length=255)
    esp_service: str | None = Field(None, max_length=100)
    screen_name: str | None = Field(None, max_length=256)
    display_names: list[str] = Field(default_factory=list, max_length=20)
    profile_urls: list[str] = Field(default_factory=list, max_length=20)
    emails: list[str] = Field(default_factory=list, max_length=20)
    phones: list[str] = Field(default_factory=list, max_length=20)
    connections: list[str] = Field(default_factory=list, max_length=100)  # linked accounts (NCA Schedule 1)


class FactsIn(_Strict):
    incident_type: str | None = Field(None, max_length=200)
    incident_at: datetime | None = None
    escalate: str | None = Field(None, max_length=3000)
    annotations: list[str] | None = Field(None, max_length=10)
    urls: list[str] | None = Field(None, max_length=100)
    person: PersonIn | None = None
    additional_info: str | None = Field(None, max_length=3000)

    def as_facts(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True, exclude={"incident_at", "person"})
        if self.incident_at is not None:
            out["incident_at"] = self.incident_at.isoformat()
        if self.person is not None:
            out["person"] = self.person.model_dump(exclude_defaults=True)
        return out


class FileIn(_Strict):
    md5: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    sha1: str | None = Field(None, pattern=r"^[0-9a-f]{40}$")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    file_name: str = Field("", max_length=255)
    classification: str | None = Field(None, max_length=2)
    annotations: list[str] = Field(default_factory=list, max_length=10)
    uploaded_at: datetime | None = None
    exif: dict[str, str] = Field(default_factory=dict, max_length=100)

    def as_file(self) -> service.ApiFile:
        return service.ApiFile(**self.model_dump())


class IpEventIn(_Strict):
    ip_address: str = Field(max_length=64)
    event_name: str = Field("Unknown", max_length=16)
    at: datetime
    port: int | None = None
    possible_proxy: bool = False

    def as_event(self) -> service.ApiEvent:
        return service.ApiEvent(**self.model_dump())


class ReportCreate(_Strict):
    authority: str = Field("ncmec", max_length=8)
    external_id: str = Field(min_length=1, max_length=80)
    priority: int = 3
    facts: FactsIn = Field(default_factory=FactsIn)
    files: list[FileIn] = Field(default_factory=list, max_length=100)
    ip_events: list[IpEventIn] = Field(default_factory=list, max_length=1000)


class FactsAdd(_Strict):
    priority: int | None = None
    facts: FactsIn = Field(default_factory=FactsIn)
    files: list[FileIn] = Field(default_factory=list, max_length=100)
    ip_events: list[IpEventIn] = Field(default_factory=list, max_length=1000)


class CredentialsIn(_Strict):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class HoldCreate(_Strict):
    case: str = Field(min_length=1, max_length=20)
    reason: str = Field(min_length=1, max_length=2000)
