"""stats_cube: every dimension alone, pair and triple by ISO week too (grain "w"), filled by a rebuild

Revision ID: s16_cube_weeks
Revises: s16_cube_triples
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision: str = "s16_cube_weeks"
down_revision: str | None = "s16_cube_triples"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The cube is derived from the records: recompute it so that the weeks are there before the
    # first weekly question reads them (one grouped scan of the records). The triples' migration,
    # when it ran just before, already rebuilt it with today's grains.
    from seawall.stats.service import rebuild_cube

    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM stats_cube WHERE grain = 'w' LIMIT 1")).first() is not None:
        return
    with Session(bind=bind) as session:
        rebuild_cube(session)
        session.flush()


def downgrade() -> None:
    op.execute("DELETE FROM stats_cube WHERE grain = 'w'")
