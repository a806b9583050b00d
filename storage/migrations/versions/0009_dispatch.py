"""Invoices leave billbot (issue 19): per-advertiser e-mail dispatch settings and the dispatch state
of each invoice (a table beside the immutable invoice).

Revision ID: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("advertisers") as batch:
        batch.add_column(sa.Column("invoice_emails", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("invoice_cc", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("dispatch", sa.String(length=16), nullable=False, server_default="email"))
    op.create_table(
        "invoice_dispatches",
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("queued_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"],
                                name="fk_invoice_dispatches_invoice_id_invoices"),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_invoice_dispatches"),
    )


def downgrade() -> None:
    op.drop_table("invoice_dispatches")
    with op.batch_alter_table("advertisers") as batch:
        batch.drop_column("dispatch")
        batch.drop_column("invoice_cc")
        batch.drop_column("invoice_emails")
