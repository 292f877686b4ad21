"""The directory of partner hotlines: who we refer cases to, and accept referrals from.

A partner is known by four things: its country, its Seawall's base URL (``endpoint``), the API key
we hold at its instance (sealed with seawall.secrets) and its public key, which checks what it
signs. It calls us with an API key of ours that has the ``referrals:write`` scope; the partner row
names that key (``inbound_key``), which is how an incoming referral is known to be the partner's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.fetch import AddressRules, FetchError
from seawall.hotline import signing
from seawall.hotline.models import PartnerHotline
from seawall.redact import redact_url
from seawall.secrets import decrypt_secret, encrypt_secret

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_COUNTRY = re.compile(r"[A-Z]{2}")
REFERRAL_SCOPE = "referrals:write"


class PartnerError(ValueError):
    """A partner record that cannot be saved as asked; the message says what to change."""


class PartnerNotFound(LookupError):
    pass


class PartnerConflict(PartnerError):
    pass


@dataclass(frozen=True)
class NewPartner:
    partner: PartnerHotline
    issued_key: str | None  # the secret of the key issued to the partner, shown once


def check_country(text: str) -> str:
    country = text.strip().upper()
    if not _COUNTRY.fullmatch(country):
        raise PartnerError(f"a country is an ISO 3166 alpha-2 code such as NL, got {text!r}")
    return country


def check_endpoint(settings: Settings, url: str) -> str:
    """The partner's base URL, checked: https (plain http only to an address the operator allowed,
    such as an internal network), no credentials, query or fragment in it."""
    url = url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PartnerError(f"endpoint: not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise PartnerError("endpoint: the partner's Seawall base URL, https://…")
    if parsed.userinfo or parsed.query or parsed.fragment:
        raise PartnerError("endpoint: no credentials, query or fragment (the API key is stored on its own)")
    rules = AddressRules.from_settings(settings)
    try:
        rules.check_url(url)
    except FetchError as exc:
        raise PartnerError(f"endpoint {exc}") from None
    if parsed.scheme == "http" and not _allowed_literal(rules, parsed.host):
        # Referrals carry URLs of abuse material and our key: never in clear over a public network.
        raise PartnerError("endpoint: use https (plain http only to an address SEAWALL_FETCH_ALLOW_NETWORKS allows)")
    return url


def _allowed_literal(rules: AddressRules, host: str) -> bool:
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in rules.allow)


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise PartnerError(
            "a partner's name is 1 to 100 letters, digits, '.', '_' or '-', starting with one of the first two"
        )
    return name


def _check_public_key(text: str) -> str:
    try:
        return signing.parse_public_key(text)
    except ValueError as exc:
        raise PartnerError(f"public key: {exc}") from None


def get_partner(session: Session, name: str) -> PartnerHotline:
    partner = session.scalar(select(PartnerHotline).where(PartnerHotline.name == name))
    if partner is None:
        raise PartnerNotFound(f"no partner hotline named {name!r}")
    return partner


def list_partners(session: Session) -> list[PartnerHotline]:
    return list(session.scalars(select(PartnerHotline).order_by(PartnerHotline.country, PartnerHotline.name)))


def partner_for_country(session: Session, country: str) -> PartnerHotline | None:
    """The enabled partner that takes referrals for ``country`` (the first registered, if several)."""
    return session.scalar(
        select(PartnerHotline)
        .where(PartnerHotline.country == country.upper(), PartnerHotline.enabled.is_(True))
        .order_by(PartnerHotline.id)
        .limit(1)
    )


def partner_for_principal(session: Session, principal: Principal) -> PartnerHotline | None:
    """The partner whose inbound API key is calling, or None (a user, or a key that is no partner's)."""
    if principal.kind != "key":
        return None
    return session.scalar(select(PartnerHotline).where(PartnerHotline.inbound_key == principal.name))


def api_key_of(settings: Settings, partner: PartnerHotline) -> str | None:
    """Our API key at the partner's instance."""
    return decrypt_secret(settings, partner.api_key_sealed) if partner.api_key_sealed else None


def _inbound_key(session: Session, name: str) -> str:
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None or key.revoked_at is not None:
        raise PartnerError(f"inbound key: no live API key named {name!r}")
    if REFERRAL_SCOPE not in key.scopes:
        raise PartnerError(f"inbound key: {name!r} lacks the {REFERRAL_SCOPE!r} scope")
    taken = session.scalar(select(PartnerHotline.name).where(PartnerHotline.inbound_key == name))
    if taken is not None:
        raise PartnerConflict(f"inbound key: {name!r} is partner {taken!r}'s already")
    return name


def create_partner(
    session: Session,
    settings: Settings,
    actor: Principal,
    *,
    name: str,
    country: str,
    endpoint: str | None = None,
    public_key: str | None = None,
    api_key: str | None = None,
    inbound_key: str | None = None,
    issue_key: bool = True,
) -> NewPartner:
    """Register a partner. ``inbound_key`` names an existing key of ours the partner calls with; else,
    with ``issue_key``, a new one (``partner-<name>``, scope referrals:write) is made and returned once."""
    name, country = _check_name(name), check_country(country)
    if session.scalar(select(PartnerHotline.id).where(PartnerHotline.name == name)) is not None:
        raise PartnerConflict(f"a partner hotline named {name!r} exists already")
    partner = PartnerHotline(
        name=name,
        country=country,
        endpoint=check_endpoint(settings, endpoint) if endpoint else None,
        public_key=_check_public_key(public_key) if public_key else None,
        api_key_sealed=encrypt_secret(settings, api_key.strip()) if api_key and api_key.strip() else None,
        enabled=True,
    )
    issued: str | None = None
    if inbound_key:
        partner.inbound_key = _inbound_key(session, inbound_key.strip())
    elif issue_key:
        try:
            new = auth_service.create_api_key(session, actor, name=f"partner-{name}", scopes=[REFERRAL_SCOPE])
        except auth_service.Conflict as exc:
            raise PartnerConflict(f"{exc}: name it with --inbound-key") from None
        partner.inbound_key, issued = new.key.name, new.secret
    session.add(partner)
    session.flush()
    audit.record(session, actor, "partner.create", "partner", partner.id, _audit_details(partner))
    return NewPartner(partner, issued)


_UNCHANGED: Any = object()


def update_partner(
    session: Session,
    settings: Settings,
    actor: Principal,
    name: str,
    *,
    country: str | None = None,
    endpoint: str | None = _UNCHANGED,
    public_key: str | None = _UNCHANGED,
    api_key: str | None = _UNCHANGED,
    inbound_key: str | None = _UNCHANGED,
    enabled: bool | None = None,
) -> PartnerHotline:
    """Change what is given (None clears the endpoint, the keys); the rest stays."""
    partner = get_partner(session, name)
    if country is not None:
        partner.country = check_country(country)
    if endpoint is not _UNCHANGED:
        partner.endpoint = check_endpoint(settings, endpoint) if endpoint else None
    if public_key is not _UNCHANGED:
        partner.public_key = _check_public_key(public_key) if public_key else None
    if api_key is not _UNCHANGED:
        partner.api_key_sealed = encrypt_secret(settings, api_key.strip()) if api_key and api_key.strip() else None
    if inbound_key is not _UNCHANGED and inbound_key != partner.inbound_key:
        partner.inbound_key = _inbound_key(session, inbound_key.strip()) if inbound_key else None
    if enabled is not None:
        partner.enabled = enabled
    session.flush()
    audit.record(session, actor, "partner.update", "partner", partner.id, _audit_details(partner))
    return partner


def remove_partner(session: Session, actor: Principal, name: str) -> PartnerHotline:
    """Remove a partner and revoke the key it called us with. Its referrals stay (their documents name
    it); an outgoing one not delivered yet goes to another partner of the country when there is one."""
    partner = get_partner(session, name)
    if partner.inbound_key:
        key = session.scalar(select(ApiKey).where(ApiKey.name == partner.inbound_key))
        if key is not None and key.revoked_at is None:
            auth_service.revoke_api_key(session, actor, key.name)
    audit.record(session, actor, "partner.remove", "partner", partner.id, _audit_details(partner))
    session.delete(partner)
    session.flush()
    return partner


def describe(partner: PartnerHotline) -> dict[str, Any]:
    """What may be shown of a partner: never the key we hold at its instance."""
    return {
        "name": partner.name,
        "country": partner.country,
        "endpoint": partner.endpoint,
        "public_key": partner.public_key,
        "fingerprint": signing.fingerprint(partner.public_key) if partner.public_key else None,
        "has_api_key": partner.api_key_sealed is not None,
        "inbound_key": partner.inbound_key,
        "enabled": partner.enabled,
        "created_at": partner.created_at,
    }


def _audit_details(partner: PartnerHotline) -> dict[str, Any]:
    details = describe(partner)
    details["endpoint"] = redact_url(partner.endpoint) if partner.endpoint else None
    details.pop("public_key")
    details.pop("created_at")
    return details
