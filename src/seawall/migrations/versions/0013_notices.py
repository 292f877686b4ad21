"""notices: when a notice was closed, and the id its recipient gave the message

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-01 12:00:00.000000

``hotline_notices.closed_at`` is when an analyst closed the notice; ``message_id`` the SMTP
Message-ID of the notice as sent, or the reference a host's API answered with.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0013"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hotline_notices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", seawall.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("message_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hotline_notices", schema=None) as batch_op:
        batch_op.drop_column("message_id")
        batch_op.drop_column("closed_at")
