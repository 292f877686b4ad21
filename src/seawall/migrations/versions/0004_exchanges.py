"""exchanges

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.JSON(), nullable=True),
        sa.Column("last_run_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_added", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.Integer(), nullable=False),
        sa.Column("last_retired", sa.Integer(), nullable=False),
        sa.Column("running_since", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_exchanges_list_id_lists"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchanges")),
        sa.UniqueConstraint("name", name=op.f("uq_exchanges_name")),
    )
    op.create_index(op.f("ix_exchanges_list_id"), "exchanges", ["list_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_exchanges_list_id"), table_name="exchanges")
    op.drop_table("exchanges")
