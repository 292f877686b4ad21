"""scan runs and their partitions

Revision ID: 0015
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scan_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("principal", sa.String(length=120), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("out", sa.Text(), nullable=True),
        sa.Column("out_offset", sa.BigInteger(), nullable=False),
        sa.Column("partitions", sa.Integer(), nullable=False),
        sa.Column("partitions_done", sa.Integer(), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.Column("media", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("matches", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_runs")),
    )
    op.create_table(
        "scan_partitions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("done_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["scan_runs.id"], name=op.f("fk_scan_partitions_run_id_scan_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_partitions")),
        sa.UniqueConstraint("run_id", "number", name="uq_scan_partitions_run_number"),
    )
    with op.batch_alter_table("scan_partitions", schema=None) as batch_op:
        batch_op.create_index("ix_scan_partitions_run_state", ["run_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scan_partitions", schema=None) as batch_op:
        batch_op.drop_index("ix_scan_partitions_run_state")
    op.drop_table("scan_partitions")
    op.drop_table("scan_runs")
