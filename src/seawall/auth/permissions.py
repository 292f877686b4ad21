"""Roles, scopes and the principal making a request: the one place permissions are defined."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    analyst = "analyst"
    senior_analyst = "senior_analyst"
    auditor = "auditor"
    partner = "partner"


# Every permission a route can require. API keys carry a subset of these as their scopes.
SCOPES: dict[str, str] = {
    "match": "match content and signals against lists",
    "hash": "compute signals of uploaded content",
    "lists:read": "read lists and their entries, follow feeds",
    "lists:write": "create lists, add and retire entries, give opinions",
    "reports:read": "read reports",
    "reports:write": "submit reports",
    "referrals:write": "refer cases and send their status updates (a partner hotline's key)",
    "review": "assess items in the review queue",
    "qa": "quality-check assessments",
    "reveal": "reveal blurred media",
    "audit:read": "read and verify the audit log",
    "admin": "manage users, API keys and settings",
    "ops": "read readiness details and metrics (monitoring)",
    "console": "use the analyst console",
    "stats:read": "read statistics and trends (aggregates only)",
}

_ANALYST = {
    "console",
    "match",
    "hash",
    "lists:read",
    "reports:read",
    "reports:write",
    "review",
    "reveal",
    "stats:read",
}

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.admin: frozenset(SCOPES),
    Role.senior_analyst: frozenset(_ANALYST | {"lists:write", "qa"}),
    Role.analyst: frozenset(_ANALYST),
    Role.auditor: frozenset({"console", "audit:read", "lists:read", "reports:read", "stats:read"}),
    Role.partner: frozenset({"match", "hash", "lists:read"}),
}


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}")
    return sorted(set(scopes))


@dataclass(frozen=True)
class Principal:
    """Who is acting: a console user, an API key, or the system itself (worker, CLI)."""

    kind: str  # "user", "key", "cli", "system", or "anonymous" (a refused login under no user's name)
    name: str
    scopes: frozenset[str]
    id: int | None = None
    role: str | None = None
    lists: frozenset[str] | None = field(default=None)  # None: every list

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    def can_use_list(self, list_name: str) -> bool:
        return self.lists is None or list_name in self.lists


SYSTEM = Principal(kind="system", name="system", scopes=frozenset(SCOPES))


def cli_principal() -> Principal:
    """The operator at the command line, who holds the machine's data folder and so every power."""
    import getpass

    try:
        who = getpass.getuser()
    except Exception:  # no login name in some containers
        who = "unknown"
    return Principal(kind="cli", name=who, scopes=frozenset(SCOPES))
