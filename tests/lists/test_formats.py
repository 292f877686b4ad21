"""List import/export formats: round trips, malformed files with line numbers, inference, memory.

Every hash here is random hex made up for the test; nothing comes from a real list.
"""

from __future__ import annotations

import io
import json
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.lists.formats import (
    MAX_LINE_BYTES,
    UnsupportedRecord,
    format_names,
    get_format,
    infer_format,
    list_formats,
)
from seawall.lists.records import EntryRecord, ParsedLine

RNG = random.Random(5)


def hexstr(nbytes: int) -> str:
    return RNG.getrandbits(8 * nbytes).to_bytes(nbytes, "big").hex()


MD5, SHA1, SHA256, PDQ = hexstr(16), hexstr(20), hexstr(32), hexstr(32)
PHOTODNA = "QUJD" * 48  # 192 base64 characters, the length of a PhotoDNA hash


def write(name: str, records: list[EntryRecord], **opts: str) -> bytes:
    out = io.BytesIO()
    assert get_format(name, **opts).write(records, out) == len(records)
    return out.getvalue()


def read(name: str, data: bytes, **opts: str) -> list[ParsedLine]:
    return list(get_format(name, **opts).read(io.BytesIO(data)))


def errors(parsed: list[ParsedLine]) -> list[tuple[int, str]]:
    return [(p.line, p.error.reason) for p in parsed if p.error is not None]


def records(parsed: list[ParsedLine]) -> list[EntryRecord]:
    assert errors(parsed) == []
    return [p.record for p in parsed if p.record is not None]


# ------------------------------------------------------------------ round trips

FULL = [
    EntryRecord("md5", MD5, "A", ("self-generated", "ü-label"), "hotline-x", "ext-1", 'says "hi", twice\nand more'),
    EntryRecord("sha256", SHA256, None, (), None, None, None, "retracted"),
    EntryRecord("pdq", PDQ, "C", ("x",), "partner", "17", None, "disabled"),
    EntryRecord("url", "https://example.com/a?b=1,2", "B", (), None, None, None, "active", "prefix"),
]


@pytest.mark.parametrize("name", ["csv", "jsonl"])
def test_seawall_formats_round_trip_every_field(name: str) -> None:
    data = write(name, FULL)
    assert write(name, FULL) == data  # deterministic
    assert records(read(name, data)) == FULL


def test_jsonl_keeps_extra() -> None:
    rec = EntryRecord("md5", MD5, extra={"b": "2", "a": "1"})
    data = write("jsonl", [rec])
    assert data == b'{"signal_type":"md5","value":"' + MD5.encode() + b'","extra":{"a":"1","b":"2"}}\n'
    assert records(read("jsonl", data))[0].extra == {"a": "1", "b": "2"}


def test_csv_exact_output() -> None:
    data = write("csv", [EntryRecord("md5", MD5, "A", ("p", "q"), note="x,y")])
    assert (
        data
        == (
            "signal_type,value,category,labels,source,external_id,note,status,level\r\n"
            f'md5,{MD5},A,p;q,,,"x,y",active,\r\n'
        ).encode()
    )


def test_te_lines_round_trip() -> None:
    recs = [EntryRecord("pdq", PDQ), EntryRecord("md5", MD5, extra={"te_signal_type": "video_md5"})]
    data = write("te", recs)
    assert data == f"pdq {PDQ}\nvideo_md5 {MD5}\n".encode()
    back = records(read("te", data))
    assert back == recs
    assert back[1].extra == {"te_signal_type": "video_md5"}  # TE's name survives for export


def test_te_bare_values_with_signal_type_option() -> None:
    data = write("te", [EntryRecord("pdq", PDQ), EntryRecord("pdq", SHA256)], signal_type="pdq")
    assert data == f"{PDQ}\n{SHA256}\n".encode()
    assert records(read("te", data, signal_type="pdq")) == [EntryRecord("pdq", PDQ), EntryRecord("pdq", SHA256)]
    with pytest.raises(UnsupportedRecord, match="pdq only"):
        write("te", [EntryRecord("md5", MD5)], signal_type="pdq")


