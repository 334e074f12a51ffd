"""PostgreSQL's triggers sum histograms by walking the added counts only, not both histograms.

Its functions are superseded by those of 0005, which replaces every trigger and function, so the
upgrade does nothing here any more.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    """Nothing left to do: 0005 replaces every trigger and function with the current ones."""


def downgrade():
    """Keep the functions: both versions count the same."""
