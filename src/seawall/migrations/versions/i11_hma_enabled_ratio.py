"""lists.enabled_ratio: HMA's matching_enabled_ratio, the share of contents a list is matched for

Revision ID: i11_hma
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i11_hma"
down_revision: str | None = "p15_reporting"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# If SQLite's table is rebuilt, it keeps AUTOINCREMENT: list ids are never reused (migration 0005).
_KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("lists", table_kwargs=_KEEP_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("enabled_ratio", sa.Float(), nullable=False, server_default="1.0"))


def downgrade() -> None:
    with op.batch_alter_table("lists", table_kwargs=_KEEP_AUTOINCREMENT) as batch:
        batch.drop_column("enabled_ratio")
