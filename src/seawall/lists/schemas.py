"""Shapes of the lists API."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ListCreate(BaseModel):
    name: str
    kind: str = Field(description="hash, url or keyword")
    description: str = ""
    source: str = ""
    allowlist: bool = Field(False, description="Entries that must never trigger action (admin only).")
    allowlist_scope: list[str] | None = Field(
        None, description="An allowlist's lists: it suppresses matches on these only (null: every list)."
    )
    enabled: bool = True
    thresholds: dict[str, int] = Field(
        default_factory=dict,
        description="Per signal type, e.g. {'pdq': 31}; above the type's safe maximum needs admin.",
    )
    dihedral: bool = True
    regions: bool = Field(
        True, description="Match the regions of uploaded pictures and entries' trimmed hashes (off: admin only)."
    )


class ListUpdate(BaseModel):
    """Only the fields sent change. ``enabled``, ``dihedral``, ``allowlist``, ``allowlist_scope`` and
    thresholds above a signal type's safe maximum change matching for every caller: admin only."""

    enabled: bool | None = None
    description: str | None = None
    thresholds: dict[str, int] | None = None
    dihedral: bool | None = None
    allowlist: bool | None = None
    allowlist_scope: list[str] | None = None
    regions: bool | None = None


class ListOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    uid: str
    kind: str
    description: str
    source: str
    enabled: bool
    allowlist: bool
    allowlist_scope: list[str] | None = None
    thresholds: dict[str, int]
    dihedral: bool
    regions: bool = True
    revision: int
    created_at: datetime
    counts: dict[str, int] | None = None


class EntryIn(BaseModel):
    value: str
    signal_type: str | None = None
    category: str | None = None
    labels: list[str] = Field(default_factory=list)
    source: str | None = None
    external_id: str | None = None
    note: str | None = None
    level: str | None = Field(None, description="URL entries: exact, prefix or domain.")


class EntriesAdd(BaseModel):
    entries: list[EntryIn] = Field(max_length=10_000)
    skip_invalid: bool = False


class EntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    signal_type: str
    value: str
    category: str | None
    labels: list[str]
    source: str
    external_id: str
    level: str | None
    note: str
    status: str
    disabled_until: datetime | None
    added_at: datetime
    added_by: str
    match_count: int
    revision: int


class EntryPage(BaseModel):
    entries: list[EntryOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null on the last page.")


class ImportOut(BaseModel):
    added: int
    updated: int
    unchanged: int
    invalid: int
    errors: list[str]
    revision: int


class RetireIn(BaseModel):
    values: list[str] = Field(default_factory=list, max_length=10_000)
    entry_ids: list[int] = Field(default_factory=list, max_length=10_000)
    signal_type: str | None = None
    status: str = Field("retracted", description="retracted (retire), disabled, or active (restore)")
    reason: str = ""


class StatusOut(BaseModel):
    changed: int
    revision: int


class OpinionIn(BaseModel):
    verdict: str = Field(description="true_positive, false_positive or disputed")
    comment: str = ""


class OpinionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    verdict: str
    actor: str
    comment: str
    created_at: datetime
    entry_status: str


class FeedChange(BaseModel):
    revision: int
    op: str
    changed_at: datetime
    status: str | None
    entry: EntryOut | None
    details: dict[str, Any]


class Feed(BaseModel):
    list: str
    list_uid: str = Field(description="The list's identity: a different uid under the same name is a new list.")
    deleted: bool = Field(False, description="The list was deleted: its last changes retract every entry.")
    kind: str
    since: int
    next_since: int = Field(description="Ask again with ?since= this value.")
    revision: int = Field(description="The list's current revision.")
    more: bool
    changes: builtins.list[FeedChange]  # builtins: the field 'list' shadows the type here
