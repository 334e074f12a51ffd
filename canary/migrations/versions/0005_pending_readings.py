"""Inserted readings wait to be folded into the rollups, off the hot path, rather than counted by the insert.

SQLite: rollup_state.folded_rowid marks the last reading the rollups count, set here to the last
stored one, since the previous triggers counted every insert. PostgreSQL: rollup_log holds what its
insert trigger now appends. The triggers are replaced in the same transaction, under the write
lock (SQLite) or a SHARE lock on readings (PostgreSQL), so that no reading is counted twice or not
at all. Where the triggers are not there (a table made anew, or rollups never built) they are put
in place only on an empty table; otherwise the builder arms them and rebuilds the rollups.
rollup_pause, which let the app's batches count their own readings, goes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from canary.statistics import triggers

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    dialect = bind.dialect.name
    if dialect == "postgresql":
        op.execute("LOCK TABLE readings IN SHARE MODE")
    op.add_column("rollup_state", sa.Column("folded_rowid", sa.BigInteger()))
    op.create_table(
        "rollup_log",
        sa.Column("device_uuid", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("date_created", sa.BigInteger(), nullable=False),
    )
    empty = bind.execute(sa.text("SELECT 1 FROM readings LIMIT 1")).first() is None
    armed = empty or _armed(bind)
    for statement in triggers.drop_statements(dialect):
        op.execute(statement)
    if dialect == "sqlite":
        op.execute("UPDATE rollup_state SET folded_rowid = (SELECT coalesce(max(rowid), 0) FROM readings)")
    if armed:  # otherwise the builder arms them and rebuilds the rollups of the stored readings
        for statement in triggers.create_statements(dialect):
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in triggers.postgresql_functions():
            op.execute(statement)
    op.drop_table("rollup_pause")


def _armed(bind):
    if bind.dialect.name == "postgresql":
        return bind.execute(sa.text("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('readings') "
                                    "AND tgname = 'canary_rollups_insert'")).scalar() > 0
    return bind.execute(sa.text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                "AND name = 'canary_rollups_insert'")).scalar() > 0


def downgrade():
    """Leave the rollups unarmed: the previous release's builder arms its own triggers and rebuilds them."""
    for statement in triggers.drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    op.create_table("rollup_pause", sa.Column("id", sa.Integer(), primary_key=True))
    op.drop_table("rollup_log")
    op.drop_column("rollup_state", "folded_rowid")
