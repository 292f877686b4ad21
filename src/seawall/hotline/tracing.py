"""Tracing: where a case's content is hosted (IP → ASN, AS name, country; CDN fronting) and who to
tell (the hotline's abuse-contact directory, then RDAP if the operator turned it on).

Offline by default: :func:`trace_address` reads only the operator's files (``tracedata``), and
:func:`host_for` only the directory. :func:`contact_for` is the one step that may go on the network
(RDAP, cached per network in the hosts table); it opens its own short transactions, so call it from
the worker outside any transaction of yours.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.hotline import rdap
from seawall.hotline.models import Host
from seawall.hotline.tracedata import (
    CIDR_FILES,
    MMDB_FILES,
    BadLine,
    Facts,
    FileCache,
    IPAddress,
    csv_rows,
    hex_address,
    mmdb_facts,
    parse_address,
    parse_asn,
    problems,
)
from seawall.lists.records import FormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trace:
    address: str
    asn: int | None = None
    as_name: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    behind_cdn: bool = False  # the address is a CDN's or reverse proxy's, not the host's


def trace_address(settings: Settings, address: str) -> Trace:
    """What the operator's offline databases say of ``address`` (nothing configured: nothing known).

    The CIDR file speaks first (it is the hotline's own table, corrections included), then the ASN
    file for the AS and the country file for the country; a combined file may be either. The AS
    number and its name always come from the same source. ValueError if ``address`` is no address."""
    ip = parse_address(address)
    cidr = CIDR_FILES.get(settings.trace_cidr_file) if settings.trace_cidr_file else None
    by_cidr = cidr.lookup(ip) if cidr is not None else None
    by_asn_file = _mmdb(settings.trace_mmdb_asn, ip)
    by_country_file = _mmdb(settings.trace_mmdb_country, ip)
    for_as = [f for f in (by_cidr, by_asn_file, by_country_file) if f is not None]
    for_country = [f for f in (by_cidr, by_country_file, by_asn_file) if f is not None]
    as_source = next((f for f in for_as if f.asn is not None), None) or next((f for f in for_as if f.as_name), None)
    asn = as_source.asn if as_source else None
    return Trace(
        address=str(ip),
        asn=asn,
        as_name=as_source.as_name if as_source else None,
        country=next((f.country for f in for_country if f.country), None),
        behind_cdn=asn is not None and asn in settings.trace_cdn_asns,
    )


def _mmdb(path: Path | None, ip: IPAddress) -> Facts | None:
    reader = MMDB_FILES.get(path) if path else None
    return mmdb_facts(reader, ip) if reader is not None else None


def data_problems(settings: Settings) -> list[str]:
    """Why a configured tracing file is not being used (empty: every one loads)."""
    files: list[tuple[FileCache[Any], Path | None]] = [
        (MMDB_FILES, settings.trace_mmdb_country),
        (MMDB_FILES, settings.trace_mmdb_asn),
        (CIDR_FILES, settings.trace_cidr_file),
    ]
    if settings.trace_rdap:
        if settings.trace_rdap_bootstrap is None:
            return [*problems(files), "SEAWALL_TRACE_RDAP is on but SEAWALL_TRACE_RDAP_BOOTSTRAP is not set"]
        files += [(rdap.BOOTSTRAP_FILES, settings.trace_rdap_bootstrap / n) for n in ("ipv4.json", "ipv6.json")]
    return problems(files)


# ---- the abuse-contact directory ----------------------------------------------------------------

CONTACT_COLUMNS = ("asn", "domain", "name", "abuse_email", "api_endpoint", "language")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,4})?")
MAX_ERRORS = 20


def normalise_domain(text: str) -> str:
    """``Sub.Example.ORG.`` → ``sub.example.org`` (IDNs as their ASCII form); ValueError otherwise."""
    domain = text.strip().rstrip(".").lower()
    if not domain:
        raise ValueError("empty domain")
    if domain.startswith("*."):
        raise ValueError(f"write {domain[2:]!r}, not {domain!r}: a domain's entry covers its subdomains")
    try:
        ipaddress.ip_address(domain.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"{text.strip()!r} is an address, not a domain (addresses are traced to their AS)")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{text.strip()!r} is not a domain name") from None
    labels = domain.split(".")
    if len(domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{text.strip()!r} is not a domain name")
    return domain


def _domain_or_none(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return normalise_domain(text.split(":", 1)[0] if text.count(":") == 1 else text)  # a URL host may carry a port
    except ValueError:
        return None


def host_for(session: Session, asn: int | None, domain: str | None) -> Host | None:
    """The directory's entry for a domain (most specific first), else for the AS.

    ``sub.example.org`` is looked up as itself, then ``example.org``, then ``org``; at each level an
    entry naming this AS as well comes before one for the domain alone. Only then the entry for the
    AS alone. RDAP answers are not the directory (see :func:`contact_for`)."""
    names = _parents(_domain_or_none(domain))
    if not names and asn is None:
        return None
    clauses = []
    if names:
        same_as = Host.asn.is_(None) if asn is None else or_(Host.asn.is_(None), Host.asn == asn)
        clauses.append(Host.domain.in_(names) & same_as)
    if asn is not None:
        clauses.append(Host.domain.is_(None) & (Host.asn == asn))
    rows = session.scalars(select(Host).where(Host.source != "rdap", or_(*clauses))).all()

    def rank(host: Host) -> tuple[int, int]:
        level = names.index(host.domain) if host.domain in names else len(names)
        return level, 0 if host.asn is not None else 1

    return min(rows, key=rank, default=None)


def _parents(domain: str | None) -> list[str]:
    if not domain:
        return []
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@dataclass(frozen=True)
class Contact:
    """One line of a contacts file, checked."""

    line: int
    asn: int | None
    domain: str | None
    name: str
    abuse_email: str | None
    api_endpoint: str | None
    language: str


class InvalidContacts(ValueError):
    """A contacts file with bad lines: nothing of it is imported."""

    def __init__(self, errors: list[FormatError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors[:5]))


def read_contacts(raw: BinaryIO) -> list[Contact]:
    """Every line of a contacts CSV (asn, domain, name, abuse_email, api_endpoint, language), checked;
    InvalidContacts naming the bad lines (the first few) if any is wrong."""
    contacts: list[Contact] = []
    errors: list[FormatError] = []
    seen: dict[tuple[int | None, str | None], int] = {}
    try:
        for line, cells in csv_rows(raw, CONTACT_COLUMNS, required=("name",)):
            try:
                contact = _contact(line, dict(zip(CONTACT_COLUMNS, cells, strict=True)))
            except ValueError as exc:
                errors.append(FormatError(line, str(exc)))
            else:
                key = (contact.asn, contact.domain)
                if key in seen:
                    errors.append(FormatError(line, f"{_key_text(*key)} is listed twice (line {seen[key]})"))
                else:
                    seen[key] = line
                    contacts.append(contact)
            if len(errors) >= MAX_ERRORS:
                break
    except BadLine as exc:
        errors.append(exc.error)
    if errors:
        raise InvalidContacts(errors)
    return contacts


def _contact(line: int, fields: dict[str, str]) -> Contact:
    for column, cell in fields.items():
        if "\x00" in cell:  # PostgreSQL cannot store it; no real contact holds one
            raise ValueError(f"{column} contains a NUL character")
    asn = parse_asn(fields.get("asn", ""))
    domain_text = fields.get("domain", "").strip()
    domain = normalise_domain(domain_text) if domain_text else None
    if asn is None and domain is None:
        raise ValueError("a contact names an AS number, a domain or both")
    name = " ".join(fields.get("name", "").split())
    if not name or len(name) > 200:
        raise ValueError("name is required, at most 200 characters")
    email = fields.get("abuse_email", "").strip() or None
    if email is not None and not rdap.valid_email(email):
        raise ValueError(f"abuse_email {email!r} is not an email address")
    endpoint = fields.get("api_endpoint", "").strip() or None
    if endpoint is not None:
        _check_endpoint(endpoint)
    if email is None and endpoint is None:
        raise ValueError("a contact needs an abuse_email or an api_endpoint")
    language = fields.get("language", "").strip().lower() or "en"
    if not _LANGUAGE.fullmatch(language):
        raise ValueError(f"language {language!r} is not a language tag such as en, de or pt-br")
    return Contact(line, asn, domain, name, email, endpoint, language)


def _check_endpoint(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError(f"api_endpoint {url!r} is not a URL") from None
    if parsed.scheme not in ("https", "http") or not parsed.host or len(url) > 2048:
        raise ValueError(f"api_endpoint {url!r} is not an http(s) URL")
    if parsed.userinfo:
        raise ValueError("api_endpoint must not carry credentials")


def _key_text(asn: int | None, domain: str | None) -> str:
    return " ".join(p for p in (f"AS{asn}" if asn is not None else "", domain or "") if p)


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    changed: list[str] = field(default_factory=list)  # the keys added or updated


def import_contacts(
    session: Session, actor: Principal, contacts: list[Contact], *, source_name: str, digest: str
) -> ImportResult:
    """Add or update each contact by (asn, domain), in the caller's transaction, with one audit event."""
    result = ImportResult()
    existing = {(h.asn, h.domain): h for h in session.scalars(select(Host).where(Host.source != "rdap"))}
    now = utcnow()
    for contact in contacts:
        values = {
            "name": contact.name,
            "abuse_email": contact.abuse_email,
            "api_endpoint": contact.api_endpoint,
            "language": contact.language,
            "source": "import",
        }
        host = existing.get((contact.asn, contact.domain))
        if host is None:
            session.add(Host(asn=contact.asn, domain=contact.domain, updated_at=now, **values))
            result.added += 1
        elif any(getattr(host, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(host, k, v)
            host.updated_at = now
            result.updated += 1
        else:
            result.unchanged += 1
            continue
        result.changed.append(_key_text(contact.asn, contact.domain))
    session.flush()
    audit.record(
        session,
        actor,
        "hosts.import",
        "hotline_hosts",
        "",
        {
            "file": source_name,
            "sha256": digest,
            "added": result.added,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "changed": result.changed[:100],
        },
    )
    return result


def import_contacts_file(session: Session, actor: Principal, raw: BinaryIO, *, source_name: str) -> ImportResult:
    """Read and import a contacts file: all of it, or (InvalidContacts) nothing."""
    data = raw.read()
    contacts = read_contacts(io.BytesIO(data))
    return import_contacts(session, actor, contacts, source_name=source_name, digest=hashlib.sha256(data).hexdigest())


def list_hosts(session: Session, *, source: str | None = None, limit: int = 100, offset: int = 0) -> list[Host]:
    # By AS (its own entry before its domains'), then domain entries; NULLs placed alike on every backend.
    query = select(Host).order_by(
        Host.source, Host.asn.is_(None), Host.asn, Host.domain.is_not(None), Host.domain, Host.id
    )
    if source is not None:
        query = query.where(Host.source == source)
    return list(session.scalars(query.limit(limit).offset(offset)))


def find_hosts(session: Session, key: str) -> list[Host]:
    """Entries for ``key``: a row id (``#12`` or ``12``), an AS (``AS64500``) or a domain."""
    key = key.strip()
    if key.lstrip("#").isdigit():
        host = session.get(Host, int(key.lstrip("#")))
        return [host] if host is not None else []
    if key.upper().startswith("AS") and key[2:].isdigit():
        return list(session.scalars(select(Host).where(Host.asn == int(key[2:])).order_by(Host.domain, Host.id)))
    domain = _domain_or_none(key)
    if domain is None:
        return []
    return list(session.scalars(select(Host).where(Host.domain == domain).order_by(Host.asn, Host.id)))


# ---- the contact for a traced address: the directory, then RDAP --------------------------------


def has_contact(host: Host | None) -> bool:
    return host is not None and bool(host.abuse_email or host.api_endpoint)


def contact_for(sessions: sessionmaker[Session], settings: Settings, trace: Trace, domain: str | None) -> Host | None:
    """Who to tell about content at ``trace.address`` (the page's host name ``domain``): the
    directory's entry (:func:`host_for`); failing that, with RDAP on, the RDAP answer for the
    address's network, cached in the hosts table for ``SEAWALL_TRACE_RDAP_CACHE_DAYS``. An RDAP
    answer without an abuse contact is returned (and cached) too: check :func:`has_contact`.

    Opens its own short transactions and asks RDAP between them: never call it inside a transaction."""
    with sessions() as session:
        host = host_for(session, trace.asn, domain)
        if host is not None or not settings.trace_rdap:
            return host
        ip = parse_address(trace.address)
        cached = cached_rdap(session, ip)
        fresh_after = utcnow() - timedelta(days=settings.trace_rdap_cache_days)
        if cached is not None and cached.updated_at >= fresh_after:
            return cached
    try:
        answer = rdap.lookup(settings, ip)
    except rdap.RdapError as exc:
        log.warning("tracing: no RDAP answer for %s: %s", ip, exc)
        return cached  # an old answer is better than none
    with transaction(sessions) as session:
        return save_rdap(session, answer, replaces=cached.id if cached is not None else None)


def cached_rdap(session: Session, ip: IPAddress) -> Host | None:
    """The narrowest cached RDAP network that holds ``ip``, however old."""
    key = hex_address(ip)
    return session.scalars(
        select(Host)
        .where(Host.source == "rdap", Host.range_start <= key, Host.range_end >= key)
        .order_by(Host.range_start.desc(), Host.range_end)
        .limit(1)
    ).first()


def save_rdap(session: Session, answer: rdap.RdapAnswer, *, replaces: int | None = None) -> Host:
    """Cache ``answer`` for its network (the row for that network updated, or added). An older
    answer for this address that named another network is retired: it keeps its row (cases point
    at it) but covers no address any more."""
    start, end = hex_address(answer.first), hex_address(answer.last)
    values = {"name": answer.name, "abuse_email": answer.abuse_email, "network": answer.network, "updated_at": utcnow()}
    host = session.scalars(select(Host).where(Host.range_start == start, Host.range_end == end)).first()
    if host is None:
        try:
            with session.begin_nested():
                host = Host(source="rdap", range_start=start, range_end=end, language="en", **values)
                session.add(host)
        except IntegrityError:  # another worker cached the same network a moment ago
            host = session.scalars(select(Host).where(Host.range_start == start, Host.range_end == end)).one()
    for k, v in values.items():
        setattr(host, k, v)
    if replaces is not None and replaces != host.id:
        old = session.get(Host, replaces)
        if old is not None and old.source == "rdap":
            old.range_start = old.range_end = None
    session.flush()
    audit.record(
        session,
        SYSTEM,
        "hosts.rdap",
        "hotline_hosts",
        host.id,
        {"network": answer.network, "name": answer.name, "abuse_email": answer.abuse_email, "url": answer.url},
    )
    return host
