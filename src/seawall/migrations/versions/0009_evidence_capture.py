"""evidence store objects; what a capture skipped and when its page answered

Revision ID: 0009
Revises: 0011
Create Date: 2026-12-02 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0009"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evidence_objects",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped_key", sa.Text(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_objects")),
    )
    with op.batch_alter_table("evidence_objects", schema=None) as batch_op:
        batch_op.create_index("ix_evidence_objects_sha256", ["sha256"], unique=False)
        batch_op.create_index("ix_evidence_objects_subject", ["subject", "purpose"], unique=False)
    with op.batch_alter_table("hotline_captures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fetched_at", seawall.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("skipped", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("hotline_captures", schema=None) as batch_op:
        batch_op.drop_column("skipped")
        batch_op.drop_column("fetched_at")
    with op.batch_alter_table("evidence_objects", schema=None) as batch_op:
        batch_op.drop_index("ix_evidence_objects_subject")
        batch_op.drop_index("ix_evidence_objects_sha256")
    op.drop_table("evidence_objects")