def test_te_csv_round_trip() -> None:
    recs = [
        EntryRecord("pdq", PDQ, labels=("t1", "t2"), source="Sample Data", extra={"te_category": "NEGATIVE_CLASS"}),
        EntryRecord("md5", MD5, source="c2", extra={"te_category": "POSITIVE_CLASS", "te_signal_type": "video_md5"}),
    ]
    data = write("te-csv", recs)
    assert (
        data
        == (
            "collab,signal_type,signal_str,category,tags\n"
            f"Sample Data,pdq,{PDQ},NEGATIVE_CLASS,t1 t2\n"
            f"c2,video_md5,{MD5},POSITIVE_CLASS,\n"
        ).encode()
    )
    back = records(read("te-csv", data))
    assert back == recs
    assert [r.extra for r in back] == [r.extra for r in recs]


def test_vics_round_trip_groups_hashes_of_one_media_item() -> None:
    recs = [
        EntryRecord("md5", MD5.upper(), "csam", external_id="101", note="made up"),
        EntryRecord("sha1", SHA1, "csam", external_id="101", note="made up"),
        EntryRecord("photodna", PHOTODNA, "csam", external_id="101", note="made up"),
        EntryRecord("md5", hexstr(16), "non-pertinent", external_id="102"),
        EntryRecord("sha1", hexstr(20), None),
    ]
    data = write("vics", recs)
    assert write("vics", recs) == data
    doc = json.loads(data)
    assert doc["@odata.context"].endswith("/2.0.xml/US/$metadata#Media")
    assert [sorted(m) for m in doc["value"]] == [
        ["Category", "Comments", "MD5", "MediaID", "PhotoDNA", "SHA1"],
        ["Category", "MD5", "MediaID"],
        ["Category", "SHA1"],
    ]
    assert [m["Category"] for m in doc["value"]] == [1, 0, None]
    parsed = read("vics", data)
    assert [p.line for p in parsed] == [1, 1, 1, 2, 3]  # Media item numbers
    assert records(parsed) == recs
    # A second export of what was imported gives the same file.
    assert write("vics", records(parsed)) == data


def test_vics_writer_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(UnsupportedRecord, match="not pdq"):
        write("vics", [EntryRecord("pdq", PDQ)])
    with pytest.raises(UnsupportedRecord, match="no Project VIC category"):
        write("vics", [EntryRecord("md5", MD5, "weird")])


# ------------------------------------------------------------------ VICS shapes and categories


VIC13_CASES = "http://vics.example/ICMEC/ProjectVic/DataModels/1.3.xml#Cases"


def vics_case(media: list[object], context: str = VIC13_CASES) -> bytes:
    return json.dumps(
        {"odata.metadata": context, "value": [{"CaseID": "c-1", "MediaFiles": [], "Media": media, "CaseNumber": "9"}]},
        indent=2,
    ).encode()


def test_vics_case_shape_categories_and_alternative_hashes() -> None:
    md5s = [hexstr(16).upper() for _ in range(5)]
    media = [
        {"MediaID": i, "Category": i, "MD5": md5s[i], "VictimIdentified": "true", "MediaSize": 2835} for i in range(5)
    ]
    media[1]["AlternativeHashes"] = [{"HashName": "PhotoDNA", "HashValue": PHOTODNA}]
    recs = records(read("vics", vics_case(media)))
    assert [(r.signal_type, r.category, r.external_id) for r in recs] == [
        ("md5", "non-pertinent", "0"),
        ("md5", "csam", "1"),
        ("photodna", "csam", "1"),
        ("md5", "exploitive", "2"),
        ("md5", "cgi", "3"),
        ("md5", "comparison", "4"),
    ]
    assert recs[0].value == md5s[0]  # as read: the service normalises
    assert recs[0].extra["vics.VictimIdentified"] == "true"
    assert recs[0].extra["vics.MediaSize"] == "2835"


def test_vics_other_national_scheme_keeps_its_numbers() -> None:
    uk = "http://vics.example/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/UK/$metadata#Cases"
    recs = records(read("vics", vics_case([{"MediaID": 1, "Category": 2, "MD5": MD5}], uk)))
    assert recs[0].category == "vics-uk:2"
    out = json.loads(write("vics", recs))
    assert out["@odata.context"] == uk and out["value"][0]["Category"] == 2


