"""The list-format interface and the small helpers every reader shares.

Readers check syntax only and never hold the whole file: they yield one :class:`ParsedLine` per
record-bearing line, with a :class:`FormatError` for a bad line, and carry on. Values are checked
by the list service (each signal type validates its own values).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import BinaryIO, ClassVar, Final

from seawall.lists.records import ENTRY_STATUSES, URL_LEVELS, EntryRecord, FormatError, ParsedLine

#: A longer line is refused rather than buffered: a garbled file must not exhaust memory.
MAX_LINE_BYTES: Final = 1 << 20

_HEX = re.compile(r"[0-9a-fA-F]+")
#: Hex lengths that name one signal type. 64 digits are SHA-256 *or* PDQ, so they name none.
_HEX_LENGTHS: Final = {32: "md5", 40: "sha1"}


class UnsupportedRecord(ValueError):
    """A writer cannot carry this record (e.g. a PDQ hash in a VICS file)."""


class ListFormat(ABC):
    """One import/export format. ``signal_type`` is the type assumed for rows that name none."""

    name: ClassVar[str]
    description: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]

    def __init__(self, *, signal_type: str | None = None) -> None:
        self.signal_type = signal_type.strip().lower() if signal_type else None

    @abstractmethod
    def sniff(self, head: bytes, filename: str | None) -> bool:
        """Whether ``head`` (the first few KB) and the file name look like this format."""

    @abstractmethod
    def read(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        """Parse ``stream`` record by record, never loading it whole."""

    @abstractmethod
    def write(self, records: Iterable[EntryRecord], out: BinaryIO) -> int:
        """Write ``records`` in order; returns how many were written."""

    def has_extension(self, filename: str | None) -> bool:
        return bool(filename) and str(filename).lower().endswith(self.extensions)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def resolve_signal_type(self, given: str | None, value: str) -> str:
        """The row's signal type: as given, else the format's option, else told by the value's length.

        Raises ValueError when nothing tells (a 64-hex value is SHA-256 or PDQ: never guessed)."""
        if given and given.strip():
            return given.strip().lower()
        if self.signal_type:
            return self.signal_type
        text = value.strip()
        if _HEX.fullmatch(text) and len(text) in _HEX_LENGTHS:
            return _HEX_LENGTHS[len(text)]
        if _HEX.fullmatch(text) and len(text) == 64:
            raise ValueError("no signal type: a 64-hex value may be sha256 or pdq; give the signal type")
        raise ValueError("no signal type given and the value does not tell it; give the signal type")


def err(line: int, reason: str) -> ParsedLine:
    return ParsedLine(line, error=FormatError(line, reason))


def ok(line: int, record: EntryRecord) -> ParsedLine:
    return ParsedLine(line, record=record)


def check_status_level(status: str | None, level: str | None) -> tuple[str, str | None]:
    """Normalised (status, level) or ValueError; these are format fields the service trusts."""
    st = (status or "").strip().lower() or "active"
    if st not in ENTRY_STATUSES:
        raise ValueError(f"status must be one of {', '.join(ENTRY_STATUSES)}, not {status!r}")
    lv = (level or "").strip().lower() or None
    if lv is not None and lv not in URL_LEVELS:
        raise ValueError(f"level must be one of {', '.join(URL_LEVELS)}, not {level!r}")
    return st, lv


def iter_lines(stream: BinaryIO, *, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line number, line without its newline) for each physical line; ``None`` for a line
    over ``max_bytes``, which is skipped to its end without buffering it."""
    number = 0
    while True:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):  # drain the rest of the long line
                chunk = stream.readline(max_bytes)
            yield number, None
            continue
        yield number, chunk.rstrip(b"\r\n")


def decode_line(raw: bytes, number: int) -> str:
    """UTF-8 text of one line (a BOM on line 1 dropped); ValueError naming the byte offset."""
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at byte {exc.start + 1} of the line") from None


class Prefixed:
    """A byte reader that gives ``head`` and then the rest of ``stream``: for readers that look at
    (or rewrite) the start of a file before handing it on."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:  # ijson probes with read(0) to tell bytes from text
            return b""
        if self._head:
            head, self._head = self._head, b""
            if size is None or size < 0:
                return head + self._stream.read()
            if len(head) > size:
                head, self._head = head[:size], head[size:]
                return head
            return head + self._stream.read(size - len(head))
        return self._stream.read(-1 if size is None else size)


def first_text_lines(head: bytes, limit: int = 20) -> list[str]:
    """Up to ``limit`` complete, non-blank lines of ``head`` (the last one may be cut, so it is
    used only when ``head`` ends with a newline)."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    text = head.decode("utf-8", errors="replace")
    parts = text.split("\n")
    if not text.endswith("\n") and len(parts) > 1:
        parts = parts[:-1]
    return [p.strip("\r") for p in parts if p.strip()][:limit]
