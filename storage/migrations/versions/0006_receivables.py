"""Money in: bank-statement payments, their allocations to invoices, payer accounts (issue 18).

Revision ID: 0006
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0006"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=34), nullable=False),
        sa.Column("entry_ref", sa.String(length=100), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("amount", storage.types.Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payer_name", sa.String(length=200), nullable=True),
        sa.Column("payer_iban", sa.String(length=34), nullable=True),
        sa.Column("payer_bic", sa.String(length=11), nullable=True),
        sa.Column("remittance", sa.Text(), nullable=True),
        sa.Column("end_to_end_id", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("unapplied", storage.types.Money(), nullable=False),
        sa.Column("source_file", sa.String(length=500), nullable=True),
        sa.Column("location", sa.String(length=500), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("account", "entry_ref", "booking_date", "amount", name="uq_payments_entry"),
    )
    op.create_index("ix_payments_state", "payments", ["state"], unique=False)
    op.create_index(op.f("ix_payments_payer_iban"), "payments", ["payer_iban"], unique=False)
    op.create_table(
        "payment_allocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", storage.types.Money(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_payment_allocations_invoice_id_invoices")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_payment_allocations_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_allocations")),
    )
    op.create_index(op.f("ix_payment_allocations_invoice_id"), "payment_allocations", ["invoice_id"], unique=False)
    op.create_index(op.f("ix_payment_allocations_payment_id"), "payment_allocations", ["payment_id"], unique=False)
    op.create_table(
        "payer_accounts",
        sa.Column("iban", sa.String(length=34), nullable=False),
        sa.Column("advertiser_id", sa.String(length=64), nullable=False),
        sa.Column("learned_from_payment_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["advertiser_id"], ["advertisers.id"], name=op.f("fk_payer_accounts_advertiser_id_advertisers")),
        sa.PrimaryKeyConstraint("iban", name=op.f("pk_payer_accounts")),
    )
    op.create_index(op.f("ix_payer_accounts_advertiser_id"), "payer_accounts", ["advertiser_id"], unique=False)
    op.add_column("legal_entities", sa.Column("dunning", sa.JSON(), nullable=True))
    op.create_table(
        "invoice_holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_holds_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_holds")),
    )
    op.create_index(op.f("ix_invoice_holds_invoice_id"), "invoice_holds", ["invoice_id"], unique=False)
    op.create_table(
        "dunning_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("letter_date", sa.Date(), nullable=False),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("open_amount", storage.types.Money(), nullable=False),
        sa.Column("fee", storage.types.Money(), nullable=False),
        sa.Column("interest", storage.types.Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("pdf_path", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_dunning_letters_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dunning_letters")),
        sa.UniqueConstraint("invoice_id", "level", name="uq_dunning_letters_level"),
    )
    op.create_index(op.f("ix_dunning_letters_invoice_id"), "dunning_letters", ["invoice_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dunning_letters_invoice_id"), table_name="dunning_letters")
    op.drop_table("dunning_letters")
    op.drop_index(op.f("ix_invoice_holds_invoice_id"), table_name="invoice_holds")
    op.drop_table("invoice_holds")
    with op.batch_alter_table("legal_entities") as batch:
        batch.drop_column("dunning")
    op.drop_index(op.f("ix_payer_accounts_advertiser_id"), table_name="payer_accounts")
    op.drop_table("payer_accounts")
    op.drop_index(op.f("ix_payment_allocations_payment_id"), table_name="payment_allocations")
    op.drop_index(op.f("ix_payment_allocations_invoice_id"), table_name="payment_allocations")
    op.drop_table("payment_allocations")
    op.drop_index(op.f("ix_payments_payer_iban"), table_name="payments")
    op.drop_index("ix_payments_state", table_name="payments")
    op.drop_table("payments")
