"""Fuzzing the list import formats (csv, jsonl, vics, te, te-csv), URL and keyword entries, and imports.

A reader yields one ParsedLine per record — the record, or a FormatError naming the line — and
never raises; an exporter writes what its reader reads back; the list service refuses a bad value
with ListError; an import that fails writes nothing (every table compared before and after, on
SQLite and PostgreSQL). Every value is made up (random hex, benign words, example.* URLs).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from fuzzing import (
    DOCUMENTS,
    database_state,
    deeply_nested,
    documents_and_noise,
    fuzz,
    keywords,
    odd_text,
    signal_values,
    urls,
)
from seawall.auth.permissions import SYSTEM
from seawall.db import make_sessionmaker, transaction
from seawall.lists import service
from seawall.lists.formats import UnsupportedRecord, format_names, get_format, infer_format
from seawall.lists.formats.csv_format import ALL_COLUMNS
from seawall.lists.keywords import check_keyword
from seawall.lists.records import ENTRY_STATUSES, URL_LEVELS, EntryRecord, ParsedLine
from seawall.lists.urls import normalize_entry

# ---- readers never raise ------------------------------------------------------------------------------


def check_parsed(parsed: list[ParsedLine]) -> None:
    """The reader's contract: a record or an error per item, line numbers from 1, records of text."""
    for item in parsed:
        assert isinstance(item, ParsedLine)
        assert (item.record is None) != (item.error is None), item
        assert item.line >= 1
        if item.error is not None:
            assert item.error.line == item.line and item.error.reason.strip(), item
            continue
        rec = item.record
        assert rec is not None
        assert isinstance(rec.signal_type, str) and rec.signal_type, rec
        assert isinstance(rec.value, str) and rec.value, rec
        assert rec.status in ENTRY_STATUSES and (rec.level is None or rec.level in URL_LEVELS), rec
        for text in (rec.category, rec.source, rec.external_id, rec.note):
            assert text is None or isinstance(text, str), rec
        assert all(isinstance(label, str) for label in rec.labels), rec
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in rec.extra.items()), rec


# ---- readers never raise ------------------------------------------------------------------------------


def _format_and_document(name: str) -> st.SearchStrategy[tuple[str, bytes, str | None]]:
    return st.tuples(st.just(name), documents_and_noise(DOCUMENTS[name]), st.sampled_from([None, "md5", "pdq"]))


MD5 = b"d41d8cd98f00b204e9800998ecf8427e"
VICS_HEAD = b'{"@odata.context": "http://vics.example/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/US/$metadata#Media", '


@fuzz(200)
@example(case=("jsonl", deeply_nested(3000).encode(), None))
@example(case=("vics", VICS_HEAD + b'"value": [{"MediaID": 0, "AlternativeHashes": 1, "Category": null}]}', None))
@example(case=("vics", VICS_HEAD + b'"value": [{"MediaID": 0, "MD5": "\xed"}]}', None))
@example(case=("vics", b'{"value": [{"MD5": "a\xed\xa0\x80"}]}', None))
@example(case=("vics", b'{"value": [{"MD5": "%s", "MediaSize": 1e999999999, "Category": 1e9999}]}' % MD5, None))
@example(
    case=("vics", b'{"value": [{"MD5": "%s", "Category": true}, {"MD5": "%s", "Category": 1.5}]}' % (MD5, MD5), None)
)
@given(case=st.sampled_from(format_names()).flatmap(_format_and_document))
def test_a_reader_reports_bad_lines_and_never_raises(case: tuple[str, bytes, str | None]) -> None:
    name, document, signal_type = case
    check_parsed(list(get_format(name, signal_type=signal_type).read(io.BytesIO(document))))


@fuzz(60)
@given(
    name=st.sampled_from(format_names()),
    document=st.sampled_from(format_names()).flatmap(lambda other: documents_and_noise(DOCUMENTS[other])),
)
def test_a_reader_survives_any_document_of_another_format(name: str, document: bytes) -> None:
    check_parsed(list(get_format(name).read(io.BytesIO(document))))


