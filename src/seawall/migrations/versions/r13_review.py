"""review console: claims, skips, reveals, exposure per day, preferences

Revision ID: r13_review
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "r13_review"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, seawall.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "review_claims",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("subject", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("holder", sa.String(120), nullable=False),
        _when("claimed_at"),
        _when("expires_at"),
        sa.UniqueConstraint("subject", "subject_id", name="uq_review_claims_subject"),
    )
    op.create_index("ix_review_claims_user_id", "review_claims", ["user_id"])
    op.create_index("ix_review_claims_expires_at", "review_claims", ["expires_at"])
    op.create_table(
        "review_skips",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("subject", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _when("skipped_at"),
    )
    op.create_index("ix_review_skips_user_at", "review_skips", ["user_id", "skipped_at"])
    op.create_table(
        "review_reveals",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_id", BigId, sa.ForeignKey("hotline_items.id", ondelete="CASCADE"), nullable=False),
        _when("revealed_at"),
        _when("fetched_at", True),
        _when("ended_at", True),
        sa.Column("seconds", sa.Float(), nullable=True),
    )
    op.create_index("ix_review_reveals_user_at", "review_reveals", ["user_id", "revealed_at"])
    op.create_index("ix_review_reveals_item_id", "review_reveals", ["item_id"])
    op.create_table(
        "review_exposure",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("items_viewed", sa.Integer(), nullable=False),
        sa.Column("reveals", sa.Integer(), nullable=False),
        sa.Column("revealed_seconds", sa.Float(), nullable=False),
        sa.Column("review_seconds", sa.Float(), nullable=False),
        sa.Column("breaks", sa.Integer(), nullable=False),
        _when("active_since", True),
        _when("last_active_at", True),
        sa.UniqueConstraint("user_id", "day", name="uq_review_exposure_user_day"),
    )
    op.create_table(
        "review_preferences",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("blur", sa.Float(), nullable=True),
        sa.Column("greyscale", sa.Boolean(), nullable=True),
        sa.Column("reveal_on_hold", sa.Boolean(), nullable=True),
        _when("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("review_preferences")
    op.drop_table("review_exposure")
    op.drop_index("ix_review_reveals_item_id", "review_reveals")
    op.drop_index("ix_review_reveals_user_at", "review_reveals")
    op.drop_table("review_reveals")
    op.drop_index("ix_review_skips_user_at", "review_skips")
    op.drop_table("review_skips")
    op.drop_index("ix_review_claims_expires_at", "review_claims")
    op.drop_index("ix_review_claims_user_id", "review_claims")
    op.drop_table("review_claims")
