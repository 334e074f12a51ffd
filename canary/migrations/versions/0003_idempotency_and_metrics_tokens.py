"""Idempotency keys of POSTs, and tokens of the metrics kind for Prometheus scrapers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(80), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("owner", sa.String(32)),
        sa.Column("lease_until", sa.Float()),
        sa.Column("status", sa.Integer()),
        sa.Column("response", sa.Text()),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    _replace_kinds("('device', 'ingest', 'read', 'metrics')")


def downgrade():
    _replace_kinds("('device', 'ingest', 'read')")
    op.drop_index("ix_idempotency_keys_created_at", "idempotency_keys")
    op.drop_table("idempotency_keys")


def _tokens(kinds):
    """Return the tokens table as this revision defines it, with a check of these kinds."""
    return sa.Table(
        "tokens", sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("device_uuid", sa.String(64)),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger()),
        sa.CheckConstraint(f"kind IN {kinds}", name="ck_tokens_kind"),
        sa.CheckConstraint("(kind = 'device' AND device_uuid IS NOT NULL) "
                           "OR (kind <> 'device' AND device_uuid IS NULL)", name="ck_tokens_device"),
    )


def _replace_kinds(kinds):
    """Replace the check of the tokens' kinds; a tokens table made by other tools may have none."""
    if op.get_bind().dialect.name == "sqlite":
        # SQLite alters no constraint: the table is copied into one made from the definition above,
        # not from reflection, which would lose a column's inline UNIQUE.
        with op.batch_alter_table("tokens", copy_from=_tokens(kinds), recreate="always"):
            pass
        return
    op.execute("ALTER TABLE tokens DROP CONSTRAINT IF EXISTS ck_tokens_kind")
    op.create_check_constraint("ck_tokens_kind", "tokens", f"kind IN {kinds}")
