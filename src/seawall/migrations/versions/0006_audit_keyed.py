"""audit keyed: an HMAC of every audit event with a key kept outside the database

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00.000000

Existing events get their MAC here, with the audit key of the configuration this runs with
(SEAWALL_AUDIT_KEY_FILE, default SEAWALL_HOME/audit.key; created when absent). The chain is only
as trustworthy as it was before this migration: events rewritten earlier are keyed as they are now.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
    _mac_existing_events()
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("mac", existing_type=sa.String(length=64), nullable=False)


def _mac_existing_events() -> None:
    # The chain's own canonical form and key loading, so the MACs are exactly what verification checks.
    from seawall.auth import audit
    from seawall.config import get_settings

    events = sa.table(
        "audit_events",
        sa.column("seq", sa.BigInteger()),
        sa.column("occurred_at", seawall.db.UTCDateTime(timezone=True)),
        sa.column("actor_type", sa.String()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("object_type", sa.String()),
        sa.column("object_id", sa.String()),
        sa.column("details", sa.JSON()),
        sa.column("prev_hash", sa.String()),
        sa.column("mac", sa.String()),
    )
    head = sa.table("audit_head", sa.column("id", sa.Integer()), sa.column("key_id", sa.String()))
    connection = op.get_bind()
    if connection.execute(sa.select(events.c.seq).limit(1)).first() is None:
        return  # a new chain: its first event chooses the key
    key = audit.load_key(get_settings(), create=True)
    last = -(2**62)
    while True:
        rows = connection.execute(
            sa.select(events).where(events.c.seq > last).order_by(events.c.seq).limit(_BATCH)
        ).all()
        if not rows:
            break
        for row in rows:
            canonical = audit.canonical_event(
                seq=row.seq,
                occurred_at=row.occurred_at,
                actor_type=row.actor_type,
                actor=row.actor,
                action=row.action,
                object_type=row.object_type,
                object_id=row.object_id,
                details=row.details,
                prev_hash=row.prev_hash,
            )
            connection.execute(sa.update(events).where(events.c.seq == row.seq).values(mac=key.mac(canonical)))
        last = rows[-1].seq
    connection.execute(sa.update(head).where(head.c.id == 1).values(key_id=key.key_id))


def downgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("key_id")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("mac")
