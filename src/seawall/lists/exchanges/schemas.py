"""Shapes of the exchanges API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ExchangeCreate(BaseModel):
    name: str
    type: str = Field(description="file, seawall, ncmec, stopncii, or a plugin's name")
    list: str = Field(description="The list the exchange feeds.")
    config: dict[str, Any] = Field(default_factory=dict)
    interval_minutes: int = 60
    enabled: bool = True


class ExchangeUpdate(BaseModel):
    config: dict[str, Any] | None = Field(None, description="Keys to change; a secret sent as its mask is kept.")
    interval_minutes: int | None = None
    enabled: bool | None = None
    reset_checkpoint: bool = False


class ExchangeOut(BaseModel):
    name: str
    type: str
    list: str
    enabled: bool
    interval_minutes: int
    config: dict[str, Any] = Field(description="Secrets masked.")
    checkpoint: dict[str, Any] | None
    running: bool
    due: bool
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str
    last_added: int
    last_updated: int
    last_retired: int


class SyncOut(BaseModel):
    exchange: str
    ok: bool
    queued: bool = False
    added: int = 0
    updated: int = 0
    retired: int = 0
    invalid: int = 0
    batches: int = 0
    error: str | None = None
    feedback_sent: int = 0
    feedback_skipped: int = 0
