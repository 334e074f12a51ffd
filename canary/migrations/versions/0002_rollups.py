"""Rollups: histograms per hour, day and week of each device and type, kept exact by triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

The triggers are put in place by the latest migration that defines them (0005), on an empty table,
or else by the builder, which then builds the histograms of the readings already stored in the
background, in small transactions (canary/statistics/builder.py): rollup_state starts as
"building", and until it is "ready" each answer reads the raw readings of what the rebuild has
not reached.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from canary.statistics import triggers

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "rollups",
        sa.Column("type", sa.String(16), primary_key=True),
        sa.Column("level", sa.Integer(), primary_key=True),
        sa.Column("bucket", sa.BigInteger(), primary_key=True),
        sa.Column("device_uuid", sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql"),
                  primary_key=True),
        sa.Column("hist", sa.Text().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_rollups_device", "rollups", ["device_uuid", "type", "level", "bucket"])
    state = op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("frontier_device", sa.String(64)),
        sa.Column("frontier_type", sa.String(16)),
        sa.Column("frontier_date", sa.BigInteger()),
        sa.Column("builder", sa.String(64)),
        sa.Column("lease_until", sa.Float()),
    )
    op.create_table(
        "rollup_exceptions",
        sa.Column("device_uuid", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(16), primary_key=True),
    )
    op.create_table("rollup_pause", sa.Column("id", sa.Integer(), primary_key=True))
    bind = op.get_bind()
    empty = bind.execute(sa.text("SELECT 1 FROM readings LIMIT 1")).first() is None
    op.bulk_insert(state, [{"id": 1, "status": "ready" if empty else "building"}])


def downgrade():
    for statement in triggers.drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    for table in ("rollup_pause", "rollup_exceptions", "rollup_state", "rollups"):
        op.drop_table(table)
