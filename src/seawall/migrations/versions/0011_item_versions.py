"""hotline items get a version for the optimistic check of assessments

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 10:00:00.000000

Two analysts assessing the same item: each save names the item version it read, and a save based on
an older version is refused (cases have had a version since 0008).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hotline_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("hotline_items", schema=None) as batch_op:
        batch_op.drop_column("version")