@fuzz(80)
@example(head=deeply_nested(3000).encode(), filename=None)
@given(
    head=st.one_of(*(documents_and_noise(d) for d in DOCUMENTS.values())),
    filename=st.one_of(st.none(), st.sampled_from(["list.csv", "l.jsonl", "x.json", "a.txt", ""]), odd_text),
)
def test_inferring_the_format_gives_a_format_or_a_value_error(head: bytes, filename: str | None) -> None:
    try:
        found = infer_format(head[:8192], filename)
    except ValueError as exc:
        assert "cannot tell the format" in str(exc)
    else:
        assert found.name in format_names()


# ---- what an exporter writes, its reader reads back -----------------------------------------------------

stripped = st.text(min_size=1, max_size=20).map(str.strip).filter(bool)
optional = st.one_of(st.none(), stripped)


@st.composite
def records(draw: st.DrawFn, types: tuple[str, ...] = ("md5", "sha1", "sha256", "pdq")) -> EntryRecord:
    signal_type, value = draw(signal_values.filter(lambda sv: sv[0] in types))
    return EntryRecord(
        signal_type=signal_type,
        value=value,
        category=draw(optional),
        labels=tuple(draw(st.lists(stripped.filter(lambda s: ";" not in s), max_size=3))),
        source=draw(optional),
        external_id=draw(optional),
        note=draw(st.one_of(st.none(), st.text(min_size=1, max_size=30))),
        status=draw(st.sampled_from(ENTRY_STATUSES)),
    )


def write_then_read(name: str, written: list[EntryRecord], **opts: Any) -> list[EntryRecord]:
    out = io.BytesIO()
    fmt = get_format(name, **opts)
    assert fmt.write(written, out) == len(written)
    parsed = list(fmt.read(io.BytesIO(out.getvalue())))
    assert [p.error for p in parsed if p.error is not None] == []
    return [p.record for p in parsed if p.record is not None]


@fuzz(50)
@given(written=st.lists(records(), max_size=5))
def test_csv_and_jsonl_round_trip_every_field(written: list[EntryRecord]) -> None:
    for name in ("csv", "jsonl"):
        assert write_then_read(name, written) == written, name


@fuzz(40)
@example(written=[EntryRecord("md5", "0" * 32, source="a\rb")])
@given(written=st.lists(records(), max_size=5))
def test_te_and_te_csv_round_trip_what_they_carry(written: list[EntryRecord]) -> None:
    assert [(r.signal_type, r.value) for r in write_then_read("te", written)] == [
        (r.signal_type, r.value) for r in written
    ]
    tags = [r for r in written if not any(c.isspace() for label in r.labels for c in label)]
    back = write_then_read("te-csv", tags)
    assert [(r.signal_type, r.value, r.source, r.labels) for r in back] == [
        (r.signal_type, r.value, r.source, r.labels) for r in tags
    ]


vic_categories = st.sampled_from([None, "csam", "exploitive", "cgi", "comparison", "non-pertinent", "vics-uk:7"])


@fuzz(80)
@given(
    written=st.lists(
        st.builds(
            lambda rec, category, media_id: EntryRecord(
                rec.signal_type, rec.value, category, external_id=media_id, note=rec.note
            ),
            records(types=("md5", "sha1")),
            vic_categories,
            st.one_of(st.none(), stripped),
        ),
        max_size=5,
    )
)
def test_vics_round_trips_hashes_ids_categories_and_comments(written: list[EntryRecord]) -> None:
    try:
        back = write_then_read("vics", written)
    except UnsupportedRecord as exc:  # a national category without the file's scheme: refused, clearly
        assert "no Project VIC category" in str(exc)
        return
    assert [(r.signal_type, r.value, r.external_id, r.category, r.note) for r in back] == [
        (r.signal_type, r.value, r.external_id, r.category, r.note) for r in written
    ]


# ---- URL and keyword entries: a value or a ValueError ---------------------------------------------------


