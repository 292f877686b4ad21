"""tenancy: list uids and tombstones, allowlist scopes, per-caller quarantine

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000
"""

import uuid
from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild() -> Literal["always", "auto"]:
    # SQLite takes AUTOINCREMENT only from a rebuilt table; PostgreSQL alters in place (its
    # sequences never hand out an id twice anyway).
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("lists", recreate=_rebuild(), table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("allowlist_scope", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", seawall.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("former_name", sa.String(length=120), nullable=True))
    lists = sa.table("lists", sa.column("id", sa.Integer()), sa.column("uid", sa.String()))
    connection = op.get_bind()
    for (list_id,) in connection.execute(sa.select(lists.c.id)).all():
        connection.execute(sa.update(lists).where(lists.c.id == list_id).values(uid=uuid.uuid4().hex))
    with op.batch_alter_table("lists", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("uid", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_lists_uid"), ["uid"])
        batch_op.create_index(batch_op.f("ix_lists_former_name"), ["former_name"], unique=False)

    op.create_table(
        "entry_match_contents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("hour", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(length=120), nullable=False),
        sa.Column("content", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry_match_contents")),
        sa.UniqueConstraint("entry_id", "hour", "principal", "content", name="uq_entry_match_contents_identity"),
    )
    with op.batch_alter_table("entry_quarantine") as batch_op:
        batch_op.add_column(sa.Column("callers", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("everyone", sa.Boolean(), nullable=False, server_default=sa.true()))
    # Quarantines from before this revision paused everyone: they keep doing so until released.
    with op.batch_alter_table("entry_quarantine") as batch_op:
        batch_op.alter_column("callers", existing_type=sa.JSON(), server_default=None)
        batch_op.alter_column("everyone", existing_type=sa.Boolean(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("entry_quarantine") as batch_op:
        batch_op.drop_column("everyone")
        batch_op.drop_column("callers")
    op.drop_table("entry_match_contents")
    # Tombstones of deleted lists go with the columns that describe them.
    tombstones = "SELECT id FROM lists WHERE deleted_at IS NOT NULL"
    op.execute(
        f"DELETE FROM entry_opinions WHERE entry_id IN (SELECT id FROM list_entries WHERE list_id IN ({tombstones}))"
    )
    for table in ("list_changes", "list_entries", "exchanges"):
        op.execute(f"DELETE FROM {table} WHERE list_id IN ({tombstones})")
    op.execute("DELETE FROM lists WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("lists", recreate=_rebuild()) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lists_former_name"))
        batch_op.drop_constraint(batch_op.f("uq_lists_uid"), type_="unique")
        batch_op.drop_column("former_name")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("allowlist_scope")
        batch_op.drop_column("uid")
