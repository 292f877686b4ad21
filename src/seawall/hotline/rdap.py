"""RDAP (RFC 9083, 9224): the abuse contact of the network an address is in. Used only when the
operator turns it on (``SEAWALL_TRACE_RDAP``) and the directory has no contact.

The server to ask comes from IANA's bootstrap files (``ipv4.json``, ``ipv6.json``), which the
operator keeps in a folder of their configuration; Seawall never downloads them. Every request goes
through the SSRF-safe fetcher, redirects (one registry to another) checked hop by hop. The answer is
untrusted: its size is capped, its entities walked to a bounded depth, the email checked, and the
network it names is clipped to the block the bootstrap gave that server, so one server's answer is
never cached for addresses another registry holds.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seawall.config import Settings
from seawall.fetch import FetchError, SafeFetcher
from seawall.hotline.tracedata import FileCache, IPAddress, IPNetwork, TraceDataError
from seawall.redact import redact_url

MAX_ANSWER_BYTES = 1024 * 1024
MAX_ENTITIES = 200  # entities looked at in one answer, at any depth
MAX_DEPTH = 4
EMAIL = re.compile(r"[^@\s,;:<>()\[\]\"\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.[A-Za-z]{2,63}")


class RdapError(Exception):
    """No answer from RDAP (no server for the address, refused, failed, or not an RDAP answer)."""


@dataclass(frozen=True)
class RdapAnswer:
    first: IPAddress  # the network the answer names, clipped to the server's block
    last: IPAddress
    network: str  # as written for people: a CIDR, or "first - last"
    name: str  # the network's holder (registrant), else the network's name or handle
    abuse_email: str | None  # None: the answer names no abuse contact
    url: str  # what was asked


def valid_email(text: str) -> bool:
    return len(text) <= 320 and EMAIL.fullmatch(text) is not None


# ---- bootstrap ------------------------------------------------------------------------------------


def _load_bootstrap(path: Path) -> list[tuple[IPNetwork, str]]:
    """(block, base URL) pairs of one bootstrap file, an https URL preferred for each block."""
    try:
        document = json.loads(path.read_bytes())
        services = document["services"]
        pairs: list[tuple[IPNetwork, str]] = []
        for blocks, urls in services:
            usable = [u for u in urls if isinstance(u, str) and u.startswith(("https://", "http://"))]
            if not usable:
                continue
            base = next((u for u in usable if u.startswith("https://")), usable[0])
            pairs.extend((ipaddress.ip_network(block, strict=False), base) for block in blocks)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TraceDataError(f"{path}: not an RDAP bootstrap file ({exc})") from None
    # Longest prefix first: the first block that holds an address is the most specific.
    pairs.sort(key=lambda pair: -pair[0].prefixlen)
    return pairs


BOOTSTRAP_FILES: FileCache[list[tuple[IPNetwork, str]]] = FileCache("RDAP bootstrap file", _load_bootstrap)


def bootstrap_path(settings: Settings, address: IPAddress) -> Path | None:
    if settings.trace_rdap_bootstrap is None:
        return None
    return settings.trace_rdap_bootstrap / ("ipv4.json" if address.version == 4 else "ipv6.json")


def server_for(settings: Settings, address: IPAddress) -> tuple[str, IPNetwork]:
    """The RDAP base URL for ``address`` and the block the bootstrap gave it."""
    path = bootstrap_path(settings, address)
    if path is None:
        raise RdapError("no RDAP bootstrap folder is configured (SEAWALL_TRACE_RDAP_BOOTSTRAP)")
    pairs = BOOTSTRAP_FILES.get(path)
    if pairs is None:
        raise RdapError(BOOTSTRAP_FILES.error(path) or f"{path} cannot be read")
    for block, base in pairs:
        if block.version == address.version and address in block:
            return base, block
    raise RdapError(f"the RDAP bootstrap names no server for {address}")


# ---- the look-up -------------------------------------------------------------------------------------


def lookup(settings: Settings, address: IPAddress) -> RdapAnswer:
    """Ask the address's RDAP server about it (network I/O: never inside a transaction)."""
    base, block = server_for(settings, address)
    url = f"{base.rstrip('/')}/ip/{address}"
    fetcher = SafeFetcher(
        allow_networks=settings.fetch_allow_networks,
        max_bytes=MAX_ANSWER_BYTES,
        timeout=settings.fetch_timeout_seconds,
        max_redirects=settings.fetch_max_redirects,
    )
    try:
        fetched = fetcher.fetch(url)
    except FetchError as exc:
        raise RdapError(f"RDAP {redact_url(url)}: {exc}") from None
    if fetched.status != 200:
        raise RdapError(f"RDAP {redact_url(url)} answered {fetched.status}")
    try:
        document = json.loads(fetched.body)
    except ValueError:
        raise RdapError(f"RDAP {redact_url(url)} did not answer JSON") from None
    return parse_network(document, address, block, url)