@fuzz(120)
@example(value="http://example.com/" + "é" * 2000, level="exact")
@given(value=urls, level=st.sampled_from([*URL_LEVELS, "odd"]))
def test_a_url_entry_is_normalised_or_refused_with_a_value_error(value: str, level: str) -> None:
    try:
        normalised = normalize_entry(value, level)
    except ValueError as exc:
        assert str(exc)
        return
    assert normalize_entry(normalised, level) == normalised  # normal forms are stable


@fuzz(120)
@given(value=keywords)
def test_a_keyword_entry_is_checked_with_a_value_error_only(value: str) -> None:
    try:
        check_keyword(value)
    except ValueError as exc:
        assert str(exc)


# ---- imports through the list service: all or nothing -----------------------------------------------------


@pytest.fixture
def lists(engine: Engine) -> dict[str, str]:
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        for kind in ("hash", "url", "keyword"):
            service.create_list(session, SYSTEM, name=f"fuzz-{kind}", kind=kind)
    return {kind: f"fuzz-{kind}" for kind in ("hash", "url", "keyword")}


@st.composite
def url_or_keyword_documents(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        value = draw(st.one_of(urls, keywords))
        obj: dict[str, Any] = {"signal_type": draw(st.sampled_from(["url", "keyword"])), "value": value}
        if draw(st.booleans()):
            obj["level"] = draw(st.sampled_from(URL_LEVELS))
        for key in ("category", "source", "external_id", "note"):
            if draw(st.integers(0, 2)) == 0:
                obj[key] = draw(st.one_of(odd_text, st.text(min_size=30, max_size=300)))
        lines.append(json.dumps(obj, ensure_ascii=False))
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


@st.composite
def hash_csv_with_long_fields(draw: st.DrawFn) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ALL_COLUMNS)
    for _ in range(draw(st.integers(1, 3))):
        signal_type, value = draw(signal_values)
        long_or_odd = st.one_of(odd_text, st.text(min_size=30, max_size=300), st.just(""))
        writer.writerow([signal_type, value, *(draw(long_or_odd) for _ in range(5)), "active", ""])
    return out.getvalue().encode("utf-8", errors="surrogatepass")


@fuzz(25)
@example(kind="hash", name="csv", document=b"value,category\n" + b"d41d8cd98f00b204e9800998ecf8427e," + b"c" * 41)
@example(kind="hash", name="csv", document=b"value,source\nd41d8cd98f00b204e9800998ecf8427e,a\x00b\n")
@example(kind="url", name="jsonl", document=json.dumps({"value": "http://example.com/" + "é" * 2000}).encode())
@example(
    kind="keyword", name="jsonl", document=json.dumps({"value": "a", "note": "\ud800", "labels": ["a\x00"]}).encode()
)
@example(kind="keyword", name="jsonl", document=json.dumps({"value": "app\x00le"}).encode())
@given(
    kind=st.sampled_from(["hash", "url", "keyword"]),
    name=st.sampled_from(format_names()),
    document=st.one_of(
        *(documents_and_noise(d) for d in DOCUMENTS.values()), url_or_keyword_documents(), hash_csv_with_long_fields()
    ),
)
def test_a_failed_import_writes_nothing_and_a_skipping_one_never_fails(
    engine: Engine, lists: dict[str, str], kind: str, name: str, document: bytes
) -> None:
    factory = make_sessionmaker(engine)
    before = database_state(engine)
    try:
        with transaction(factory) as session:
            hash_list = service.get_list(session, lists[kind])
            service.add_entries(session, SYSTEM, hash_list, get_format(name).read(io.BytesIO(document)))
    except service.InvalidEntries as exc:
        assert exc.errors and exc.errors[0].line >= 1 and exc.errors[0].reason
        assert database_state(engine) == before
    # Skipping bad lines, the same file never fails: the good lines go in, the bad ones are counted.
    with transaction(factory) as session:
        hash_list = service.get_list(session, lists[kind])
        result = service.add_entries(
            session, SYSTEM, hash_list, get_format(name).read(io.BytesIO(document)), skip_invalid=True
        )
    assert result.invalid == 0 or result.errors
