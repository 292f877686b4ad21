"""lists

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:17:04.743207
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("allowlist", sa.Boolean(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("dihedral", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_lists_name")),
    )
    op.create_table(
        "list_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("op", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("changed_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_list_changes_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_changes")),
        sa.UniqueConstraint("list_id", "revision", name="uq_list_changes_revision"),
    )
    op.create_table(
        "list_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("signal_type", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=2048), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("disabled_until", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("added_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=120), nullable=False),
        sa.Column("match_count", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_list_entries_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_entries")),
        sa.UniqueConstraint("list_id", "signal_type", "value", "external_id", name="uq_list_entries_identity"),
    )
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.create_index("ix_list_entries_list_status", ["list_id", "status"], unique=False)

    op.create_table(
        "entry_opinions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["list_entries.id"], name=op.f("fk_entry_opinions_entry_id_list_entries"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry_opinions")),
    )
    with op.batch_alter_table("entry_opinions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entry_opinions_entry_id"), ["entry_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("entry_opinions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entry_opinions_entry_id"))

    op.drop_table("entry_opinions")
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_list_entries_list_status")

    op.drop_table("list_entries")
    op.drop_table("list_changes")
    op.drop_table("lists")
