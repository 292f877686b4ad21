"""Project VIC VICS JSON (OData), streamed with ijson so a multi-gigabyte file never sits in memory.

Two shapes are read, in the 1.x (``"odata.metadata"``) and 2.0 (``"@odata.context"``) spellings:

* a case: ``{"value": [{"CaseID": …, "Media": [{…}, …]}]}``;
* a hash set: ``{"value": [{"MediaID": …, "MD5": …}, …]}`` (the Media items directly under value).

Each Media item yields one record per hash it carries: ``MD5``, ``SHA1``, ``PhotoDNA`` (also found as
``AlternativeHashes: [{"HashName": "PhotoDNA", "HashValue": …}]``). ``MediaID`` becomes the
external id. Positions are Media item numbers (1-based, counted across the file), not lines:
ijson does not report where in the file an item starts.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, BinaryIO, Final

import ijson

from seawall.lists.formats.base import ListFormat, Prefixed, UnsupportedRecord, err, ok
from seawall.lists.records import EntryRecord, ParsedLine

#: Project VIC's US categories (the scheme of the US data model and of the 1.x models), as Seawall
#: category names. Source: the Project VIC US tag set in Autopsy (ImageGalleryService.java):
#: 0 Non-Pertinent, 1 Child Abuse Material (CAM), 2 Child Exploitive (Non-CAM) / Age Difficult,
#: 3 CGI/Animation - Child Exploitive, 4 Comparison Images. A null Category is uncategorised.
VIC_US_CATEGORIES: Final = {0: "non-pertinent", 1: "csam", 2: "exploitive", 3: "cgi", 4: "comparison"}
#: UK legal categories A, B and C are all indecent images of children: Project VIC category 1.
_UK_TO_VIC: Final = {"a": 1, "b": 1, "c": 1}
_CATEGORY_TO_VIC: Final = {name: num for num, name in VIC_US_CATEGORIES.items()} | _UK_TO_VIC

#: Media fields kept in ``extra`` (as text) so an export gives them back.
KEPT_FIELDS: Final = (
    "Category",
    "Series",
    "Tags",
    "VictimIdentified",
    "OffenderIdentified",
    "IsDistributed",
    "MediaSize",
    "DateUpdated",
)
EXTRA_PREFIX: Final = "vics."
CONTEXT_KEY: Final = "vics.context"
WRITE_CONTEXT: Final = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/US/$metadata#Media"
_HASH_FIELDS: Final = (("md5", "MD5"), ("sha1", "SHA1"), ("photodna", "PhotoDNA"))
_COUNTRY = re.compile(r"DataModels/[\d.]+\.xml/([A-Za-z]+)/", re.IGNORECASE)
_NAME_CATEGORY = re.compile(r"vics-([a-z]+):(-?[0-9]+)")
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")


def _country(context: str | None) -> str:
    """The national scheme an OData context names (US when it names none)."""
    match = _COUNTRY.search(context or "")
    return match.group(1).upper() if match else "US"


def _integer(text: str | None) -> int | None:
    """``text`` as a whole number when it is one written plainly (no sign of +, no leading zeros,
    ASCII digits), so that writing the number gives the same text back; None otherwise."""
    return int(text) if text is not None and _INTEGER.fullmatch(text) else None


def map_category(raw: Any, context: str | None) -> str | None:
    """The Seawall category for a VIC ``Category`` under the file's OData context. Numbers of a
    national scheme other than the US one (the context names it, e.g. ``…/2.0.xml/UK/…``) are kept
    as ``vics-<country>:<n>``, since their meaning is that country's. ValueError for anything but a
    whole number (``true`` or ``1.5`` would not be written back as they were read)."""
    if raw is None or raw == "":
        return None
    number = None if isinstance(raw, bool) else _integer(_text(raw).strip())
    if number is None:
        raise ValueError(f"not a whole number: {raw!r}")
    country = _country(context)
    if country == "US" and number in VIC_US_CATEGORIES:
        return VIC_US_CATEGORIES[number]
    return f"vics-{country.lower()}:{number}"


def vic_category(rec: EntryRecord, country: str = "US") -> int | None:
    """The VIC number to write for a record in a file of ``country``'s scheme: the one it was read
    with (when read under the same scheme), else mapped from its category. A category of another
    national scheme is refused: its number means something else in this file."""
    kept = _integer(rec.extra.get(EXTRA_PREFIX + "Category"))
    if kept is not None and _country(rec.extra.get(CONTEXT_KEY)) == country:
        return kept
    cat = (rec.category or "").strip().lower()
    if not cat:
        return None
    if country == "US" and cat in _CATEGORY_TO_VIC:
        return _CATEGORY_TO_VIC[cat]
    match = _NAME_CATEGORY.fullmatch(cat)
    if match and match.group(1).upper() == country:
        return int(match.group(2))
    raise UnsupportedRecord(f"vics: no Project VIC category of the {country} scheme for {rec.category!r}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # A whole number as digits, unless huge (1e999999999 as digits would take a gigabyte).
        whole = value.is_finite() and value == value.to_integral_value() and value.adjusted() < 64
        return str(int(value)) if whole else str(value)
    return str(value)


#: How much of the file is parsed first to tell a case from a hash set.
PROBE_BYTES: Final = 1 << 16
_ITEMS: Final = {"case": "value.item.Media.item", "set": "value.item"}


def _probe(head: bytes) -> tuple[str | None, str | None]:
    """("case" or "set" or None, the OData context) from the first bytes of a VICS file."""
    context: str | None = None
    first = True
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(head)):
            if first and event != "start_map":
                return None, None
            first = False
            if prefix in ("odata.metadata", "@odata.context") and event == "string":
                context = value
            elif prefix == "value.item.Media" and event == "start_array":
                return "case", context
            elif prefix == "value.item" and event == "end_map":
                return "set", context
            elif prefix == "value" and event == "end_array":
                return None, context  # empty, or no Media: the event reader says which
    except (ijson.JSONError, UnicodeDecodeError):  # the event reader names the problem
        pass
    return None, context


def _json_error(complete: int, exc: Exception) -> ParsedLine:
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else "invalid JSON"
    where = complete + 1
    return err(where, f"Media item #{where}: invalid JSON after {complete} complete item(s): {reason}")


class VicsFormat(ListFormat):
    name = "vics"
    description = "Project VIC VICS 1.x/2.0 JSON (OData value[].Media[] or value[] of Media)"
    extensions = (".json",)

    def sniff(self, head: bytes, filename: str | None) -> bool:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not text.startswith(b"{"):
            return False
        lowered = text[:8192].lower()
        if b"projectvic" in lowered or b"vicsdatamodel" in lowered:
            return True
        return (b'"odata.metadata"' in lowered or b'"@odata.context"' in lowered) and b'"md5"' in lowered

    def read(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        bom = stream.read(3)
        head = (b"" if bom == b"\xef\xbb\xbf" else bom) + stream.read(PROBE_BYTES)
        shape, context = _probe(head)
        if shape is None:  # odd or broken start: the careful event-by-event reader explains it
            yield from self._read_events(Prefixed(head, stream))
            return
        # Fast path: the C parser builds each Media item itself.
        number = 0
        try:
            for number, obj in enumerate(ijson.items(Prefixed(head, stream), _ITEMS[shape]), start=1):
                if isinstance(obj, dict):
                    yield from self._records(number, obj, context)
                else:
                    yield err(number, f"Media item #{number}: not a JSON object")
        except (ijson.JSONError, UnicodeDecodeError) as exc:  # ijson decodes strings as UTF-8 itself
            yield _json_error(number, exc)

    def _read_events(self, stream: Prefixed) -> Iterator[ParsedLine]:
        context: str | None = None
        item = 0  # Media items seen, 1-based once started
        top: Any = None  # builder of the current value[] item
        media: Any = None  # builder of the current Media[] item within a case
        in_case_media = False
        saw_value = False
        try:
            for prefix, event, value in ijson.parse(stream):
                if prefix == "" and event != "map_key" and event not in ("start_map", "end_map"):
                    yield err(1, "not a VICS file: the top level is not a JSON object")
                    return
                if prefix in ("odata.metadata", "@odata.context") and event == "string":
                    context = value
                    continue
                if prefix == "value":
                    if event == "start_array":
                        saw_value = True
                    elif event not in ("end_array",):
                        yield err(1, "not a VICS file: value is not an array")
                        return
                    continue
                if not prefix.startswith("value.item"):
                    continue
                if prefix == "value.item" and event == "start_map":
                    top, in_case_media = ijson.ObjectBuilder(), False
                    top.event(event, value)
                    continue
                if prefix == "value.item" and event == "map_key" and value == "Media":
                    in_case_media = True
                    continue
                if prefix == "value.item.Media" or prefix.startswith("value.item.Media."):
                    if not in_case_media:  # e.g. a "MediaFiles" key: belongs to the item itself
                        top.event(event, value)
                        continue
                    if prefix == "value.item.Media":
                        if event not in ("start_array", "end_array"):
                            item += 1
                            yield err(item, f"Media item #{item}: Media is not an array")
                        continue
                    if prefix == "value.item.Media.item" and event == "start_map":
                        media = ijson.ObjectBuilder()
                    if media is None:  # a Media entry that is not an object: one error, at its start
                        if prefix == "value.item.Media.item" and event not in ("end_array", "end_map"):
                            item += 1
                            yield err(item, f"Media item #{item}: not a JSON object")
                        continue
                    media.event(event, value)
                    if prefix == "value.item.Media.item" and event == "end_map":
                        item += 1
                        yield from self._records(item, media.value, context)
                        media = None
                    continue
                if prefix == "value.item" and event == "end_map":
                    top.event(event, value)
                    if not in_case_media:  # a hash set: the value[] item is the Media item
                        item += 1
                        yield from self._records(item, top.value, context)
                    top = None
                    continue
                if top is None:
                    if prefix == "value.item" and event not in ("end_array", "end_map"):
                        item += 1
                        yield err(item, f"Media item #{item}: not a JSON object")
                    continue
                top.event(event, value)
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            yield _json_error(item, exc)
            return
        if not saw_value:
            yield err(1, "not a VICS file: no top-level value array")

    def _records(self, number: int, obj: dict[str, Any], context: str | None) -> Iterator[ParsedLine]:
        where = f"Media item #{number}"
        fields = {k.lower(): v for k, v in obj.items()}
        hashes: list[tuple[str, str]] = []
        for signal_type, key in _HASH_FIELDS:
            val = fields.get(key.lower())
            if val is None or val == "":
                continue
            if not isinstance(val, str):
                yield err(number, f"{where}: {key} must be a string")
                return
            hashes.append((signal_type, val.strip()))
        alternatives = fields.get("alternativehashes") or []
        if not isinstance(alternatives, list):
            yield err(number, f"{where}: AlternativeHashes must be a list")
            return
        for alt in alternatives:
            if isinstance(alt, dict) and str(alt.get("HashName", "")).strip().lower() == "photodna":
                val = alt.get("HashValue")
                if isinstance(val, str) and val.strip() and "photodna" not in dict(hashes):
                    hashes.append(("photodna", val.strip()))
        if not hashes:
            yield err(number, f"{where}: no MD5, SHA1 or PhotoDNA hash")
            return
        raw_cat = fields.get("category")
        try:
            category = map_category(raw_cat, context)
        except (TypeError, ValueError):
            yield err(number, f"{where}: Category must be a number, not {raw_cat!r}")
            return
        media_id = fields.get("mediaid")
        comments = fields.get("comments")
        extra = {
            EXTRA_PREFIX + name: _text(fields[name.lower()])
            for name in KEPT_FIELDS
            if fields.get(name.lower()) not in (None, "")
        }
        if context:
            extra[CONTEXT_KEY] = context
        for signal_type, value in hashes:
            yield ok(
                number,
                EntryRecord(
                    signal_type=signal_type,
                    value=value,
                    category=category,
                    external_id=_text(media_id) if media_id not in (None, "") else None,
                    note=_text(comments) if comments not in (None, "") else None,
                    extra=dict(extra),
                ),
            )

    def write(self, records: Iterable[EntryRecord], out: BinaryIO) -> int:
        it = iter(records)
        head = next(it, None)
        # Keep the national scheme a file was read with, so its category numbers keep their meaning.
        context = (head.extra.get(CONTEXT_KEY) if head else None) or WRITE_CONTEXT
        out.write(b'{"@odata.context":' + json.dumps(context).encode() + b',"value":[')
        count = 0
        first = True
        group: dict[str, Any] | None = None
        group_id: str | None = None

        def flush() -> None:
            nonlocal first
            if group is not None:
                out.write((b"\n" if first else b",\n") + json.dumps(group, ensure_ascii=False).encode("utf-8"))
                first = False

        for rec in itertools.chain([head] if head else [], it):
            key = dict((t, k) for t, k in _HASH_FIELDS).get(rec.signal_type)
            if key is None:
                raise UnsupportedRecord(f"vics: carries md5, sha1 and photodna only, not {rec.signal_type}")
            same_item = (
                group is not None and rec.external_id is not None and rec.external_id == group_id and key not in group
            )
            if not same_item:
                flush()
                group, group_id = self._media(rec, _country(context)), rec.external_id
            assert group is not None
            group[key] = rec.value
            count += 1
        flush()
        out.write(b"\n]}\n")
        return count

    @staticmethod
    def _media(rec: EntryRecord, country: str) -> dict[str, Any]:
        """A Media item's fields other than its hashes, in a fixed order. Numbers are written as
        numbers only when that reads back as the same text (``007`` stays a string)."""
        item: dict[str, Any] = {}
        if rec.external_id is not None:
            number = _integer(rec.external_id)
            item["MediaID"] = rec.external_id if number is None else number
        item["Category"] = vic_category(rec, country)
        for name in KEPT_FIELDS[1:]:
            kept = rec.extra.get(EXTRA_PREFIX + name)
            if kept is not None:
                size = _integer(kept) if name == "MediaSize" else None
                item[name] = kept if size is None else size
        if rec.note:
            item["Comments"] = rec.note
        return item
