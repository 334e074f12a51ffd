"""PostgreSQL's triggers sum histograms by walking the added counts only, not both histograms.

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
        op.execute(triggers.HIST_ADD)


def downgrade():
    """Keep the function: the two versions return the same sums."""
