"""referrals: the partner's inbound API key; delivery timing and the state reported back

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-02 09:00:00.000000

``hotline_partners.inbound_key`` names the API key a partner hotline uses at this instance, so an
incoming referral is known to come from it. ``hotline_referrals.next_attempt_at`` is when the next
delivery attempt is due (the lease of one in flight), ``reported_state`` the last state of an
incoming referral sent back to the hotline that referred it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0012"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hotline_partners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbound_key", sa.String(length=120), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_hotline_partners_inbound_key"), ["inbound_key"])
    with op.batch_alter_table("hotline_referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", seawall.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reported_state", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_hotline_referrals_next_attempt_at"), ["next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hotline_referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hotline_referrals_next_attempt_at"))
        batch_op.drop_column("reported_state")
        batch_op.drop_column("next_attempt_at")
    with op.batch_alter_table("hotline_partners", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_hotline_partners_inbound_key"), type_="unique")
        batch_op.drop_column("inbound_key")
