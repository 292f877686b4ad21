"""JSON Lines: one JSON object per line with the Seawall CSV field names (and ``extra``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Final

from seawall.lists.formats.base import (
    MAX_LINE_BYTES,
    ListFormat,
    check_status_level,
    decode_line,
    err,
    first_text_lines,
    iter_lines,
    ok,
)
from seawall.lists.formats.csv_format import ALL_COLUMNS, split_labels
from seawall.lists.records import EntryRecord, ParsedLine

FIELDS: Final = (*ALL_COLUMNS, "extra")
_TEXT_FIELDS: Final = ("signal_type", "value", "category", "source", "external_id", "note", "status", "level")


class JsonLinesFormat(ListFormat):
    name = "jsonl"
    description = "JSON Lines: one object per line with the CSV field names; labels a list; extra an object"
    extensions = (".jsonl", ".ndjson", ".jsonlines")

    def sniff(self, head: bytes, filename: str | None) -> bool:
        lines = first_text_lines(head, 1)
        if not lines:
            return self.has_extension(filename)
        try:
            obj = json.loads(lines[0])
        except (ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and "value" in obj and set(obj) <= set(FIELDS)

    def read(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        for number, raw in iter_lines(stream):
            if raw is None:
                yield err(number, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                text = decode_line(raw, number)
            except ValueError as exc:
                yield err(number, str(exc))
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                yield err(number, f"invalid JSON ({exc}); is the line cut short?")
                continue
            except RecursionError:
                yield err(number, "invalid JSON: nested too deeply")
                continue
            yield self._record(number, obj)

    def _record(self, line: int, obj: Any) -> ParsedLine:
        if not isinstance(obj, dict):
            return err(line, f"expected a JSON object, got {type(obj).__name__}")
        unknown = sorted(set(obj) - set(FIELDS))
        if unknown:
            return err(line, f"unknown field(s) {', '.join(unknown)}")
        for key in _TEXT_FIELDS:
            if obj.get(key) is not None and not isinstance(obj[key], str):
                return err(line, f"{key} must be a string or null, not {type(obj[key]).__name__}")
        value = (obj.get("value") or "").strip()
        if not value:
            return err(line, "missing or empty value")
        labels_in = obj.get("labels")
        if labels_in is None:
            labels: tuple[str, ...] = ()
        elif isinstance(labels_in, str):
            labels = split_labels(labels_in)
        elif isinstance(labels_in, list) and all(isinstance(x, str) for x in labels_in):
            labels = tuple(x.strip() for x in labels_in if x.strip())
        else:
            return err(line, "labels must be a list of strings")
        extra_in = obj.get("extra") or {}
        if not (isinstance(extra_in, dict) and all(isinstance(v, str) for v in extra_in.values())):
            return err(line, "extra must be an object of strings")
        try:
            signal_type = self.resolve_signal_type(obj.get("signal_type"), value)
            status, level = check_status_level(obj.get("status"), obj.get("level"))
        except ValueError as exc:
            return err(line, str(exc))
        return ok(
            line,
            EntryRecord(
                signal_type=signal_type,
                value=value,
                category=(obj.get("category") or "").strip() or None,
                labels=labels,
                source=(obj.get("source") or "").strip() or None,
                external_id=(obj.get("external_id") or "").strip() or None,
                note=obj.get("note") or None,
                status=status,
                level=level,
                extra=dict(extra_in),
            ),
        )

    def write(self, records: Iterable[EntryRecord], out: BinaryIO) -> int:
        count = 0
        for rec in records:
            obj: dict[str, Any] = {"signal_type": rec.signal_type, "value": rec.value}
            # Only fields that carry something: short lines, and nothing that reads back differently.
            for key in ("category", "source", "external_id", "note", "level"):
                if getattr(rec, key):
                    obj[key] = getattr(rec, key)
            if rec.labels:
                obj["labels"] = list(rec.labels)
            if rec.status != "active":
                obj["status"] = rec.status
            if rec.extra:
                obj["extra"] = dict(sorted(rec.extra.items()))
            out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
            count += 1
        return count
