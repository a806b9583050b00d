"""Accounting export and invoice terms (issue 19): per-entity accounting settings, debtor accounts,
export batches and the documents each batch handed over; invoice-date and due-date rules per legal
entity, overridable per advertiser.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("legal_entities") as batch:
        batch.add_column(sa.Column("accounting", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("invoice_date_rule", sa.String(length=24), nullable=False,
                                   server_default="run_day"))
        batch.add_column(sa.Column("due_date_rule", sa.String(length=24), nullable=False, server_default="net"))
    with op.batch_alter_table("advertisers") as batch:
        batch.add_column(sa.Column("debtor_account", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("invoice_date_rule", sa.String(length=24), nullable=True))
        batch.add_column(sa.Column("due_date_rule", sa.String(length=24), nullable=True))
    op.create_table(
        "export_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("legal_entity_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("header", sa.JSON(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["legal_entity_id"], ["legal_entities.id"],
                                name="fk_export_batches_legal_entity_id_legal_entities"),
        sa.PrimaryKeyConstraint("id", name="pk_export_batches"),
    )
    op.create_table(
        "exported_documents",
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name="fk_exported_documents_invoice_id_invoices"),
        sa.ForeignKeyConstraint(["batch_id"], ["export_batches.id"],
                                name="fk_exported_documents_batch_id_export_batches"),
        sa.PrimaryKeyConstraint("format", "invoice_id", name="pk_exported_documents"),
    )
    op.create_index("ix_exported_documents_batch_id", "exported_documents", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_exported_documents_batch_id", table_name="exported_documents")
    op.drop_table("exported_documents")
    op.drop_table("export_batches")
    with op.batch_alter_table("advertisers") as batch:
        batch.drop_column("due_date_rule")
        batch.drop_column("invoice_date_rule")
        batch.drop_column("debtor_account")
    with op.batch_alter_table("legal_entities") as batch:
        batch.drop_column("due_date_rule")
        batch.drop_column("invoice_date_rule")
        batch.drop_column("accounting")
