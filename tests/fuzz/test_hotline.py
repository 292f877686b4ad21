"""Fuzzing the hotline's parsers: received referral documents, the page parser (HTML, CSS, srcset),
the tracing files (CIDR CSV) and the abuse-contact (hosts) CSV.

Only each module's documented error may escape — ReferralRefused, TraceDataError, InvalidContacts —
and the page parser never raises at all; a refused referral or contacts file writes nothing (every
table compared before and after, on SQLite and PostgreSQL). Hashes are of nothing; URLs are example.*.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine

from fuzzing import (
    ODD_CHARACTERS,
    database_state,
    documents_and_noise,
    fuzz,
    json_values,
    md5s,
    odd_text,
    pdqs,
    sha1s,
    sha256s,
    words,
    wrong_typed,
)
from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import make_sessionmaker, transaction
from seawall.hotline import partners, referrals, signing, tracing
from seawall.hotline.pages import css_urls, decode_html, find_media, srcset_urls
from seawall.hotline.tracedata import CidrTable, TraceDataError

# ---- the page parser: HTML, CSS, srcset --------------------------------------------------------------

html_bits = st.one_of(
    st.sampled_from(
        [
            '<img src="a.png">',
            '<img srcset="a.png 1x, b.png 2x, c.png (max-width: 5px) 3w,,">',
            '<img data-src="lazy.jpg" data-srcset="x.webp 1x">',
            '<a href="/full.jpg"><img src="t.jpg"></a>',
            "<a href=big.mp4>v</a><a href='#x'><a>",
            '<video src="v.mp4" poster="p.jpg"></video>',
            '<source srcset="s.avif">',
            "<div style=\"background: url(bg.png) no-repeat, image-set('x.png' 1x)\">",
            "<style>@media screen { .a { background-image: url('nested.png') } } .b{background:url(",
            '<base href="http://[::1/">',
            '<base href="https://cdn.example.org/">',
            '<img src="http://[bad">',
            '<img src="javascript:alert(1)">',
            '<img src="data:image/png;base64,AAAA">',
            "<!--",
            "<![CDATA[",
            "<script>",
            "</style>",
            "&#0;&#x110000;&#xd800;&amp",
        ]
    ),
    st.sampled_from(ODD_CHARACTERS),
    odd_text,
    st.builds(lambda tag, attr, value: f"<{tag} {attr}='{value}'>", words, words, odd_text),
    st.builds(lambda value: f'<img srcset="{value}">', odd_text),
    st.builds(lambda value: f'<p style="background:{value}">', odd_text),
)
pages = st.lists(html_bits, max_size=12).map("".join)
page_urls = st.sampled_from(
    [
        "https://site.example/dir/page.html",
        "http://[::1]/",
        "http://site.example",
        "https://xn--bcher-kva.example/a?b#c",
    ]
)


@fuzz(150)
@example(html='<base href="http://[::1/"><img src="a.png">', page_url="https://site.example/")
@example(html="<style>" + "a{" * 3000, page_url="https://site.example/")
@given(html=pages, page_url=page_urls)
def test_the_page_parser_finds_absolute_media_urls_and_never_raises(html: str, page_url: str) -> None:
    found = find_media(html, page_url)
    urls = [c.url for c in found]
    assert len(urls) == len(set(urls))
    assert all(u.split(":", 1)[0].lower() in ("http", "https", "data") for u in urls)
    assert all(c.found_as in ("img", "srcset", "source", "video", "link", "css") for c in found)


@fuzz(100)
@given(value=st.one_of(odd_text, st.text(max_size=80)), inline=st.booleans())
def test_srcset_and_css_urls_read_any_text(value: str, inline: bool) -> None:
    assert all(u and not u[0].isspace() and not u.endswith(",") for u in srcset_urls(value))
    assert all(isinstance(u, str) for u in css_urls(value, inline=inline))


@fuzz(100)
@example(body=b"\xff\x80abc", content_type="text/html; charset=idna")
@example(body=b"\xff\x80abc", content_type="text/html; charset=punycode")
@example(body=b"abc", content_type="text/html; charset=undefined")
@given(
    body=st.binary(max_size=64),
    content_type=st.one_of(
        st.sampled_from(["text/html", "text/html; charset=", "text/html;charset='latin-1'", "text/html; charset=x"]),
        st.builds(lambda c: f"text/html; charset={c}", st.sampled_from(["utf-16", "utf-7", "rot13", "base64", "mbcs"])),
        odd_text,
    ),
)
def test_a_page_body_decodes_whatever_its_charset_says(body: bytes, content_type: str) -> None:
    assert isinstance(decode_html(body, content_type), str)


# ---- tracing files: the CIDR table -----------------------------------------------------------------------

cidrs = st.one_of(
    st.sampled_from(["192.0.2.0/24", "192.0.2.0/25", "198.51.100.7", "2001:db8::/32", "2001:db8::/48", "0.0.0.0/0"]),
    st.sampled_from(["192.0.2.1/24", "::ffff:192.0.2.0/120", "10.0.0.0/²", "1.2.3.4/33", "1.2.3.4/-1", "fe80::1%eth0"]),
    odd_text,
)


@st.composite
def cidr_files(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(["cidr,asn,as_name,country", "cidr,country", "CIDR, ASN", "asn", "cidr,cidr", ""]))
    lines = [header]
    for _ in range(draw(st.integers(0, 6))):
        asn = draw(st.one_of(st.sampled_from(["64500", "AS64500", "", "0", "4294967296", "AS٣", "-1"]), odd_text))
        cells = [
            draw(cidrs),
            asn,
            draw(st.one_of(words, odd_text)),
            draw(st.sampled_from(["GB", "gb", "", "G1", "GBR"])),
        ]
        lines.append(",".join(cells[: draw(st.integers(1, 5))]))
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


@fuzz(120)
@given(data=documents_and_noise(cidr_files()))
def test_a_cidr_file_loads_or_is_refused_naming_the_line(data: bytes) -> None:
    try:
        table = CidrTable.read(io.BytesIO(data), "ranges.csv")
    except TraceDataError as exc:
        assert str(exc).startswith("ranges.csv: line ")
    else:
        assert table.lookup(tracing.parse_address("192.0.2.9")) is None or True  # a look-up works on what loaded


# ---- the abuse-contact (hosts) CSV, through the real import ---------------------------------------------------


@st.composite
def contact_files(draw: st.DrawFn) -> bytes:
    columns = ["asn", "domain", "name", "abuse_email", "api_endpoint", "language"]
    header = draw(
        st.one_of(st.just(columns), st.permutations(columns).map(lambda c: c[:4]), st.lists(words, max_size=3))
    )
    lines = [",".join(header)]
    for _ in range(draw(st.integers(0, 5))):
        cell = {
            "asn": draw(st.sampled_from(["64500", "AS64501", "", "x"])),
            "domain": draw(
                st.one_of(st.sampled_from(["host.example", "*.host.example", "192.0.2.1", "bücher.example"]), odd_text)
            ),
            "name": draw(st.one_of(words, odd_text, st.text(min_size=190, max_size=260))),
            "abuse_email": draw(
                st.one_of(st.sampled_from(["abuse@host.example", "a\x00b@host.example", ""]), odd_text)
            ),
            "api_endpoint": draw(
                st.sampled_from(["", "https://api.host.example/notices", "ftp://x", "https://u.example:p@x.example/"])
            ),
            "language": draw(st.sampled_from(["en", "pt-br", "", "EN", "english"])),
        }
        lines.append(",".join(cell.get(c, draw(odd_text)) for c in header))
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


@fuzz(25)
@example(data=b"asn,name,abuse_email\n64500,Host\x00Ltd,abuse@host.example\n")
@example(data=b"asn,name,abuse_email\n64500,Host,ab\x00use@host.example\n")
@given(data=documents_and_noise(contact_files()))
def test_a_contacts_file_imports_whole_or_writes_nothing(engine: Engine, data: bytes) -> None:
    factory = make_sessionmaker(engine)
    before = database_state(engine)
    try:
        with transaction(factory) as session:
            tracing.import_contacts_file(session, SYSTEM, io.BytesIO(data), source_name="hosts.csv")
    except tracing.InvalidContacts as exc:
        assert exc.errors and all(e.line >= 1 and e.reason for e in exc.errors)
        assert database_state(engine) == before


# ---- referrals received from a partner hotline -----------------------------------------------------------------


def _sign(key: Ed25519PrivateKey, document: Any) -> str:
    """As a partner writes it from docs/hotline.md (keys sorted, no whitespace, UTF-8)."""
    try:
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        return "AAAA"  # a document no partner could sign: sent with a signature that does not verify
    return base64.b64encode(key.sign(canonical)).decode()


@pytest.fixture
def partner(engine: Engine, settings: Settings) -> tuple[Ed25519PrivateKey, Principal, str]:
    """A partner hotline registered with its public key, its API key's principal, and our fingerprint."""
    theirs = Ed25519PrivateKey.generate()
    raw = theirs.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        new = partners.create_partner(
            session,
            settings,
            SYSTEM,
            name="fuzz-hotline",
            country="GB",
            public_key="ed25519:" + base64.b64encode(raw).decode(),
        )
        key = session.scalar(select(ApiKey).where(ApiKey.name == new.partner.inbound_key))
        assert key is not None
        principal = auth_service.key_principal(key)
    return theirs, principal, signing.own_fingerprint(settings)


