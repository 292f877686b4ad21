"""Import and export formats for lists: streaming readers and writers, and telling a file's format.

Each format is one small :class:`ListFormat` class. Readers check syntax only and yield a
:class:`~seawall.lists.records.ParsedLine` per record (an error naming the line for a bad one);
the list service validates values by signal type. See ``docs/formats.md``.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Final

from seawall.lists.formats.base import MAX_LINE_BYTES, ListFormat, UnsupportedRecord
from seawall.lists.formats.csv_format import CsvFormat
from seawall.lists.formats.jsonl import JsonLinesFormat
from seawall.lists.formats.threatexchange import ThreatExchangeCsvFormat, ThreatExchangeLinesFormat
from seawall.lists.formats.vics import VicsFormat

__all__ = [
    "HEAD_BYTES",
    "MAX_LINE_BYTES",
    "ListFormat",
    "UnsupportedRecord",
    "format_names",
    "get_format",
    "infer_format",
    "list_formats",
]

#: How much of a file :func:`infer_format` wants to see.
HEAD_BYTES: Final = 8192

_FORMATS: Final[tuple[type[ListFormat], ...]] = (
    CsvFormat,
    JsonLinesFormat,
    VicsFormat,
    ThreatExchangeLinesFormat,
    ThreatExchangeCsvFormat,
)
#: Other names people use for a format.
_ALIASES: Final = {"json": "jsonl", "ndjson": "jsonl", "hma": "te", "threatexchange": "te", "vic": "vics"}


def format_names() -> list[str]:
    return [cls.name for cls in _FORMATS]


def list_formats() -> list[ListFormat]:
    """One instance of every format, in a fixed order."""
    return [cls() for cls in _FORMATS]


def get_format(name: str, *, signal_type: str | None = None) -> ListFormat:
    """The format called ``name`` (or an alias); ``signal_type`` is assumed for rows naming none.
    ValueError listing the known names otherwise."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    for cls in _FORMATS:
        if cls.name == key:
            return cls(signal_type=signal_type)
    raise ValueError(f"unknown list format {name!r} (known: {', '.join(format_names())})")


def infer_format(head: bytes, filename: str | None, *, signal_type: str | None = None) -> ListFormat:
    """The format of a file from its first bytes (ideally :data:`HEAD_BYTES`) and its name.

    Content decides; the extension only breaks a tie or speaks for an empty head. ValueError
    when no format or more than one fits."""
    found = [cls for cls in _FORMATS if cls(signal_type=signal_type).sniff(head, filename)]
    if len(found) > 1:
        by_ext = [cls for cls in found if cls(signal_type=signal_type).has_extension(filename)]
        found = by_ext if len(by_ext) == 1 else found
    if len(found) == 1:
        return found[0](signal_type=signal_type)
    label = PurePath(filename).name if filename else "the input"
    raise ValueError(f"cannot tell the format of {label}; use --format (one of {', '.join(format_names())})")