def test_vics_hash_set_shape_with_bom() -> None:
    doc = {"@odata.context": "x/2.0.xml/US/$metadata#Media", "value": [{"MediaID": 5, "Category": 1, "SHA1": SHA1}]}
    recs = records(read("vics", b"\xef\xbb\xbf" + json.dumps(doc).encode()))
    assert [(r.signal_type, r.value, r.category, r.external_id) for r in recs] == [("sha1", SHA1, "csam", "5")]


def test_vics_bad_items_and_truncation() -> None:
    media: list[object] = [
        {"MediaID": 1, "MD5": MD5},
        {"MediaID": 2, "Category": "one", "MD5": MD5},
        {"MediaID": 3},
        7,
        {"MediaID": 5, "MD5": 12},
        {"MediaID": 6, "SHA1": SHA1},
    ]
    data = vics_case(media)
    parsed = read("vics", data)
    assert errors(parsed) == [
        (2, "Media item #2: Category must be a number, not 'one'"),
        (3, "Media item #3: no MD5, SHA1 or PhotoDNA hash"),
        (4, "Media item #4: not a JSON object"),
        (5, "Media item #5: MD5 must be a string"),
    ]
    assert [p.record.external_id for p in parsed if p.record] == ["1", "6"]
    cut = read("vics", data[: data.index(b'"MediaID": 3')])
    assert [p.record.external_id for p in cut if p.record] == ["1"]
    assert errors(cut)[0] == (2, "Media item #2: Category must be a number, not 'one'")
    assert errors(cut)[1][0] == 3 and "invalid JSON after 2 complete item(s)" in errors(cut)[1][1]
    assert len(errors(cut)) == 2
    assert errors(read("vics", b'{"odata.metadata": "x", "rows": []}')) == [
        (1, "not a VICS file: no top-level value array")
    ]
    assert errors(read("vics", b"[]")) == [(1, "not a VICS file: the top level is not a JSON object")]
    bad_utf8 = read("vics", b'{"value": [{"MD5": "\xff\xfe"}]}')
    assert errors(bad_utf8)[0][0] == 1 and "UTF8" in errors(bad_utf8)[0][1]


# ------------------------------------------------------------------ malformed line files


def test_csv_malformed_lines_are_named_and_reading_goes_on() -> None:
    data = (
        b"\xef\xbb\xbfsignal_type,value,category\r\n"
        + f"md5,{MD5},A\r\n".encode()
        + b"\r\n"
        + f'sha256,{SHA256},"two\nlines"\r\n'.encode()
        + f",{SHA256},B\r\n".encode()  # 64 hex and no type: sha256 or pdq?
        + b"md5,\xff\xfe,B\r\n"
        + b"md5,onlytwo\r\n"
        + b'md5,"bad"x,B\r\n'
        + f",{SHA1},C\r\n".encode()  # 40 hex: sha1
        + b"md5,,C\r\n"
        + b'md5,"unterminated,B\r\n'
    )
    parsed = read("csv", data)
    assert errors(parsed) == [
        (6, "no signal type: a 64-hex value may be sha256 or pdq; give the signal type"),
        (7, "invalid UTF-8"),
        (8, "expected 3 fields, got 2"),
        (9, "bad CSV: ',' expected after '\"'"),
        (11, "empty value"),
        (12, "bad CSV: unexpected end of data"),
    ]
    assert [(p.line, p.record.signal_type, p.record.category) for p in parsed if p.record] == [
        (2, "md5", "A"),
        (4, "sha256", "two\nlines"),
        (10, "sha1", "C"),
    ]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"signal_type,value,colour", "unknown column(s) colour;"),
        (b"signal_type,category", "missing column(s) value"),
        (b"value,value", "a column is named twice"),
    ],
)
def test_csv_bad_header_stops_at_line_1(header: bytes, reason: str) -> None:
    parsed = read("csv", header + b"\nmd5,x,y\n")
    assert len(parsed) == 1 and parsed[0].line == 1 and parsed[0].error is not None
    assert parsed[0].error.reason.startswith(reason)


