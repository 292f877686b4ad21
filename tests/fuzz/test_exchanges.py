"""Fuzzing the exchanges' response parsers: NCMEC XML, StopNCII JSON, a Seawall feed, a list file.

A loopback server answers each request with the example's body; ``fetch`` must give well-typed
batches or stop with ExchangeError (the documented error: the sync records it and keeps the
checkpoint), never another exception. What a batch carries must then go through the list service
with ListError at worst. Only 127.0.0.1 is contacted; every hash is made up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fuzzing import (
    DOCUMENTS,
    deep_json,
    documents_and_noise,
    dumps,
    fuzz,
    json_values,
    md5s,
    odd_text,
    pdqs,
    sha1s,
    wrong_typed,
)
from seawall.fetch import AddressRules
from seawall.lists.exchanges.base import Batch, ExchangeError
from seawall.lists.exchanges.file import FileConfig, FileExchange
from seawall.lists.exchanges.ncmec import NAMESPACE, NCMECConfig, NCMECExchange
from seawall.lists.exchanges.seawall_feed import SeawallFeedConfig, SeawallFeedExchange
from seawall.lists.exchanges.stopncii import StopNCIIConfig, StopNCIIExchange
from seawall.lists.records import ENTRY_STATUSES
from servers import serve


@dataclass
class Answer:
    """What the loopback source answers next (the same to every request of one example)."""

    body: bytes = b""
    content_type: str = "application/json"
    status: int = 200
    requests: list[str] = field(default_factory=list, repr=False)


@pytest.fixture(scope="module")
def source() -> Iterator[tuple[str, Answer]]:
    answer = Answer()

    async def anything(request: Request) -> Response:
        answer.requests.append(request.url.path)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    app = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST", "PUT"])])
    with serve(app) as url:
        yield url, answer


LOOPBACK = AddressRules(["127.0.0.0/8"])
#: A fetch that pages forever on a broken source is cut off here; the parser is what is tested.
MAX_BATCHES = 5


def run_fetch(exchange: Any, checkpoint: dict[str, Any] | None = None) -> list[Batch]:
    """The batches ``fetch`` gives (at most MAX_BATCHES), or ExchangeError; nothing else may escape."""
    batches: list[Batch] = []
    try:
        for batch in exchange.fetch(checkpoint):
            check_batch(batch)
            batches.append(batch)
            if len(batches) >= MAX_BATCHES:
                break
    except ExchangeError as exc:
        assert str(exc).strip()
    finally:
        exchange.close()
    return batches


def check_batch(batch: Batch) -> None:
    for rec in (*batch.upserts, *batch.seen):
        assert isinstance(rec.signal_type, str) and isinstance(rec.value, str), rec
        assert isinstance(rec.status, str), rec  # the list service checks it is a known status
        for text in (rec.category, rec.source, rec.external_id, rec.note, rec.level):
            assert text is None or isinstance(text, str), rec
        assert all(isinstance(label, str) for label in rec.labels), rec
    for r in batch.retractions:
        for text in (r.external_id, r.signal_type, r.value):
            assert text is None or isinstance(text, str), r
    assert all(isinstance(e, str) for e in batch.errors)
    assert batch.checkpoint is None or json.loads(json.dumps(batch.checkpoint)) == batch.checkpoint


# ---- NCMEC: XML -----------------------------------------------------------------------------------------


@st.composite
def ncmec_pages(draw: st.DrawFn) -> bytes:
    def text() -> str:
        raw = draw(st.one_of(st.sampled_from(["", "1", "A1", "x"]), odd_text))
        return raw.replace("&", "&amp;").replace("<", "&lt;")

    entries = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["image", "video", "deletedImage", "deletedVideo", "other"]))
        prints = ""
        for tag, values in (("md5", md5s), ("sha1", sha1s), ("pdq", pdqs), ("pdna", st.just("QUJD" * 48))):
            if draw(st.booleans()):
                prints += f"<{tag}>{draw(st.one_of(values, st.just(text())))}</{tag}>"
        member = f'<member id="{text()}">M</member>' if draw(st.booleans()) else ""
        entry_id = f"<id>{draw(st.one_of(st.integers(0, 10**6).map(str), st.just(text())))}</id>"
        cls = f"<classification>{text()}</classification>" if draw(st.booleans()) else ""
        entries.append(f"<{kind}>{member}{entry_id}{cls}<fingerprints>{prints}</fingerprints></{kind}>")
    paging = ""
    if draw(st.integers(0, 3)) == 0:
        link = draw(st.sampled_from(["/v2/entries?start=2", "http://elsewhere.example/", ""]))
        paging = f"<paging><next>{link}</next></paging>"
    root = draw(st.sampled_from(["queryResult", "queryResult", "queryResult", "error"]))
    xmlns = f' xmlns="{NAMESPACE}"' if draw(st.booleans()) else ""
    body = f'<?xml version="1.0" encoding="UTF-8"?><{root}{xmlns}><images>{"".join(entries)}</images>{paging}</{root}>'
    return body.encode("utf-8", errors="surrogatepass")


XML_ATTACKS = [
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
    b"<queryResult>&b;</queryResult>",
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY x SYSTEM "file:///etc/passwd">]><queryResult>&x;</queryResult>',
    b"<queryResult>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</queryResult>",
    b'<?xml version="1.0" encoding="x-unknown"?><queryResult/>',
    b"<queryResult><images><image><id>1</id><fingerprints><md5>\xff</md5></fingerprints></image></images></queryResult>",
]


@fuzz(60)
@example(body=XML_ATTACKS[0])
@example(body=XML_ATTACKS[1])
@example(body=XML_ATTACKS[2])
@example(body=b'<?xml version="1.0" encoding="x"?><queryResult/>')
@given(body=st.one_of(documents_and_noise(ncmec_pages()), st.sampled_from(XML_ATTACKS)))
def test_ncmec_pages_give_batches_or_an_exchange_error(source: tuple[str, Answer], body: bytes) -> None:
    url, answer = source
    answer.body, answer.content_type, answer.status = body, "application/xml", 200
    config = NCMECConfig(base_url=url, username="esp-user", password="esp-pass", start_timestamp=0)
    run_fetch(NCMECExchange(config, exchange_name="fuzz", rules=LOOPBACK))


# ---- StopNCII and the Seawall feed: JSON ------------------------------------------------------------------


@st.composite
def stopncii_pages(draw: st.DrawFn) -> bytes:
    records = []
    for _ in range(draw(st.integers(0, 4))):
        record: dict[str, Any] = {
            "signalType": draw(st.sampled_from(["ImagePDQ", "VideoMD5", "VideoTMK", "Text"])),
            "hashValue": draw(st.one_of(pdqs, md5s, odd_text)),
            "hashStatus": draw(st.sampled_from(["Active", "Withdrawn", "Deleted", None])),
            "lastModtimestamp": draw(st.integers(0, 2**40)),
        }
        records.append(draw(wrong_typed(record)) if draw(st.integers(0, 3)) == 0 else record)
    page: dict[str, Any] = {
        "count": len(records),
        "hashRecords": records,
        "hasMoreRecords": draw(st.booleans()),
        "nextPageToken": draw(st.one_of(st.none(), st.just("t2"), odd_text)),
        "nextSetTimestamp": draw(st.one_of(st.integers(0, 2**40), st.sampled_from([1e400, -1, 2**80, "x", None]))),
    }
    if draw(st.integers(0, 3)) == 0:
        page = draw(wrong_typed(page))
    return dumps(page).encode("utf-8", errors="surrogatepass")


json_noise = st.one_of(json_values.map(dumps), deep_json).map(lambda t: t.encode("utf-8", errors="surrogatepass"))


@fuzz(60)
@example(body=b'{"hashRecords": [], "hasMoreRecords": false, "nextSetTimestamp": 1e400}')
@example(body=b"[" * 5000 + b"]" * 5000)
@example(body=b'[{"hashRecords": []}]')
@given(body=st.one_of(documents_and_noise(stopncii_pages()), json_noise))
def test_stopncii_pages_give_batches_or_an_exchange_error(source: tuple[str, Answer], body: bytes) -> None:
    url, answer = source
    answer.body, answer.content_type, answer.status = body, "application/json", 200
    config = StopNCIIConfig(base_url=url, subscription_key="s", fetch_function_key="f")
    run_fetch(StopNCIIExchange(config, exchange_name="fuzz", rules=LOOPBACK))


@st.composite
def feed_pages(draw: st.DrawFn) -> bytes:
    changes = []
    for i in range(draw(st.integers(0, 4))):
        entry: dict[str, Any] = {
            "signal_type": draw(st.sampled_from(["md5", "pdq", "url"])),
            "value": draw(st.one_of(md5s, pdqs, odd_text)),
            "category": draw(st.one_of(st.none(), odd_text)),
            "labels": draw(st.lists(odd_text, max_size=2)),
            "external_id": draw(st.one_of(st.just(""), odd_text)),
            "note": draw(st.one_of(st.just(""), odd_text)),
            "status": draw(st.sampled_from(ENTRY_STATUSES)),
            "level": None,
        }
        change: dict[str, Any] = {"revision": i + 1, "op": draw(st.sampled_from(["add", "update", "status", "list"]))}
        change["entry"] = draw(wrong_typed(entry)) if draw(st.integers(0, 3)) == 0 else entry
        changes.append(draw(wrong_typed(change)) if draw(st.integers(0, 5)) == 0 else change)
    if draw(st.integers(0, 5)) == 0:
        changes.append(draw(json_values))
    page: dict[str, Any] = {
        "list_uid": draw(st.one_of(st.just("u1"), odd_text, st.none())),
        "changes": changes,
        "next_since": draw(st.one_of(st.integers(0, 100), st.sampled_from([1e400, -5, 2**80, "3", None]))),
        "more": draw(st.booleans()),
    }
    if draw(st.integers(0, 3)) == 0:
        page = draw(wrong_typed(page))
    return dumps(page).encode("utf-8", errors="surrogatepass")


@fuzz(60)
@example(body=b'{"changes": ["x"], "next_since": 1, "more": false}')
@example(body=b'{"changes": [{"op": "add", "entry": {"signal_type": 5, "value": "x"}}], "next_since": 1, "more": 0}')
@example(body=b'{"changes": [], "next_since": 1e400, "more": false}')
@example(body=b"[" * 5000 + b"]" * 5000)
@given(body=st.one_of(documents_and_noise(feed_pages()), json_noise))
def test_feed_pages_give_batches_or_an_exchange_error(source: tuple[str, Answer], body: bytes) -> None:
    url, answer = source
    answer.body, answer.content_type, answer.status = body, "application/json", 200
    config = SeawallFeedConfig(base_url=url, list="known", api_key="k")
    run_fetch(SeawallFeedExchange(config, exchange_name="fuzz", rules=LOOPBACK), {"revision": 0, "list_uid": "u0"})


# ---- a list file, at a path and at a URL ---------------------------------------------------------------------


@fuzz(40)
@given(
    body=st.one_of(*(documents_and_noise(d) for d in DOCUMENTS.values())),
    by_url=st.booleans(),
    fmt=st.sampled_from([None, "csv", "vics", "te"]),
)
def test_a_list_file_gives_batches_or_an_exchange_error(
    source: tuple[str, Answer], tmp_path: Path, body: bytes, by_url: bool, fmt: str | None
) -> None:
    url, answer = source
    if by_url:
        answer.body, answer.content_type, answer.status = body, "application/octet-stream", 200
        location = f"{url}/list.csv"
    else:
        path = tmp_path / "list.csv"
        path.write_bytes(body)
        location = str(path)
    config = FileConfig(location=location, format=fmt, signal_type="md5", batch_size=3)
    batches = run_fetch(FileExchange(config, exchange_name="fuzz", rules=LOOPBACK))
    for batch in batches:  # a bad line is an error of the batch, never an exception
        assert all(e.startswith("line ") for e in batch.errors), batch.errors
