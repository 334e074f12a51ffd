"""PostgreSQL's triggers sum histograms by walking the added counts only, not both histograms.

The functions are replaced, the triggers left as they are: a table whose triggers are gone stays
unarmed until the rollups are rebuilt.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""
from alembic import op

from canary.statistics import triggers

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in triggers.postgresql_functions():
            op.execute(statement)


def downgrade():
    """Keep the functions: both versions count the same."""