def test_csv_status_and_level_are_checked() -> None:
    data = f"signal_type,value,status,level\nmd5,{MD5},gone,\nurl,http://a.example/,active,everywhere\n".encode()
    assert errors(read("csv", data)) == [
        (2, "status must be one of active, disabled, retracted, not 'gone'"),
        (3, "level must be one of exact, prefix, domain, not 'everywhere'"),
    ]


def test_jsonl_malformed_lines() -> None:
    good = json.dumps({"signal_type": "md5", "value": MD5})
    lines = [
        good,
        "",
        '{"signal_type": "md5", "value": ',
        "[1, 2]",
        json.dumps({"value": MD5, "colour": "red"}),
        json.dumps({"value": 5}),
        json.dumps({"value": MD5, "labels": [1]}),
        json.dumps({"value": SHA256}),
        json.dumps({"value": SHA1, "labels": "a;b"}),
    ]
    data = "\n".join(lines).encode() + b"\n" + b'{"value": "\xc3"}\n' + good[:-5].encode()  # ends mid-JSON
    parsed = read("jsonl", data)
    got = errors(parsed)
    assert [line for line, _ in got] == [3, 4, 5, 6, 7, 8, 10, 11]
    assert got[0][1].startswith("invalid JSON (") and got[-1][1].startswith("invalid JSON (")
    assert got[1:6] == [
        (4, "expected a JSON object, got list"),
        (5, "unknown field(s) colour"),
        (6, "value must be a string or null, not int"),
        (7, "labels must be a list of strings"),
        (8, "no signal type: a 64-hex value may be sha256 or pdq; give the signal type"),
    ]
    assert got[6] == (10, "invalid UTF-8 at byte 12 of the line")
    assert [(p.line, p.record.signal_type, p.record.labels) for p in parsed if p.record] == [
        (1, "md5", ()),
        (9, "sha1", ("a", "b")),
    ]


def test_overlong_line_is_refused_without_buffering() -> None:
    data = b'{"value": "' + b"a" * (MAX_LINE_BYTES + 10) + b'"}\n' + f'{{"value": "{MD5}"}}\n'.encode()
    parsed = read("jsonl", data)
    assert errors(parsed) == [(1, f"line longer than {MAX_LINE_BYTES} bytes")]
    assert [p.line for p in parsed if p.record] == [2]


def test_te_malformed_lines() -> None:
    data = (
        f"pdq {PDQ}\n# a comment\n\n{MD5}\n{SHA256}\nPDQ! {PDQ}\nzzzz\nmd5 \xff\n".encode("latin-1")
        + f"video_md5 {MD5}\n".encode()
    )
    parsed = read("te", data)
    assert errors(parsed) == [
        (5, "no signal type: a 64-hex value may be sha256 or pdq; give the signal type"),
        (6, f"expected '<signal_type> <value>', got 'PDQ! {PDQ}'"),
        (7, "no signal type given and the value does not tell it; give the signal type"),
        (8, "invalid UTF-8 at byte 5 of the line"),
    ]
    assert [(p.line, p.record.signal_type) for p in parsed if p.record] == [(1, "pdq"), (4, "md5"), (9, "md5")]


def test_te_csv_needs_its_header() -> None:
    assert errors(read("te-csv", b"a,b,c\nx,y,z\n")) == [
        (1, "expected the header collab,signal_type,signal_str,category,tags")
    ]
    data = f"collab,signal_type,signal_str,category,tags\nc,pdq,{PDQ},POSITIVE_CLASS\n".encode()
    assert errors(read("te-csv", data)) == [(2, "expected 5 fields, got 4")]


# ------------------------------------------------------------------ registry and inference


def test_registry() -> None:
    assert format_names() == ["csv", "jsonl", "vics", "te", "te-csv"]
    assert [f.name for f in list_formats()] == format_names()
    assert get_format("HMA").name == "te" and get_format("ndjson").name == "jsonl"
    with pytest.raises(ValueError, match=r"unknown list format 'xml' \(known: csv, jsonl, vics, te, te-csv\)"):
        get_format("xml")


