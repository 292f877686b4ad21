"""authority reports, their files and IP capture events, credentials, legal holds; evidence retention

Revision ID: p15_reporting
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "p15_reporting"
down_revision: str | None = "g18_regions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = True) -> "sa.Column[object]":
    return sa.Column(name, seawall.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "authority_reports",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("reference", sa.String(24), nullable=False, unique=True),
        sa.Column("authority", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("dedupe_key", sa.String(120), nullable=False),
        sa.Column("owner", sa.String(120), nullable=True),
        sa.Column("case_id", BigId, sa.ForeignKey("hotline_cases.id", ondelete="SET NULL"), nullable=True),
        sa.Column("assessment_id", sa.BigInteger(), nullable=True),
        sa.Column("jurisdiction", sa.String(8), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        _when("due_at"),
        _when("created_at", False),
        _when("updated_at", False),
        sa.Column("approved_by", sa.String(120), nullable=True),
        _when("approved_at"),
        sa.Column("remote_id", sa.String(64), nullable=True),
        _when("opened_at"),
        _when("submitted_at"),
        _when("retracted_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at"),
        _when("lease_until"),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_request_id", sa.String(120), nullable=True),
        sa.Column("document_id", sa.String(36), nullable=True),
        _when("retain_until"),
        sa.UniqueConstraint("authority", "dedupe_key", name="uq_authority_reports_dedupe"),
    )
    op.create_index("ix_authority_reports_state", "authority_reports", ["state"])
    op.create_index("ix_authority_reports_case", "authority_reports", ["case_id"])
    op.create_table(
        "authority_report_files",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("report_id", BigId, sa.ForeignKey("authority_reports.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=True),
        sa.Column("evidence_id", sa.String(36), nullable=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("md5", sa.String(32), nullable=True),
        sa.Column("sha1", sa.String(40), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("classification", sa.String(2), nullable=True),
        sa.Column("annotations", sa.JSON(), nullable=False),
        _when("uploaded_at"),
        sa.Column("exif", sa.JSON(), nullable=False),
        sa.Column("remote_file_id", sa.String(64), nullable=True),
        sa.Column("remote_md5", sa.String(32), nullable=True),
        sa.Column("details_sent", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_authority_report_files_report_id", "authority_report_files", ["report_id"])
    op.create_table(
        "authority_ip_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("report_id", BigId, sa.ForeignKey("authority_reports.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ip_address", sa.String(64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("event_name", sa.String(16), nullable=False),
        _when("at", False),
        sa.Column("possible_proxy", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_authority_ip_events_report_id", "authority_ip_events", ["report_id"])
    op.create_table(
        "authority_credentials",
        sa.Column("authority", sa.String(8), primary_key=True),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        _when("updated_at", False),
        sa.Column("updated_by", sa.String(120), nullable=False),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("case_id", BigId, sa.ForeignKey("hotline_cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        _when("created_at", False),
        sa.Column("released_by", sa.String(120), nullable=True),
        _when("released_at"),
    )
    op.create_index("ix_legal_holds_case", "legal_holds", ["case_id", "released_at"])
    op.add_column("evidence_objects", _when("retain_until"))
    op.create_index("ix_evidence_objects_retain_until", "evidence_objects", ["retain_until"])


def downgrade() -> None:
    op.drop_index("ix_evidence_objects_retain_until", table_name="evidence_objects")
    with op.batch_alter_table("evidence_objects") as batch:
        batch.drop_column("retain_until")
    op.drop_table("legal_holds")
    op.drop_table("authority_credentials")
    op.drop_table("authority_ip_events")
    op.drop_table("authority_report_files")
    op.drop_table("authority_reports")
