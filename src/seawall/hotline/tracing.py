"""Tracing: where a case's content is hosted (IP → ASN, AS name, country; CDN fronting) and who to
tell (the hotline's abuse-contact directory). Offline by default. (Filled in by the tracing work.)"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from seawall.config import Settings
from seawall.hotline.models import Host


@dataclass(frozen=True)
class Trace:
    address: str
    asn: int | None = None
    as_name: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    behind_cdn: bool = False  # the address is a CDN's or reverse proxy's, not the host's


def trace_address(settings: Settings, address: str) -> Trace:
    """What the operator's offline databases say of ``address`` (nothing configured: nothing known)."""
    return Trace(address=address)


def host_for(session: Session, asn: int | None, domain: str | None) -> Host | None:
    """The directory's entry for a domain (most specific first), else for the AS."""
    return None