CSV_HEAD = f"signal_type,value,category\nmd5,{MD5},A\n".encode()
JSONL_HEAD = (json.dumps({"signal_type": "md5", "value": MD5}) + "\n").encode()
VICS_HEAD = b'{\r\n  "odata.metadata": "http://vics.example/ICMEC/ProjectVic/DataModels/1.3.xml#Media",\r\n  "value": ['
VICS2_HEAD = b'{"@odata.context":"http://example.invalid/x#Media","value":[{"MediaID":1,"MD5":"' + MD5.encode()
TE_HEAD = f"pdq {PDQ}\nmd5 {MD5}\npdq {PDQ[:20]}".encode()  # last line cut by the head
TE_CSV_HEAD = f"collab,signal_type,signal_str,category,tags\nc,pdq,{PDQ},POSITIVE_CLASS,\n".encode()


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (CSV_HEAD, "list.csv", "csv"),
        (CSV_HEAD, None, "csv"),
        (b"\xef\xbb\xbf" + CSV_HEAD, "export.txt", "csv"),
        (JSONL_HEAD, "list.jsonl", "jsonl"),
        (JSONL_HEAD, "list.json", "jsonl"),
        (VICS_HEAD, "hashes.json", "vics"),
        (VICS2_HEAD, None, "vics"),
        (TE_HEAD, "signals.txt", "te"),
        (f"{MD5}\n{SHA1}\n".encode(), None, "te"),
        (TE_CSV_HEAD, "dump.csv", "te-csv"),
        (b"", "empty.csv", "csv"),
        (b"", "empty.ndjson", "jsonl"),
    ],
)
def test_infer_format(head: bytes, filename: str | None, expected: str) -> None:
    assert infer_format(head, filename).name == expected


@pytest.mark.parametrize(
    ("head", "filename"),
    [
        (b"<?xml version='1.0'?><hashes/>", "list.xml"),
        (b"hello world, this is prose\n", "notes.txt"),
        (b"", None),
        (b"", "data.bin"),
        (f"{SHA256}\n".encode() + b"\x00garbage", None),
    ],
)
def test_infer_format_refuses_to_guess(head: bytes, filename: str | None) -> None:
    with pytest.raises(ValueError, match=r"cannot tell the format of .*; use --format \(one of csv, jsonl"):
        infer_format(head, filename)


def test_infer_passes_the_signal_type_option() -> None:
    fmt = infer_format(f"{SHA256}\n".encode(), "x.txt", signal_type="sha256")
    assert fmt.name == "te" and fmt.signal_type == "sha256"


# ------------------------------------------------------------------ bounded memory

N_LINES = 200_000


def _many() -> Iterator[EntryRecord]:
    rnd = random.Random(7)
    for i in range(N_LINES):
        yield EntryRecord("md5", f"{rnd.getrandbits(128):032x}", "B", ("bulk",), "gen", str(i))


def test_large_csv_reads_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as out:
        assert get_format("csv").write(_many(), out) == N_LINES
    assert path.stat().st_size > 20 * 1024 * 1024 // 2  # the file is comparable to the limit
    count = bad = last = 0
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            for parsed in get_format("csv").read(stream):
                count += parsed.record is not None
                bad += parsed.error is not None
                last = parsed.line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, bad, last) == (N_LINES, 0, N_LINES + 1)
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_csv_overlong_field_and_line() -> None:
    head = f"signal_type,value\nmd5,{MD5}\n".encode()
    tail = f"md5,{MD5}\n".encode()
    parsed = read("csv", head + b"x" * 200_000 + b"\n" + tail)  # a field over csv's limit: that record only
    assert errors(parsed) == [(3, "bad CSV: field larger than field limit (131072)")]
    assert [p.line for p in parsed if p.record] == [2, 4]
    parsed = read("csv", head + b"x" * (2 * MAX_LINE_BYTES) + b"\n" + tail)  # never buffered: reading stops
    assert errors(parsed) == [(3, f"line longer than {MAX_LINE_BYTES} bytes; is this a CSV file?")]
    assert [p.line for p in parsed if p.record] == [2]


def test_binary_garbage_is_refused_with_a_line_number() -> None:
    garbage = bytes(random.Random(3).getrandbits(8) for _ in range(4096))
    for name in ("csv", "jsonl", "te", "te-csv", "vics"):
        parsed = read(name, garbage)
        assert parsed and parsed[0].error is not None and parsed[0].line >= 1, name
        assert all(p.record is None for p in parsed), name
