"""Owners of exceptions (issue 21): the exception's owner and the legal entity's default owner (the
advertiser's account owner came with 0017) (the rules that pick an exception's owner).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exceptions") as b:
        b.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
    with op.batch_alter_table("legal_entities") as b:
        b.add_column(sa.Column("default_owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("legal_entities") as b:
        b.drop_column("default_owner")
    with op.batch_alter_table("exceptions") as b:
        b.drop_column("owner")
