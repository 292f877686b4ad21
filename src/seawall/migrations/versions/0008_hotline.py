"""hotline: reports, cases, captures, items, assessments and QA, hosts, notices, referrals; rate limits

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 08:31:34.798176
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seawall.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hotline_hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asn", sa.BigInteger(), nullable=True),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("abuse_email", sa.String(length=320), nullable=True),
        sa.Column("api_endpoint", sa.String(length=2048), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("updated_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_hosts")),
        sa.UniqueConstraint("asn", "domain", name="uq_hotline_hosts_asn_domain"),
    )
    op.create_table(
        "hotline_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("sha1", sa.String(length=40), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        sa.Column("pdq_quality", sa.Integer(), nullable=True),
        sa.Column("media", sa.String(length=16), nullable=False),
        sa.Column("mime", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=True),
        sa.Column("thumbnail_id", sa.String(length=36), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("assessment_id", sa.BigInteger(), nullable=True),
        sa.Column("matches", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_items")),
        sa.UniqueConstraint("sha256", name=op.f("uq_hotline_items_sha256")),
    )
    with op.batch_alter_table("hotline_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hotline_items_md5"), ["md5"], unique=False)
        batch_op.create_index("ix_hotline_items_pdq", ["pdq"], unique=False)
        batch_op.create_index(batch_op.f("ix_hotline_items_sha1"), ["sha1"], unique=False)
        batch_op.create_index("ix_hotline_items_state", ["state"], unique=False)

    op.create_table(
        "hotline_partners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("endpoint", sa.String(length=2048), nullable=True),
        sa.Column("api_key_sealed", sa.Text(), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_partners")),
        sa.UniqueConstraint("name", name=op.f("uq_hotline_partners_name")),
    )
    with op.batch_alter_table("hotline_partners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hotline_partners_country"), ["country"], unique=False)

    op.create_table(
        "rate_limit_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_windows")),
        sa.UniqueConstraint("key", "window_start", name="uq_rate_limit_windows_key_window"),
    )
    with op.batch_alter_table("rate_limit_windows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rate_limit_windows_window_start"), ["window_start"], unique=False)

    op.create_table(
        "hotline_cases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reference", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("url_key", sa.Text(), nullable=True),
        sa.Column("url_hash", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("opened_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hosting_ip", sa.String(length=64), nullable=True),
        sa.Column("hosting_asn", sa.BigInteger(), nullable=True),
        sa.Column("hosting_as_name", sa.String(length=200), nullable=True),
        sa.Column("hosting_country", sa.String(length=2), nullable=True),
        sa.Column("hosting_behind_cdn", sa.Boolean(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hotline_hosts.id"], name=op.f("fk_hotline_cases_host_id_hotline_hosts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_cases")),
        sa.UniqueConstraint("reference", name=op.f("uq_hotline_cases_reference")),
    )
    with op.batch_alter_table("hotline_cases", schema=None) as batch_op:
        batch_op.create_index("ix_hotline_cases_state", ["state"], unique=False)
        batch_op.create_index("ix_hotline_cases_url_hash", ["url_hash"], unique=False)

    op.create_table(
        "hotline_assessments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subject", sa.String(length=8), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("assessor", sa.String(length=120), nullable=False),
        sa.Column("assessed_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=1), nullable=True),
        sa.Column("age_band", sa.String(length=8), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("children", sa.Integer(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("site_type", sa.String(length=32), nullable=True),
        sa.Column("url_level", sa.String(length=8), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("derived", sa.Boolean(), nullable=False),
        sa.Column("inherited_from", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("audit_sample", sa.Boolean(), nullable=False),
        sa.Column("decided_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["hotline_cases.id"],
            name=op.f("fk_hotline_assessments_case_id_hotline_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["hotline_items.id"],
            name=op.f("fk_hotline_assessments_item_id_hotline_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_assessments")),
    )
    with op.batch_alter_table("hotline_assessments", schema=None) as batch_op:
        batch_op.create_index("ix_hotline_assessments_assessed_at", ["assessed_at"], unique=False)
        batch_op.create_index("ix_hotline_assessments_case", ["case_id"], unique=False)
        batch_op.create_index("ix_hotline_assessments_item", ["item_id"], unique=False)
        batch_op.create_index("ix_hotline_assessments_state", ["state"], unique=False)

    op.create_table(
        "hotline_notices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=2048), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("send_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("next_check_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("removed_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("takedown_seconds", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["hotline_cases.id"], name=op.f("fk_hotline_notices_case_id_hotline_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hotline_hosts.id"],
            name=op.f("fk_hotline_notices_host_id_hotline_hosts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_notices")),
    )
    with op.batch_alter_table("hotline_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hotline_notices_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_hotline_notices_due", ["state", "next_check_at"], unique=False)

    op.create_table(
        "hotline_referrals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("remote_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["hotline_cases.id"],
            name=op.f("fk_hotline_referrals_case_id_hotline_cases"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["hotline_partners.id"],
            name=op.f("fk_hotline_referrals_partner_id_hotline_partners"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_referrals")),
        sa.UniqueConstraint("partner_id", "direction", "remote_id", name="uq_hotline_referrals_remote"),
        sa.UniqueConstraint("uid", name=op.f("uq_hotline_referrals_uid")),
    )
    op.create_table(
        "hotline_reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reference", sa.String(length=20), nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("content_type", sa.String(length=16), nullable=True),
        sa.Column("site_type", sa.String(length=32), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("contact_sealed", sa.Text(), nullable=True),
        sa.Column("partner", sa.String(length=120), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("age_band", sa.String(length=8), nullable=True),
        sa.Column("reported_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["hotline_cases.id"],
            name=op.f("fk_hotline_reports_case_id_hotline_cases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_reports")),
        sa.UniqueConstraint("partner", "external_id", name="uq_hotline_reports_partner_external"),
        sa.UniqueConstraint("reference", name=op.f("uq_hotline_reports_reference")),
    )
    with op.batch_alter_table("hotline_reports", schema=None) as batch_op:
        batch_op.create_index("ix_hotline_reports_case", ["case_id"], unique=False)
        batch_op.create_index("ix_hotline_reports_reported_at", ["reported_at"], unique=False)

    op.create_table(
        "hotline_captures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("notice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", seawall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("final_url", sa.String(length=2048), nullable=True),
        sa.Column("redirects", sa.JSON(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("tls", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("media_found", sa.Integer(), nullable=False),
        sa.Column("media_sha256", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["hotline_cases.id"],
            name=op.f("fk_hotline_captures_case_id_hotline_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["hotline_notices.id"],
            name=op.f("fk_hotline_captures_notice_id_hotline_notices"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_captures")),
    )
    with op.batch_alter_table("hotline_captures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hotline_captures_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_hotline_captures_notice_id"), ["notice_id"], unique=False)

    op.create_table(
        "hotline_qa_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("assessment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reviewer", sa.String(length=120), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("decided_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assessment_id"],
            ["hotline_assessments.id"],
            name=op.f("fk_hotline_qa_decisions_assessment_id_hotline_assessments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_qa_decisions")),
    )
    with op.batch_alter_table("hotline_qa_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hotline_qa_decisions_assessment_id"), ["assessment_id"], unique=False)

    op.create_table(
        "hotline_report_signals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("signal_type", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["hotline_reports.id"],
            name=op.f("fk_hotline_report_signals_report_id_hotline_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_report_signals")),
        sa.UniqueConstraint("report_id", "signal_type", "value", name="uq_hotline_report_signals"),
    )
    with op.batch_alter_table("hotline_report_signals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hotline_report_signals_report_id"), ["report_id"], unique=False)

    op.create_table(
        "hotline_case_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("capture_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("media_url", sa.String(length=2048), nullable=False),
        sa.Column("found_as", sa.String(length=16), nullable=False),
        sa.Column("added_at", seawall.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["capture_id"],
            ["hotline_captures.id"],
            name=op.f("fk_hotline_case_items_capture_id_hotline_captures"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["hotline_cases.id"],
            name=op.f("fk_hotline_case_items_case_id_hotline_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["hotline_items.id"],
            name=op.f("fk_hotline_case_items_item_id_hotline_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_case_items")),
        sa.UniqueConstraint("case_id", "item_id", name="uq_hotline_case_items"),
    )
    with op.batch_alter_table("hotline_case_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hotline_case_items_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_hotline_case_items_item_id"), ["item_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hotline_case_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hotline_case_items_item_id"))
        batch_op.drop_index(batch_op.f("ix_hotline_case_items_case_id"))

    op.drop_table("hotline_case_items")
    with op.batch_alter_table("hotline_report_signals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hotline_report_signals_report_id"))

    op.drop_table("hotline_report_signals")
    with op.batch_alter_table("hotline_qa_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hotline_qa_decisions_assessment_id"))

    op.drop_table("hotline_qa_decisions")
    with op.batch_alter_table("hotline_captures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hotline_captures_notice_id"))
        batch_op.drop_index(batch_op.f("ix_hotline_captures_case_id"))

    op.drop_table("hotline_captures")
    with op.batch_alter_table("hotline_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_hotline_reports_reported_at")
        batch_op.drop_index("ix_hotline_reports_case")

    op.drop_table("hotline_reports")
    op.drop_table("hotline_referrals")
    with op.batch_alter_table("hotline_notices", schema=None) as batch_op:
        batch_op.drop_index("ix_hotline_notices_due")
        batch_op.drop_index(batch_op.f("ix_hotline_notices_case_id"))

    op.drop_table("hotline_notices")
    with op.batch_alter_table("hotline_assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_hotline_assessments_state")
        batch_op.drop_index("ix_hotline_assessments_item")
        batch_op.drop_index("ix_hotline_assessments_case")
        batch_op.drop_index("ix_hotline_assessments_assessed_at")

    op.drop_table("hotline_assessments")
    with op.batch_alter_table("hotline_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_hotline_cases_url_hash")
        batch_op.drop_index("ix_hotline_cases_state")

    op.drop_table("hotline_cases")
    with op.batch_alter_table("rate_limit_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rate_limit_windows_window_start"))

    op.drop_table("rate_limit_windows")
    with op.batch_alter_table("hotline_partners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hotline_partners_country"))

    op.drop_table("hotline_partners")
    with op.batch_alter_table("hotline_items", schema=None) as batch_op:
        batch_op.drop_index("ix_hotline_items_state")
        batch_op.drop_index(batch_op.f("ix_hotline_items_sha1"))
        batch_op.drop_index("ix_hotline_items_pdq")
        batch_op.drop_index(batch_op.f("ix_hotline_items_md5"))

    op.drop_table("hotline_items")
    op.drop_table("hotline_hosts")
