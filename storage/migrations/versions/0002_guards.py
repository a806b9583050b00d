"""Seed the audit chain head; on PostgreSQL, triggers that refuse rewriting invoices and the audit log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing.signatures import GENESIS
from storage.guards import PG_TRIGGER_SQL

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, :h)").bindparams(h=GENESIS))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER_SQL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in ("invoices", "invoice_lines", "audit_log"):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_immutable ON {t}")
        op.execute("DROP FUNCTION IF EXISTS billbot_refuse_rewrite()")
    op.execute("DELETE FROM audit_head")
