"""The simple shapes of Meta's ThreatExchange tools (python-threatexchange, which HMA uses).

* ``te``: the file exchange (``threatexchange/exchanges/impl/file_api.py``, ``LocalFileSignalExchangeAPI``):
  one signal per line, either ``<signal_type> <value>`` or, when the collaboration names a signal
  type, the bare value.
* ``te-csv``: ``threatexchange dataset --print-signals --csv``
  (``threatexchange/cli/dataset_cmd.py``): header ``collab,signal_type,signal_str,category,tags``,
  tags separated by spaces, category an opinion class such as ``POSITIVE_CLASS``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Final, cast

from seawall.lists.formats.base import (
    MAX_LINE_BYTES,
    ListFormat,
    Prefixed,
    UnsupportedRecord,
    decode_line,
    err,
    first_text_lines,
    iter_lines,
    ok,
)
from seawall.lists.formats.csv_format import CsvFormat
from seawall.lists.records import EntryRecord, ParsedLine

#: ThreatExchange names whose Seawall type has another name. Its video MD5 is the MD5 of the file's
#: bytes, which is Seawall's ``md5``; the original name is kept in ``extra`` for export.
TE_ALIASES: Final = {"video_md5": "md5"}
TE_NAME_KEY: Final = "te_signal_type"
TE_CATEGORY_KEY: Final = "te_category"
DEFAULT_TE_CATEGORY: Final = "POSITIVE_CLASS"
TE_CSV_HEADER: Final = ("collab", "signal_type", "signal_str", "category", "tags")

_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_LINE = re.compile(r"[a-z][a-z0-9_]* \S+|[0-9a-fA-F]{32}|[0-9a-fA-F]{40}")


def _from_te(name: str) -> tuple[str, dict[str, str]]:
    name = name.strip().lower()
    if name in TE_ALIASES:
        return TE_ALIASES[name], {TE_NAME_KEY: name}
    return name, {}


def _to_te(rec: EntryRecord) -> str:
    return rec.extra.get(TE_NAME_KEY) or rec.signal_type


class ThreatExchangeLinesFormat(ListFormat):
    name = "te"
    description = "ThreatExchange/HMA file exchange: '<signal_type> <value>' per line (or bare values)"
    extensions = (".txt", ".te")

    def sniff(self, head: bytes, filename: str | None) -> bool:
        lines = [ln.strip() for ln in first_text_lines(head) if not ln.lstrip().startswith("#")]
        if not lines:
            return self.has_extension(filename)
        if self.signal_type:  # bare values, one per line
            return all(not any(c.isspace() for c in ln) for ln in lines)
        return all(_LINE.fullmatch(ln) for ln in lines)

    def read(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        for number, raw in iter_lines(stream):
            if raw is None:
                yield err(number, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                text = decode_line(raw, number).strip()
            except ValueError as exc:
                yield err(number, str(exc))
                continue
            if not text or text.startswith("#"):
                continue
            yield self._parse(number, text)

    def _parse(self, number: int, text: str) -> ParsedLine:
        extra: dict[str, str] = {}
        if self.signal_type:  # as the file exchange does: the whole line is the value
            given, value = self.signal_type, text
        else:
            given, sep, value = text.partition(" ")
            value = value.strip()
            if not sep:  # a bare value: only a length that names the type will do
                given, value = "", text
            elif not _TYPE_NAME.fullmatch(given.lower()):
                return err(number, f"expected '<signal_type> <value>', got {text[:80]!r}")
        if given:
            given, extra = _from_te(given)
        if not value:
            return err(number, "missing value")
        if any(c.isspace() for c in value):
            return err(number, "the value contains spaces; expected '<signal_type> <value>'")
        try:
            signal_type = self.resolve_signal_type(given, value)
        except ValueError as exc:
            return err(number, str(exc))
        return ok(number, EntryRecord(signal_type=signal_type, value=value, extra=extra))

    def write(self, records: Iterable[EntryRecord], out: BinaryIO) -> int:
        count = 0
        for rec in records:
            if not rec.value or any(c.isspace() for c in rec.value):
                raise UnsupportedRecord(f"te: value {rec.value[:80]!r} is empty or contains spaces")
            if self.signal_type:
                if rec.signal_type != self.signal_type:
                    raise UnsupportedRecord(f"te: the file holds {self.signal_type} only, not {rec.signal_type}")
                line = rec.value
            else:
                line = f"{_to_te(rec)} {rec.value}"
            out.write(line.encode("utf-8") + b"\n")
            count += 1
        return count


class ThreatExchangeCsvFormat(ListFormat):
    name = "te-csv"
    description = "ThreatExchange CLI dataset CSV: collab,signal_type,signal_str,category,tags"
    extensions = ()

    def sniff(self, head: bytes, filename: str | None) -> bool:
        lines = first_text_lines(head, 1)
        return bool(lines) and tuple(h.strip().lower() for h in lines[0].split(",")) == TE_CSV_HEADER

    def read(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        # Seawall CSV's reader does the RFC 4180 work; this maps the columns.
        header_seen = False
        inner = _relabel(stream)
        for parsed in CsvFormat(signal_type=self.signal_type).read(inner):
            if parsed.error is not None and not header_seen and parsed.line == 1:
                yield err(1, f"expected the header {','.join(TE_CSV_HEADER)}")
                return
            header_seen = True
            if parsed.record is None:
                yield parsed
                continue
            rec = parsed.record
            signal_type, extra = _from_te(rec.signal_type)
            extra[TE_CATEGORY_KEY] = rec.category or ""
            yield ok(
                parsed.line,
                EntryRecord(
                    signal_type=signal_type,
                    value=rec.value,
                    labels=tuple(t for label in rec.labels for t in label.split()),
                    source=rec.source,
                    extra=extra,
                ),
            )

    def write(self, records: Iterable[EntryRecord], out: BinaryIO) -> int:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        try:
            writer = csv.writer(text, lineterminator="\n")
            # With "\n" line ends the csv module leaves a field holding a lone "\r" unquoted, and the
            # reader then sees a line end in it: such rows are written fully quoted.
            quoted = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
            writer.writerow(TE_CSV_HEADER)
            count = 0
            for rec in records:
                for label in rec.labels:
                    if any(c.isspace() for c in label):
                        raise UnsupportedRecord(f"te-csv: tag {label!r} contains a space, which separates tags")
                category = rec.extra.get(TE_CATEGORY_KEY) or DEFAULT_TE_CATEGORY
                row = (rec.source or "", _to_te(rec), rec.value, category, " ".join(rec.labels))
                (quoted if any("\r" in cell for cell in row) else writer).writerow(row)
                count += 1
            text.flush()
            return count
        finally:
            text.detach()


_RENAME: Final = {"collab": "source", "signal_str": "value", "tags": "labels"}


def _relabel(stream: BinaryIO) -> BinaryIO:
    """The te-csv stream with its header renamed to Seawall CSV columns, so one CSV reader serves
    both (collab→source, signal_str→value, tags→labels). Only the first line is touched."""
    line = stream.readline(MAX_LINE_BYTES)
    body = line.rstrip(b"\r\n")
    names = [n.strip().lower() for n in body.decode("utf-8", errors="replace").lstrip("\ufeff").split(",")]
    if tuple(names) != TE_CSV_HEADER:
        return cast(BinaryIO, Prefixed(b"\x00bad header\n", stream))
    return cast(BinaryIO, Prefixed(",".join(_RENAME.get(n, n) for n in names).encode() + line[len(body) :], stream))
