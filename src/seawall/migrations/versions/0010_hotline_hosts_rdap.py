"""hotline hosts: directory keys unique when the AS or the domain is absent; the RDAP cache's network

Revision ID: 0010
Revises: 0012
Create Date: 2026-12-02 10:00:00.000000

An RDAP answer is cached per network (``network``, ``range_start``, ``range_end``: the first and last
addresses as 32 hex digits, compared as text; PostgreSQL compares them in byte order, "C").
A directory entry keyed by an AS alone or a domain alone exists once: the (asn, domain) unique
constraint never fires when one of them is NULL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEX = sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("hotline_hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("range_start", HEX, nullable=True))
        batch_op.add_column(sa.Column("range_end", HEX, nullable=True))
        batch_op.create_unique_constraint("uq_hotline_hosts_range", ["range_start", "range_end"])
    where_asn = sa.text("domain IS NULL AND source != 'rdap'")
    where_domain = sa.text("asn IS NULL AND source != 'rdap'")
    op.create_index(
        "uq_hotline_hosts_asn_only",
        "hotline_hosts",
        ["asn"],
        unique=True,
        sqlite_where=where_asn,
        postgresql_where=where_asn,
    )
    op.create_index(
        "uq_hotline_hosts_domain_only",
        "hotline_hosts",
        ["domain"],
        unique=True,
        sqlite_where=where_domain,
        postgresql_where=where_domain,
    )


def downgrade() -> None:
    op.drop_index("uq_hotline_hosts_domain_only", table_name="hotline_hosts")
    op.drop_index("uq_hotline_hosts_asn_only", table_name="hotline_hosts")
    with op.batch_alter_table("hotline_hosts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_hotline_hosts_range", type_="unique")
        batch_op.drop_column("range_end")
        batch_op.drop_column("range_start")
        batch_op.drop_column("network")
