"""stats_cube.v3: the cube holds every triple of dimensions by month, then is rebuilt to fill them

Revision ID: s16_cube_triples
Revises: i11_hma
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision: str = "s16_cube_triples"
down_revision: str | None = "i11_hma"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KEY = ["measure", "grain", "dims", "period", "v1", "v2"]


def upgrade() -> None:
    with op.batch_alter_table("stats_cube") as batch:
        batch.add_column(sa.Column("v3", sa.String(40), nullable=False, server_default=""))
        batch.alter_column("dims", type_=sa.String(80), existing_type=sa.String(40), existing_nullable=False)
        batch.drop_constraint("uq_stats_cube", type_="unique")
        batch.create_unique_constraint("uq_stats_cube", [*_OLD_KEY, "v3"])
    # The cube is derived from the records: recompute it so that the triples are there before the
    # first question that reads them (one grouped scan of the records).
    from seawall.stats.service import rebuild_cube

    with Session(bind=op.get_bind()) as session:
        rebuild_cube(session)
        session.flush()


def downgrade() -> None:
    op.execute("DELETE FROM stats_cube WHERE v3 <> '' OR dims LIKE '%,%,%'")
    with op.batch_alter_table("stats_cube") as batch:
        batch.drop_constraint("uq_stats_cube", type_="unique")
        batch.create_unique_constraint("uq_stats_cube", _OLD_KEY)
        batch.alter_column("dims", type_=sa.String(40), existing_type=sa.String(80), existing_nullable=False)
        batch.drop_column("v3")
