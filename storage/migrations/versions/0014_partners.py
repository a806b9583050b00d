"""Partners: an optional parent of advertisers (branches), invoiced per branch or consolidated (issue 19).

Revision ID: 0014
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partners",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("invoicing", sa.String(length=16), nullable=False, server_default="per_branch"),
        sa.Column("head_office_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("advertisers") as b:
        b.add_column(sa.Column("partner_id", sa.String(length=64), nullable=True))
        b.create_index("ix_advertisers_partner_id", ["partner_id"])
        b.create_foreign_key("fk_advertisers_partner_id", "partners", ["partner_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("advertisers") as b:
        b.drop_constraint("fk_advertisers_partner_id", type_="foreignkey")
        b.drop_index("ix_advertisers_partner_id")
        b.drop_column("partner_id")
    op.drop_table("partners")
