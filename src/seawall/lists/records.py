"""The shape of one list entry as it travels through files, feeds and exchanges."""

from __future__ import annotations

from dataclasses import dataclass, field

ENTRY_STATUSES = ("active", "disabled", "retracted")
URL_LEVELS = ("exact", "prefix", "domain")


@dataclass(frozen=True)
class EntryRecord:
    """One entry outside the database. ``value`` is as read; the list service validates it."""

    signal_type: str
    value: str
    category: str | None = None
    labels: tuple[str, ...] = ()
    source: str | None = None
    external_id: str | None = None
    note: str | None = None
    status: str = "active"
    level: str | None = None  # URL entries: exact, prefix or domain
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # format-specific fields kept for export
    # PDQ entries added from media: the PDQ of the picture with its borders trimmed, and that
    # box (x, y, width, height); None leaves what the entry has (docs/regions.md).
    trimmed_value: str | None = None
    trimmed_box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class FormatError:
    """A line of an import file that could not be read; ``line`` is 1-based."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class ParsedLine:
    """What a reader yields for each record-bearing line: the record, or why it failed."""

    line: int
    record: EntryRecord | None = None
    error: FormatError | None = None