def parse_network(document: Any, address: IPAddress, block: IPNetwork, url: str) -> RdapAnswer:
    """An ``ip network`` object (RFC 9083 §5.4) as an answer about ``address``."""
    if not isinstance(document, dict) or document.get("objectClassName") != "ip network":
        raise RdapError(f"RDAP {redact_url(url)} did not answer an ip network object")
    first, last = _range(document, address, block)
    entities = list(_entities(document))
    abuse = next((e for e in (_email(x) for x in entities if _has_role(x, "abuse")) if e), None)
    holder = next((n for n in (_vcard(x, "fn") for x in entities if _has_role(x, "registrant")) if n), None)
    name = holder or _text(document.get("name")) or _text(document.get("handle")) or "(unnamed network)"
    networks = list(ipaddress.summarize_address_range(first, last))
    written = str(networks[0]) if len(networks) == 1 else f"{first} - {last}"
    return RdapAnswer(first, last, written, name[:200], abuse, url)


def _range(document: dict[str, Any], address: IPAddress, block: IPNetwork) -> tuple[IPAddress, IPAddress]:
    """The answer's network, clipped to ``block``; just the address when the answer makes no sense."""
    try:
        first = ipaddress.ip_address(str(document["startAddress"]))
        last = ipaddress.ip_address(str(document["endAddress"]))
    except (KeyError, ValueError):
        return address, address
    if first.version != address.version or last.version != address.version:
        return address, address
    low, high = int(first), int(last)
    if not low <= int(address) <= high:
        return address, address
    make = ipaddress.IPv4Address if address.version == 4 else ipaddress.IPv6Address
    return make(max(low, int(block.network_address))), make(min(high, int(block.broadcast_address)))


def _entities(document: dict[str, Any]) -> Any:
    """Every entity of the answer, breadth first, nested ones included, within bounds."""
    queue: deque[tuple[Any, int]] = deque((e, 1) for e in _list(document.get("entities")))
    seen = 0
    while queue and seen < MAX_ENTITIES:
        entity, depth = queue.popleft()
        if not isinstance(entity, dict):
            continue
        seen += 1
        yield entity
        if depth < MAX_DEPTH:
            queue.extend((e, depth + 1) for e in _list(entity.get("entities")))


def _has_role(entity: dict[str, Any], role: str) -> bool:
    return role in [r.lower() for r in _list(entity.get("roles")) if isinstance(r, str)]


def _vcard(entity: dict[str, Any], prop: str) -> str | None:
    """The first ``prop`` value of the entity's jCard: ["vcard", [[name, params, type, value], …]]."""
    card = entity.get("vcardArray")
    if not (isinstance(card, list) and len(card) == 2 and card[0] == "vcard" and isinstance(card[1], list)):
        return None
    for item in card[1]:
        if isinstance(item, list) and len(item) >= 4 and item[0] == prop:
            value = item[3]
            if isinstance(value, list):  # structured values carry the text first
                value = next((v for v in value if isinstance(v, str) and v), None)
            text = _text(value)
            if text:
                return text
    return None


def _email(entity: dict[str, Any]) -> str | None:
    email = _vcard(entity, "email")
    if email and email.lower().startswith("mailto:"):
        email = email[7:]
    return email if email and valid_email(email) else None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        cleaned = " ".join(value.split())  # no line breaks from an answer into logs or notices
        return cleaned or None
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