def _referral(theirs: Ed25519PrivateKey, ours: str, md5: str, sha1: str, sha256: str, pdq: str) -> dict[str, Any]:
    raw = theirs.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sender = signing.fingerprint("ed25519:" + base64.b64encode(raw).decode())
    return {
        "type": "seawall.referral",
        "version": 1,
        "uid": str(uuid.uuid4()),
        "created_at": "2026-12-01T10:00:00Z",
        "sender": {"name": "Partner GB", "country": "GB", "key": sender},
        "recipient": {"name": "Us", "country": "NL", "key": ours},
        "url": "https://images.example.nl/album/7",
        "case": {"reference": "C-AAAAA-00007", "opened_at": "2026-12-01T09:00:00Z"},
        "classification": {"outcome": "csam", "category": "A", "state": "confirmed", "flags": [], "schemes": {}},
        "items": [{"md5": md5, "sha1": sha1, "sha256": sha256, "pdq": pdq, "media": "image"}],
        "timeline": {"referred_at": "2026-12-01T10:00:00Z"},
    }


@st.composite
def mutated_documents(draw: st.DrawFn, document: dict[str, Any]) -> Any:
    """The referral with some of its parts (at any depth) dropped or given values of the wrong type."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["", "sender", "recipient", "case", "classification", "items.0", "timeline"]))
        parent: Any = doc
        for part in where.split(".") if where else []:
            parent = parent[int(part)] if isinstance(parent, list) and part.isdigit() else parent.get(part, {})
        if isinstance(parent, dict) and parent:
            replaced = draw(wrong_typed(parent))
            parent.clear()
            parent.update(replaced)
    if draw(st.integers(0, 9)) == 0:
        doc["url"] = draw(st.one_of(odd_text, st.text(min_size=2000, max_size=2100), st.just("javascript:x")))
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    return doc


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@fuzz(15)
@example(signature="é" * 8, deep=False)
@example(signature="AAAA", deep=True)
@given(signature=st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["é" * 8, "AAAA", ""])), deep=st.booleans())
def test_a_referral_with_any_signature_is_taken_or_refused_and_a_refusal_writes_nothing(
    engine: Engine,
    settings: Settings,
    partner: tuple[Ed25519PrivateKey, Principal, str],
    signature: str | None,
    deep: bool,
) -> None:
    theirs, principal, ours = partner
    document = _referral(theirs, ours, "0" * 32, "0" * 40, "0" * 64, "0" * 64)
    if deep:  # deeper than the interpreter's recursion limit: refused, not a crash
        document["classification"]["schemes"] = {"x": _deep(5000)}
    _check_one(engine, settings, theirs, principal, ours, document, signature)


def _check_one(
    engine: Engine,
    settings: Settings,
    theirs: Ed25519PrivateKey,
    principal: Principal,
    ours: str,
    document: Any,
    signature: str | None,
) -> None:
    if document is None:
        document = _referral(theirs, ours, "0" * 32, "0" * 40, "0" * 64, "0" * 64)
    factory = make_sessionmaker(engine)
    before = database_state(engine)
    try:
        with transaction(factory) as session:
            referrals.receive(session, settings, principal, document, signature or _sign(theirs, document))
    except referrals.ReferralRefused as exc:
        assert exc.status in (404, 409, 422) and exc.message
        assert database_state(engine) == before


@fuzz(25)
@given(data=st.data(), hashes=st.tuples(md5s, sha1s, sha256s, pdqs), forged=st.integers(0, 9))
def test_signed_mutated_referrals_are_taken_or_refused_cleanly(
    engine: Engine,
    settings: Settings,
    partner: tuple[Ed25519PrivateKey, Principal, str],
    data: st.DataObject,
    hashes: tuple[str, str, str, str],
    forged: int,
) -> None:
    theirs, principal, ours = partner
    document = data.draw(mutated_documents(_referral(theirs, ours, *hashes)), label="document")
    if not isinstance(document, dict):
        document = {"document": document}
    signature = data.draw(st.text(max_size=12), label="signature") if forged == 0 else None
    _check_one(engine, settings, theirs, principal, ours, document, signature)
