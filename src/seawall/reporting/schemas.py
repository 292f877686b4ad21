"""Shapes of the authority-reports API at its edge (pydantic); bounded sizes on every field."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

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


Phone = Annotated[str, Field(min_length=3, max_length=40, pattern=r"^\+?[0-9][0-9 ()./-]*$")]
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
Url = Annotated[str, Field(min_length=1, max_length=2083)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class PersonDetailsIn(_Strict):
    """A CyberTipline ``person``: a victim's or an intended recipient's details."""

    first_name: str | None = Field(None, min_length=1, max_length=100)
    last_name: str | None = Field(None, min_length=1, max_length=100)
    phones: list[Phone] = Field(default_factory=list, max_length=10)
    emails: list[Email] = Field(default_factory=list, max_length=10)
    age: int | None = Field(None, ge=0, le=130)
    date_of_birth: date | None = None


class OfficerIn(_Strict):
    """The investigating officer (``officerContact``)."""

    first_name: str | None = Field(None, min_length=1, max_length=100)
    last_name: str | None = Field(None, min_length=1, max_length=100)
    phones: list[Phone] = Field(default_factory=list, max_length=10)
    emails: list[Email] = Field(default_factory=list, max_length=10)


class LawEnforcementIn(_Strict):
    """``lawEnforcement``: when the incident was already reported to, or came from, the police."""

    agency_name: str = Field(min_length=1, max_length=256)
    case_number: str | None = Field(None, min_length=1, max_length=100)
    officer: OfficerIn | None = None
    reported_to_le: bool | None = None
    served_legal_process_domestic: bool | None = None
    served_legal_process_international: bool | None = None
    flea_country: str | None = Field(None, pattern=r"^[A-Z]{2}$")  # ISO 3166 code of the foreign agency


class _AccountIn(_Strict):
    person: PersonDetailsIn | None = None
    esp_identifier: str | None = Field(None, min_length=1, max_length=255)
    esp_service: str | None = Field(None, min_length=1, max_length=100)
    screen_name: str | None = Field(None, min_length=1, max_length=256)
    display_names: list[Name] = Field(default_factory=list, max_length=20)
    profile_urls: list[Url] = Field(default_factory=list, max_length=20)
    prior_reports: list[int] = Field(default_factory=list, max_length=50)  # earlier CyberTipline report ids
    additional_info: str | None = Field(None, min_length=1, max_length=3000)


class RecipientIn(_AccountIn):
    """An ``intendedRecipient``: whom the content was sent to."""


class VictimIn(_AccountIn):
    """A ``victim``; only what the platform holds about its own account holder."""

    school_name: str | None = Field(None, min_length=1, max_length=256)


class FactsIn(_Strict):
    incident_type: str | None = Field(None, max_length=200)
    incident_at: datetime | None = None
    escalate: str | None = Field(None, max_length=3000)
    annotations: list[str] | None = Field(None, max_length=10)
    urls: list[str] | None = Field(None, max_length=100)
    person: PersonIn | None = None
    additional_info: str | None = Field(None, max_length=3000)
    law_enforcement: LawEnforcementIn | None = None
    intended_recipients: list[RecipientIn] | None = Field(None, max_length=10)
    victims: list[VictimIn] | None = Field(None, max_length=10)

    def as_facts(self) -> dict[str, Any]:
        sections = {"law_enforcement", "intended_recipients", "victims"}
        out = self.model_dump(exclude_none=True, exclude={"incident_at", "person", *sections})
        if self.incident_at is not None:
            out["incident_at"] = self.incident_at.isoformat()
        if self.person is not None:
            out["person"] = self.person.model_dump(exclude_defaults=True)
        # JSON-ready (dates as text), empty lists and unset fields left out
        out.update(self.model_dump(mode="json", include=sections, exclude_none=True, exclude_defaults=True))
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
