"""Two hotlines made partners, as docs/hotline.md's set-up describes (a GB hotline and an NL one)."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import transaction
from seawall.hotline import partners, signing


class Hotline(Protocol):
    settings: Settings
    factory: sessionmaker[Session]
    url: str


def pair(a: Hotline, b: Hotline) -> None:
    """The set-up docs/hotline.md describes: each registers the other (country, endpoint, public key),
    which issues the other a key; each stores the key the other issued."""
    with transaction(a.factory) as session:
        b_at_a = partners.create_partner(
            session,
            a.settings,
            SYSTEM,
            name="nl-hotline",
            country="NL",
            endpoint=b.url,
            public_key=signing.public_key_text(b.settings),
        )
    with transaction(b.factory) as session:
        a_at_b = partners.create_partner(
            session,
            b.settings,
            SYSTEM,
            name="gb-hotline",
            country="GB",
            endpoint=a.url,
            public_key=signing.public_key_text(a.settings),
            api_key=b_at_a.issued_key,
        )
    with transaction(a.factory) as session:
        partners.update_partner(session, a.settings, SYSTEM, "nl-hotline", api_key=a_at_b.issued_key)
