"""FX cutoff (issue 19, item 4): per legal entity the rule for an invoice's exchange rate (the rate of the
issue date or of the service period's last day) and the maximum age of that rate; per campaign a fixed
agreed rate (and the day it was agreed). Accounting export: payment allocations and write-offs booked
per format (``exported_allocations``). One-off and adjusted invoices: a pre-invoice without a campaign
(``campaign_id`` nullable) and per-pre-invoice header ``overrides`` (payment terms, recipient, notes).

Revision ID: 0013
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0013"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("legal_entities") as batch:
        batch.add_column(sa.Column("fx_rule", sa.String(length=24), nullable=False, server_default="issue_date"))
        batch.add_column(sa.Column("fx_max_age_days", sa.Integer(), nullable=False, server_default="7"))
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("fx_rate", storage.types.Money(20, 10), nullable=True))
        batch.add_column(sa.Column("fx_rate_date", sa.Date(), nullable=True))
    with op.batch_alter_table("preinvoices") as batch:
        batch.alter_column("campaign_id", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("overrides", sa.JSON(), nullable=True))
    op.create_table(
        "exported_allocations",
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("allocation_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["allocation_id"], ["payment_allocations.id"],
                                name=op.f("fk_exported_allocations_allocation_id_payment_allocations")),
        sa.ForeignKeyConstraint(["batch_id"], ["export_batches.id"],
                                name=op.f("fk_exported_allocations_batch_id_export_batches")),
        sa.PrimaryKeyConstraint("format", "allocation_id", name=op.f("pk_exported_allocations")),
    )
    op.create_index(op.f("ix_exported_allocations_batch_id"), "exported_allocations", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_exported_allocations_batch_id"), table_name="exported_allocations")
    op.drop_table("exported_allocations")
    with op.batch_alter_table("preinvoices") as batch:
        batch.drop_column("overrides")
        batch.alter_column("campaign_id", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("fx_rate_date")
        batch.drop_column("fx_rate")
    with op.batch_alter_table("legal_entities") as batch:
        batch.drop_column("fx_max_age_days")
        batch.drop_column("fx_rule")
