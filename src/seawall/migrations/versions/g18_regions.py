"""region matching: a list's switch, an entry's and a hotline item's trimmed-picture hash

Revision ID: g18_regions
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "g18_regions"
down_revision: str | None = "r13_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# If SQLite's table is rebuilt, it keeps AUTOINCREMENT: list ids are never reused (migration 0005).
_KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("lists", table_kwargs=_KEEP_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("regions", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("list_entries") as batch:
        batch.add_column(sa.Column("trimmed_value", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("trimmed_box", sa.JSON(), nullable=True))
    with op.batch_alter_table("hotline_items") as batch:
        batch.add_column(sa.Column("pdq_trimmed", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("pdq_trimmed_box", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hotline_items") as batch:
        batch.drop_column("pdq_trimmed_box")
        batch.drop_column("pdq_trimmed")
    with op.batch_alter_table("list_entries") as batch:
        batch.drop_column("trimmed_box")
        batch.drop_column("trimmed_value")
    with op.batch_alter_table("lists", table_kwargs=_KEEP_AUTOINCREMENT) as batch:
        batch.drop_column("regions")
