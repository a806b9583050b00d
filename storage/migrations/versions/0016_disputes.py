"""Disputes as records and partial credit notes (issue 20).

Revision ID: 0016
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("invoice_number", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("amount", storage.types.Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("client_contact", sa.String(length=200), nullable=True),
        sa.Column("client_reference", sa.String(length=100), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("resolved_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("credited", storage.types.Money(), nullable=False),
        sa.Column("days_open", sa.Integer(), nullable=True),
        sa.Column("credit_request_id", sa.Integer(), nullable=True),
        sa.Column("remind_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("due_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("reminded_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("escalated_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("evidence_path", sa.String(length=500), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("message_ts", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_disputes_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
    )
    op.create_index("ix_disputes_state", "disputes", ["state"], unique=False)
    op.create_index(op.f("ix_disputes_invoice_id"), "disputes", ["invoice_id"], unique=False)
    with op.batch_alter_table("credit_note_requests") as batch:
        batch.add_column(sa.Column("partial", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("dispute_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credit_note_requests") as batch:
        batch.drop_column("dispute_id")
        batch.drop_column("partial")
    op.drop_index(op.f("ix_disputes_invoice_id"), table_name="disputes")
    op.drop_index("ix_disputes_state", table_name="disputes")
    op.drop_table("disputes")
