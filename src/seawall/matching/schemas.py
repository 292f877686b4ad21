"""Shapes of the matching API."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The most signals one request may look up, whichever route it takes (POST /v1/match, /v1/match/batch).
MAX_SIGNALS_PER_REQUEST = 1000
TOO_MANY_SIGNALS = f"at most {MAX_SIGNALS_PER_REQUEST} signals per request; send more in several requests"


class SignalIn(BaseModel):
    signal_type: str
    value: str


def _few_enough(signals: Any) -> Any:
    if isinstance(signals, list | dict) and len(signals) > MAX_SIGNALS_PER_REQUEST:
        raise ValueError(TOO_MANY_SIGNALS)
    return signals


class MatchRequest(BaseModel):
    """JSON form of POST /v1/match: signals to look up, or a URL whose content the server fetches."""

    signals: list[SignalIn] | dict[str, str] | None = None
    url: str | None = Field(
        None, description="Fetched SSRF-safely, hashed and matched; also matched against URL lists."
    )
    lists: list[str] | None = Field(None, description="Only these lists (default: every enabled list).")
    include_low_quality: bool | None = None

    _signals_cap = field_validator("signals", mode="before")(_few_enough)

    @model_validator(mode="after")
    def one_source(self) -> MatchRequest:
        if not self.signals and not self.url:
            raise ValueError("give signals or a url (or upload a file as multipart field 'file')")
        return self

    def signal_pairs(self) -> list[tuple[str, str]]:
        if self.signals is None:
            return []
        if isinstance(self.signals, dict):
            return list(self.signals.items())
        return [(s.signal_type, s.value) for s in self.signals]


class BatchRequest(BaseModel):
    signals: list[SignalIn]
    lists: list[str] | None = None

    _signals_cap = field_validator("signals", mode="before")(_few_enough)


class MatchOut(BaseModel):
    match_id: str
    matches: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    shadow_actions: list[dict[str, Any]] = []
    allowlisted: bool = False
    suppressed_lists: list[str] = Field(
        default_factory=list, description="Lists whose matches an allowlist covered: no action is taken on them."
    )
    reasons: list[str] = []
    signals: dict[str, Any] | None = None


class BatchItem(BaseModel):
    signal_type: str
    value: str
    matches: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    error: str | None = None


class BatchOut(BaseModel):
    results: list[BatchItem]


class UrlMatchIn(BaseModel):
    url: str
    lists: list[str] | None = None


class TextMatchIn(BaseModel):
    text: str = Field(max_length=1_000_000)
    lists: list[str] | None = None


class SimpleMatches(BaseModel):
    matches: list[dict[str, Any]]


class PolicyIn(BaseModel):
    conditions: dict[str, Any] = Field(default_factory=dict)
    actions: list[dict[str, Any]]
    position: int = 100
    enabled: bool = True
    shadow: bool = False
    stop: bool = False
    description: str = ""


class PolicyOut(PolicyIn):
    name: str


class WebhookIn(BaseModel):
    name: str
    url: str
    secret: str | None = Field(None, description="Generated when absent; returned once.")
    max_attempts: int = 8


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    url: str
    enabled: bool
    max_attempts: int
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    webhook_id: int
    match_id: str | None
    state: str
    attempts: int
    last_status: int | None
    last_error: str
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class QuarantineOut(BaseModel):
    entry_id: int
    list: str
    since: datetime
    reason: str
    everyone: bool = Field(description="Paused for every caller (an admin's decision), not only those in the spike.")
    applies_to_you: bool = Field(description="Whether this entry's actions are paused for the caller asking.")
    callers: builtins.list[str] | None = Field(
        None, description="The callers whose matches made the spike (admins only)."
    )
