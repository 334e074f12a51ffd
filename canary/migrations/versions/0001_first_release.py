"""The schema of the releases before migrations: the readings table with its covering index, and tokens.

Revision ID: 0001
Revises:
Create Date: 2026-12-06

A database those releases wrote has all of this already (canary/schema.py stamps it with this
revision); a four-column readings table made by other tools gets what it lacks but the columns.
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def create_first_release_schema(bind):
    """Create what is missing of this revision's tables and indexes, keeping what is there."""
    metadata = sa.MetaData()
    readings = sa.Table(
        "readings", metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True),
        sa.Column("device_uuid", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("date_created", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("date_created", "id", name="uq_readings_date_created_id").ddl_if(dialect="postgresql"),
        sa.Index("ix_readings_device_type_time_value", "device_uuid", "type", "date_created", "value"),
    )
    readings.primary_key.ddl_if(dialect="sqlite")
    sa.Table(
        "tokens", metadata,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("device_uuid", sa.String(64)),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger()),
        sa.CheckConstraint("kind IN ('device', 'ingest', 'read')", name="ck_tokens_kind"),
        sa.CheckConstraint("(kind = 'device' AND device_uuid IS NOT NULL) "
                           "OR (kind <> 'device' AND device_uuid IS NULL)", name="ck_tokens_device"),
    )
    for table in metadata.sorted_tables:
        bind.execute(sa.schema.CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            bind.execute(sa.schema.CreateIndex(index, if_not_exists=True))


def upgrade():
    create_first_release_schema(op.get_bind())


def downgrade():
    op.drop_table("tokens")
    op.drop_table("readings")
