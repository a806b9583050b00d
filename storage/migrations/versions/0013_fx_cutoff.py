"""FX cutoff (issue 19, item 4): per legal entity the rule for an invoice's exchange rate (the rate of the
issue date or of the service period's last day) and the maximum age of that rate; per campaign a fixed
agreed rate (and the day it was agreed).

Revision ID: 0013
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0013"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("legal_entities") as batch:
        batch.add_column(sa.Column("fx_rule", sa.String(length=24), nullable=False, server_default="issue_date"))
        batch.add_column(sa.Column("fx_max_age_days", sa.Integer(), nullable=False, server_default="7"))
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("fx_rate", storage.types.Money(20, 10), nullable=True))
        batch.add_column(sa.Column("fx_rate_date", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("fx_rate_date")
        batch.drop_column("fx_rate")
    with op.batch_alter_table("legal_entities") as batch:
        batch.drop_column("fx_max_age_days")
        batch.drop_column("fx_rule")
