"""Goods or services per campaign item (its VAT treatment abroad) and purchase-order numbers per
advertiser (default, ``po_required``) and campaign (override) (issues 15 and 19).

Revision ID: 0012
Revises: 0020 (re-chained after merging main: … 0013 → 0015 → 0019 → 0020)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_items") as batch:
        batch.add_column(sa.Column("supply", sa.String(length=16), nullable=False, server_default="services"))
    with op.batch_alter_table("advertisers") as batch:
        batch.add_column(sa.Column("po_number", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("po_required", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("po_number", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("po_number")
    with op.batch_alter_table("advertisers") as batch:
        batch.drop_column("po_required")
        batch.drop_column("po_number")
    with op.batch_alter_table("campaign_items") as batch:
        batch.drop_column("supply")
