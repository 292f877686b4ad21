"""Seawall CSV: one entry per record, RFC 4180 quoting, labels separated by ``;``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Final

from seawall.lists.formats.base import (
    MAX_LINE_BYTES,
    ListFormat,
    check_status_level,
    err,
    first_text_lines,
)
from seawall.lists.records import EntryRecord, ParsedLine

COLUMNS: Final = ("signal_type", "value", "category", "labels", "source", "external_id", "note")
OPTIONAL_COLUMNS: Final = ("status", "level")
ALL_COLUMNS: Final = COLUMNS + OPTIONAL_COLUMNS
REQUIRED: Final = ("value",)
LABEL_SEP: Final = ";"


def split_labels(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(LABEL_SEP) if p.strip())


def join_labels(labels: Iterable[str]) -> str:
    items = list(labels)
    for label in items:
        if LABEL_SEP in label:
            raise ValueError(f"label {label!r} contains {LABEL_SEP!r}, which separates labels")
    return LABEL_SEP.join(items)


class _LineTooLong(Exception):
    pass


class _LineCap(io.RawIOBase):
    """``stream`` as raw bytes that refuse a line over :data:`MAX_LINE_BYTES`, so the C-speed text
    and CSV layers above it never buffer a garbled file's endless line."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self._run = 0  # bytes since the last newline
        self.ascii = True  # all bytes so far ASCII: rows then need no UTF-8 check

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        newline = data.rfind(b"\n")
        self._run = self._run + len(data) if newline < 0 else len(data) - newline - 1
        if self._run > MAX_LINE_BYTES:
            raise _LineTooLong
        if self.ascii and not data.isascii():
            self.ascii = False
        buffer[: len(data)] = data
        return len(data)


def _is_utf8(row: list[str]) -> bool:
    """False when decoding had to escape bytes (``surrogateescape``), i.e. the row was not UTF-8."""
    text = "".join(row)
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class CsvFormat(ListFormat):
    name = "csv"
    description = "Seawall CSV: signal_type,value,category,labels,source,external_id,note[,status,level]"
    extensions = (".csv",)

    def sniff(self, head: bytes, filename: str | None) -> bool:
        lines = first_text_lines(head, 1)
        if not lines:
            return self.has_extension(filename)
        try:
            header = next(csv.reader([lines[0]]))
        except csv.Error:
            return False
        names = [h.strip().lower() for h in header]
        return "value" in names and set(names) <= set(ALL_COLUMNS)

    def read(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        raw = _LineCap(stream)
        text = io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, strict=True)
        header: list[str] | None = None
        columns: list[int | None] = []
        in_order = False
        start = 1  # physical line where the next record starts
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except _LineTooLong:
                yield err(reader.line_num + 1, f"line longer than {MAX_LINE_BYTES} bytes; is this a CSV file?")
                return
            except csv.Error as exc:
                yield err(start, f"bad CSV: {exc}")
                if header is None:
                    return
                start = reader.line_num + 1
                continue
            first, start = start, reader.line_num + 1
            if not raw.ascii and not _is_utf8(row):
                yield err(first, "invalid UTF-8")
                if header is None:
                    return
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [h.strip().lower() for h in row]
                problem = self._check_header(header)
                if problem:
                    yield err(first, problem)
                    return
                columns = [header.index(c) if c in header else None for c in ALL_COLUMNS]
                in_order = header == list(ALL_COLUMNS)  # as Seawall writes it: rows need no reordering
                continue
            if len(row) != len(header):
                yield err(first, f"expected {len(header)} fields, got {len(row)}")
                continue
            yield self._record(first, row if in_order else [row[i] if i is not None else "" for i in columns])

    @staticmethod
    def _check_header(header: list[str]) -> str | None:
        unknown = [h for h in header if h not in ALL_COLUMNS]
        if unknown:
            return f"unknown column(s) {', '.join(unknown)}; columns are {','.join(ALL_COLUMNS)}"
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            return f"missing column(s) {', '.join(missing)}"
        if len(set(header)) != len(header):
            return "a column is named twice"
        return None

    def _record(self, line: int, fields: list[str]) -> ParsedLine:
        """``fields`` in :data:`ALL_COLUMNS` order ("" for an absent column)."""
        signal_type, value, category, labels, source, external_id, note, status, level = fields
        value = value.strip()
        if not value:
            return err(line, "empty value")
        try:
            signal_type = signal_type.strip().lower() or self.resolve_signal_type(None, value)
            if level or (status and status != "active"):  # the common case needs no checking
                status, level_or_none = check_status_level(status, level)
            else:
                status, level_or_none = "active", None
        except ValueError as exc:
            return err(line, str(exc))
        return ParsedLine(
            line,
            EntryRecord(
                signal_type,
                value,
                category.strip() or None,
                split_labels(labels) if labels else (),
                source.strip() or None,
                external_id.strip() or None,
                note or None,
                status,
                level_or_none,
            ),
        )

    def write(self, records: Iterable[EntryRecord], out: BinaryIO) -> int:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        try:
            writer = csv.writer(text, lineterminator="\r\n")  # RFC 4180 line ends
            writer.writerow(ALL_COLUMNS)
            count = 0
            for rec in records:
                writer.writerow(
                    (
                        rec.signal_type,
                        rec.value,
                        rec.category or "",
                        join_labels(rec.labels),
                        rec.source or "",
                        rec.external_id or "",
                        rec.note or "",
                        rec.status,
                        rec.level or "",
                    )
                )
                count += 1
            text.flush()
            return count
        finally:
            text.detach()  # leave ``out`` open for the caller
