"""Shared Hypothesis strategies for the fuzz tests in ``tests/fuzz``: nearly-valid documents and the
ways real files go wrong (cut short, wrong types, huge numbers, deep nesting, odd unicode, BOMs,
CRLF line ends, NUL bytes), plus raw bytes.

Every run is bounded: :func:`fuzz` gives each test its example count times
``SEAWALL_FUZZ_EXAMPLES`` (a multiplier, 1 by default; e.g. 20 for a long local run), with no
deadline (a loaded CI machine must not turn slowness into failures) and no example database
(nothing is written into the worktree). Everything generated is benign: made-up hex, words, URLs
under ``example.*``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from seawall.lists.formats.csv_format import ALL_COLUMNS
from seawall.lists.formats.threatexchange import TE_CSV_HEADER
from seawall.lists.records import ENTRY_STATUSES, URL_LEVELS

T = TypeVar("T")

#: How many times the default example counts a run uses (``SEAWALL_FUZZ_EXAMPLES=20`` for a long run).
MULTIPLIER = max(1, int(os.environ.get("SEAWALL_FUZZ_EXAMPLES", "1") or 1))


def fuzz(examples: int) -> Callable[[T], T]:
    """Settings for one fuzz test: ``examples`` times the multiplier, no deadline, no saved examples.
    Function-scoped fixtures are shared by the examples on purpose (one database per test, each
    example checks its own before/after)."""
    return settings(
        max_examples=examples * MULTIPLIER,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---- text and numbers ------------------------------------------------------------------------------

BOM = "\ufeff"
#: Characters that have broken parsers before: NUL and other controls, separators, quotes, BOM,
#: bidirectional and invisible marks, a combining accent, non-BMP, line and paragraph separators.
ODD_CHARACTERS = [
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x85",
    "\u2028",
    "\u2029",
    '"',
    "'",
    ",",
    ";",
    "\\",
    "#",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    "&",
    "%",
    "%00",
    "%zz",
    BOM,
    "\u200b",
    "\u200e",
    "\u202e",
    "\u0301",
    "İ",
    "ß",
    "ﬁ",
    "²",
    "٣",
    "😀",
    "\U0010ffff",
    "\ud800",  # a lone surrogate: JSON can spell it, UTF-8 cannot
]

_HEX = "0123456789abcdef"


def hex_text(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=_HEX, min_size=length, max_size=length)


md5s = hex_text(32)
sha1s = hex_text(40)
sha256s = hex_text(64)
pdqs = hex_text(64)

#: Plain words a list might carry (benign).
words = st.sampled_from(["apple", "harbour", "blue", "seawall", "gradient", "circle", "zebra", "ünïcode", "東京"])

#: Text with odd characters mixed in.
odd_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(ODD_CHARACTERS), words), max_size=8).map("".join)

#: Numbers at the edges: huge (past 64 bits, past float range), negative, zero, non-finite.
huge_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**32, 2**63, 2**64, 10**400]),
)
edge_floats = st.sampled_from([0.5, -0.0, 1e308, 1e-308, float("inf"), float("-inf"), float("nan")])

#: Any JSON value, shallow.
json_scalars = st.one_of(st.none(), st.booleans(), huge_ints, edge_floats, odd_text, st.sampled_from(["", " "]))
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)),
    max_leaves=12,
)


def deeply_nested(depth: int, opener: str = "[") -> str:
    """``[[[…]]]`` (or objects): past the interpreter's recursion limit when ``depth`` is large."""
    if opener == "{":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


deep_json = st.sampled_from([deeply_nested(50), deeply_nested(3000), deeply_nested(3000, "{")])


