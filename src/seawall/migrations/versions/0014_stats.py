"""stats: page and image records, and the cube of their counts per day and month

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-01 11:30:00.000000

``stats_pages`` (one assessed URL) and ``stats_images`` (one assessed image or video) are what the
statistics count, written on confirmation or imported; ``stats_cube`` holds the csam records'
counts per day and month for each dimension and each pair of dimensions. Records of assessments
confirmed before this migration are written by ``seawall stats rebuild``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stats_pages",
        sa.Column("id", _ID, nullable=False),
        sa.Column("key", sa.String(length=220), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("reported_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("assessed_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=1), nullable=True),
        sa.Column("age_band", sa.String(length=8), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("self_generated", sa.Boolean(), nullable=False),
        sa.Column("commercial", sa.Boolean(), nullable=False),
        sa.Column("ai_generated", sa.Boolean(), nullable=False),
        sa.Column("site_type", sa.String(length=32), nullable=True),
        sa.Column("hosting_country", sa.String(length=2), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_pages")),
        sa.UniqueConstraint("key", name=op.f("uq_stats_pages_key")),
    )
    op.create_index("ix_stats_pages_day", "stats_pages", ["day"], unique=False)
    op.create_table(
        "stats_images",
        sa.Column("id", _ID, nullable=False),
        sa.Column("key", sa.String(length=220), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("assessed_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("media", sa.String(length=8), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=1), nullable=True),
        sa.Column("age_band", sa.String(length=8), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("self_generated", sa.Boolean(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_images")),
        sa.UniqueConstraint("key", name=op.f("uq_stats_images_key")),
    )
    op.create_index("ix_stats_images_day", "stats_images", ["day"], unique=False)
    op.create_table(
        "stats_cube",
        sa.Column("id", _ID, nullable=False),
        sa.Column("measure", sa.String(length=8), nullable=False),
        sa.Column("grain", sa.String(length=1), nullable=False),
        sa.Column("dims", sa.String(length=40), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("v1", sa.String(length=40), nullable=False),
        sa.Column("v2", sa.String(length=40), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_cube")),
        sa.UniqueConstraint("measure", "grain", "dims", "period", "v1", "v2", name="uq_stats_cube"),
    )


def downgrade() -> None:
    op.drop_table("stats_cube")
    op.drop_index("ix_stats_images_day", table_name="stats_images")
    op.drop_table("stats_images")
    op.drop_index("ix_stats_pages_day", table_name="stats_pages")
    op.drop_table("stats_pages")
