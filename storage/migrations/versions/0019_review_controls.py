"""Review controls (issue 21): the routing and checklist an exception was opened under.

Revision ID: 0019
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exceptions") as batch:
        batch.add_column(sa.Column("review", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exceptions") as batch:
        batch.drop_column("review")
