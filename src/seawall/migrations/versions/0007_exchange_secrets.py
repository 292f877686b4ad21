"""exchange secrets encrypted at rest

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 09:00:00.000000

Each secret field of a stored exchange config (the NCMEC password, StopNCII keys, a Seawall feed's
API key, a file's bearer token) becomes ``sealed:<token>``, encrypted under the instance's key
(seawall.secrets, keyed from SEAWALL_SECRET_KEY or SEAWALL_HOME/secret.key). The built-in types'
secret fields are named here as they were at this revision; a plugin's come from the plugin, when it
is installed (otherwise its secrets stay as they are until its config is next saved).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

SEALED = "sealed:"
SECRET_FIELDS: dict[str, set[str]] = {
    "file": {"bearer_token"},
    "seawall": {"api_key"},
    "ncmec": {"password"},
    "stopncii": {"subscription_key", "fetch_function_key", "feedback_function_key"},
}

exchanges = sa.table(
    "exchanges", sa.column("id", sa.Integer), sa.column("type", sa.String), sa.column("config", sa.JSON)
)


def _secret_fields(type_name: str) -> set[str] | None:
    if type_name in SECRET_FIELDS:
        return SECRET_FIELDS[type_name]
    try:
        from seawall.lists.exchanges.base import get_exchange_type

        return get_exchange_type(type_name).secret_fields()
    except Exception:  # a plugin absent or broken: leave its rows alone, and say so
        return None


def _rewrite(change: Callable[[str], str | None]) -> None:
    """Apply ``change`` to every secret value of every exchange (None: leave the value as it is)."""
    connection = op.get_bind()
    for row in connection.execute(sa.select(exchanges.c.id, exchanges.c.type, exchanges.c.config)).all():
        config: dict[str, Any] = dict(row.config or {})
        fields = _secret_fields(row.type)
        if fields is None:
            log.warning("exchange %s: type %r unknown, its secrets were left as they are", row.id, row.type)
            continue
        changed = False
        for name in fields:
            value = config.get(name)
            if isinstance(value, str) and value:
                new = change(value)
                if new is not None and new != value:
                    config[name], changed = new, True
        if changed:
            connection.execute(sa.update(exchanges).where(exchanges.c.id == row.id).values(config=config))


def _settings() -> Any:
    from seawall.config import get_settings

    return get_settings()


def upgrade() -> None:
    from seawall.secrets import encrypt_secret

    settings: Any = None

    def seal(value: str) -> str | None:
        nonlocal settings
        if value.startswith(SEALED):
            return None
        settings = settings or _settings()  # read (and a key generated) only when there is a secret
        return SEALED + encrypt_secret(settings, value)

    _rewrite(seal)


def downgrade() -> None:
    from seawall.secrets import decrypt_secret

    settings: Any = None

    def unseal(value: str) -> str | None:
        nonlocal settings
        if not value.startswith(SEALED):
            return None
        settings = settings or _settings()
        return decrypt_secret(settings, value.removeprefix(SEALED))

    _rewrite(unseal)