def dumps(value: Any) -> str:
    """JSON text for ``value`` whatever it holds (NaN and Infinity as Python writes them; huge ints
    as digits). A value whose digits Python refuses to print is written as a long number literal."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except ValueError:  # an integer beyond sys.get_int_max_str_digits
        return "9" * 5000


# ---- mutations ----------------------------------------------------------------------------------------


def _mutate_once(data: bytes, rnd: random.Random, kind: str, insert: bytes) -> bytes:
    cut = rnd.randint(0, len(data)) if data else 0
    if kind == "truncate":
        return data[:cut]
    if kind == "insert":
        return data[:cut] + insert + data[cut:]
    if kind == "delete":
        return data[:cut] + data[cut + rnd.randint(1, 16) :]
    if kind == "flip" and data:
        i = min(cut, len(data) - 1)
        return data[:i] + bytes([data[i] ^ (1 << rnd.randint(0, 7))]) + data[i + 1 :]
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "cr":
        return data.replace(b"\n", b"\r")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "double-bom":
        return b"\xef\xbb\xbf\xef\xbb\xbf" + data
    if kind == "nul":
        return data[:cut] + b"\x00" + data[cut:]
    if kind == "duplicate":
        end = rnd.randint(cut, len(data)) if data else 0
        return data[:end] + data[cut:end] + data[end:]
    if kind == "latin1":
        return data.decode("utf-8", errors="replace").encode("latin-1", errors="replace")
    if kind == "utf16":
        return data.decode("utf-8", errors="replace").encode("utf-16")
    return data


MUTATIONS = (
    "truncate",
    "insert",
    "delete",
    "flip",
    "crlf",
    "cr",
    "bom",
    "double-bom",
    "nul",
    "duplicate",
    "latin1",
    "utf16",
)

_inserts = st.one_of(
    st.binary(max_size=12),
    st.sampled_from(ODD_CHARACTERS).map(lambda c: c.encode("utf-8", errors="surrogatepass")),
    st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b'"', b",", b"\n", b"{", b"]", b"<!--", b"<![CDATA["]),
)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[bytes], max_mutations: int = 3) -> bytes:
    """A document from ``documents``, then up to ``max_mutations`` mutations of its bytes."""
    data = draw(documents)
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    for kind in draw(st.lists(st.sampled_from(MUTATIONS), max_size=max_mutations)):
        data = _mutate_once(data, rnd, kind, draw(_inserts))
    return data


def documents_and_noise(documents: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid documents, mutated ones, and arbitrary bytes: what every parser must survive."""
    return st.one_of(documents, mutated(documents), st.binary(max_size=512))


