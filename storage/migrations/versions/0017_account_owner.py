"""Items held for correction have an owner (issue 17): the advertiser's account owner, a Slack user id.

Revision ID: 0017
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("advertisers") as batch:
        batch.add_column(sa.Column("account_owner", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("advertisers") as batch:
        batch.drop_column("account_owner")
