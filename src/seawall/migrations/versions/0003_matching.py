"""matching

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:24:26.561430
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entry_match_buckets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("hour", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry_match_buckets")),
        sa.UniqueConstraint("entry_id", "hour", name="uq_entry_match_buckets_entry_hour"),
    )
    op.create_table(
        "entry_quarantine",
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("since", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("released_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_entry_quarantine")),
    )
    op.create_table(
        "match_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("match_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(length=120), nullable=False),
        sa.Column("media", sa.String(length=16), nullable=True),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("matches", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("shadow_actions", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("allowlisted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_events")),
        sa.UniqueConstraint("match_id", name=op.f("uq_match_events_match_id")),
    )
    with op.batch_alter_table("match_events", schema=None) as batch_op:
        batch_op.create_index("ix_match_events_at", ["occurred_at"], unique=False)

    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("stop", sa.Boolean(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("name", name=op.f("uq_policies_name")),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sa.UniqueConstraint("name", name=op.f("uq_webhooks_name")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("match_id", sa.String(length=36), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_state", ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_webhook_id"), ["webhook_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_webhook_id"))
        batch_op.drop_index("ix_webhook_deliveries_state")

    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("policies")
    with op.batch_alter_table("match_events", schema=None) as batch_op:
        batch_op.drop_index("ix_match_events_at")

    op.drop_table("match_events")
    op.drop_table("entry_quarantine")
    op.drop_table("entry_match_buckets")