@st.composite
def wrong_typed(draw: st.DrawFn, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with some fields dropped, some given values of the wrong type, an unknown one added."""
    out = dict(obj)
    for key in list(out):
        choice = draw(st.sampled_from(["keep", "keep", "keep", "drop", "wrong"]))
        if choice == "drop":
            del out[key]
        elif choice == "wrong":
            out[key] = draw(json_values)
    if draw(st.booleans()):
        out[draw(odd_text)] = draw(json_values)
    return out


# ---- hashes and records -----------------------------------------------------------------------------

signal_values = st.one_of(
    st.tuples(st.just("md5"), md5s),
    st.tuples(st.just("sha1"), sha1s),
    st.tuples(st.just("sha256"), sha256s),
    st.tuples(st.just("pdq"), pdqs),
)


# ---- the database before and after ----------------------------------------------------------------------


def database_state(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: equal before and after an import that failed
    means the failure wrote nothing."""
    from sqlalchemy import select

    from seawall.models import Base

    state: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            state[table.name] = [tuple(row) for row in connection.execute(select(table).order_by(*order))]
    return state


# ---- list files: nearly-valid documents of each import format ----------------------------------------

type_names = st.one_of(st.sampled_from(["md5", "sha1", "sha256", "pdq", "MD5", " pdq ", "video_md5", ""]), odd_text)
field_text = st.one_of(st.none(), words, odd_text)


@st.composite
def csv_documents(draw: st.DrawFn) -> bytes:
    columns = draw(st.permutations(ALL_COLUMNS).map(list))[: draw(st.integers(1, len(ALL_COLUMNS)))]
    if draw(st.integers(0, 9)) and "value" not in columns:
        columns.append("value")
    if draw(st.booleans()):
        columns = [c.upper() if draw(st.booleans()) else f" {c} " for c in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\r\n", "\n"])))
    writer.writerow(columns)
    for _ in range(draw(st.integers(0, 6))):
        signal_type, value = draw(signal_values)
        row = {
            "signal_type": draw(st.one_of(st.just(signal_type), type_names)),
            "value": draw(st.one_of(st.just(value), odd_text)),
            "status": draw(st.one_of(st.sampled_from([*ENTRY_STATUSES, ""]), odd_text)),
            "level": draw(st.one_of(st.sampled_from([*URL_LEVELS, ""]), odd_text)),
        }
        cells = [row.get(c.strip().lower(), draw(field_text) or "") for c in columns]
        if draw(st.integers(0, 5)) == 0:
            cells = cells[: draw(st.integers(0, len(cells)))] + draw(st.lists(odd_text, max_size=2))
        writer.writerow(cells)
    return out.getvalue().encode("utf-8", errors="surrogatepass")


def _jsonl_object(draw: st.DrawFn) -> dict[str, Any]:
    signal_type, value = draw(signal_values)
    obj: dict[str, Any] = {"signal_type": signal_type, "value": value}
    for key in ("category", "source", "external_id", "note"):
        if draw(st.booleans()):
            obj[key] = draw(field_text)
    if draw(st.booleans()):
        obj["labels"] = draw(st.one_of(st.lists(odd_text, max_size=3), odd_text))
    if draw(st.booleans()):
        obj["extra"] = draw(st.dictionaries(odd_text, odd_text, max_size=2))
    if draw(st.booleans()):
        obj["status"] = draw(st.sampled_from(ENTRY_STATUSES))
    return draw(wrong_typed(obj)) if draw(st.integers(0, 3)) == 0 else obj


@st.composite
def jsonl_documents(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(dumps(draw(json_values)))
        elif kind == 1:
            lines.append(draw(deep_json))
        else:
            lines.append(dumps(_jsonl_object(draw)))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join(lines).encode("utf-8", errors="surrogatepass")


def _media_item(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if draw(st.booleans()):
        item["MediaID"] = draw(st.one_of(st.integers(0, 10**6), words, odd_text))
    if draw(st.booleans()):
        item["MD5"] = draw(md5s)
    if draw(st.booleans()):
        item["SHA1"] = draw(sha1s)
    if draw(st.integers(0, 3)) == 0:
        item["AlternativeHashes"] = [{"HashName": "PhotoDNA", "HashValue": "QUJD" * 48}]
    item["Category"] = draw(st.one_of(st.integers(0, 4), st.none(), st.just("")))
    for name in ("Series", "Tags", "MediaSize", "VictimIdentified", "Comments"):
        if draw(st.integers(0, 3)) == 0:
            item[name] = draw(st.one_of(words, st.integers(0, 10**9), st.booleans()))
    return draw(wrong_typed(item)) if draw(st.integers(0, 3)) == 0 else item


@st.composite
def vics_documents(draw: st.DrawFn) -> bytes:
    media = [_media_item(draw) for _ in range(draw(st.integers(0, 5)))]
    if draw(st.integers(0, 5)) == 0:
        media.append(draw(json_values))
    context_key = draw(st.sampled_from(["@odata.context", "odata.metadata"]))
    country = draw(st.sampled_from(["US", "UK", "ZZ", "", "\u202e"]))
    context = f"http://vics.example/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/{country}/$metadata#Media"
    if draw(st.booleans()):
        value: Any = [{"CaseID": draw(st.integers(0, 99)), "Media": media}]
    else:
        value = media
    document: dict[str, Any] = {context_key: context, "value": value}
    if draw(st.integers(0, 5)) == 0:
        document = draw(wrong_typed(document))
    return dumps(document).encode("utf-8", errors="surrogatepass")


@st.composite
def te_documents(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        signal_type, value = draw(signal_values)
        kind = draw(st.integers(0, 5))
        if kind == 0:
            lines.append(value)
        elif kind == 1:
            lines.append(f"# {draw(odd_text)}")
        elif kind == 2:
            lines.append(draw(odd_text))
        else:
            lines.append(f"{draw(st.one_of(st.just(signal_type), type_names))} {value}")
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


@st.composite
def te_csv_documents(draw: st.DrawFn) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TE_CSV_HEADER if draw(st.integers(0, 5)) else draw(st.lists(odd_text, max_size=5)))
    for _ in range(draw(st.integers(0, 6))):
        signal_type, value = draw(signal_values)
        row = [draw(words), draw(st.one_of(st.just(signal_type), type_names)), value, "POSITIVE_CLASS"]
        row.append(" ".join(draw(st.lists(words, max_size=3))))
        if draw(st.integers(0, 5)) == 0:
            row = draw(st.lists(odd_text, max_size=6))
        writer.writerow(row)
    return out.getvalue().encode("utf-8", errors="surrogatepass")


DOCUMENTS = {
    "csv": csv_documents(),
    "jsonl": jsonl_documents(),
    "vics": vics_documents(),
    "te": te_documents(),
    "te-csv": te_csv_documents(),
}


# ---- URL and keyword entries ---------------------------------------------------------------------------

urls = st.one_of(
    st.builds(
        lambda scheme, host, port, path, query: f"{scheme}{host}{port}{path}{query}",
        st.sampled_from(["http://", "https://", "HTTP://", "//", "", "ftp://", "javascript:", "http:"]),
        st.one_of(
            st.sampled_from(
                ["example.com", "EXAMPLE.org.", "[::1]", "[fe80::1%eth0]", "192.0.2.1", "xn--bcher-kva.ex"]
            ),
            st.text(max_size=12),
        ),
        st.sampled_from(["", ":80", ":443", ":0", ":65536", ":²", ":99999999999999999999", ":"]),
        st.one_of(st.sampled_from(["", "/", "/a/../b", "/%7e%41", "/%zz", "/a b"]), odd_text.map(lambda t: "/" + t)),
        st.one_of(st.sampled_from(["", "?a=1&a=2", "?b&a", "#frag"]), odd_text.map(lambda t: "?" + t)),
    ),
    odd_text,
    st.text(min_size=2000, max_size=2100, alphabet="é/ab%"),
)

keywords = st.one_of(
    odd_text,
    st.sampled_from(["re:[[]", "re:(a", "re:(?<x>a)", "re:a{99999}", "re:\\", "re:(?i)x", "sub:", "re:", "sub:ab"]),
    odd_text.map(lambda t: "re:" + t),
    odd_text.map(lambda t: "sub:" + t),
)
