"""Correct documents (issue 15): a linear item may opt in to the delivery check (``variance_check``).

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_items") as batch:
        batch.add_column(sa.Column("variance_check", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("campaign_items") as batch:
        batch.drop_column("variance_check")
