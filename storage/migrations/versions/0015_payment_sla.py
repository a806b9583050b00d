"""SLA timers on cash-application exceptions (issue 18): a payment a person must settle (unmatched,
over- or under-paid beyond the tolerance) carries ``sla_state`` / ``remind_at`` / ``due_at`` and the
sweep's ``reminded_at`` / ``escalated_at``, like the rows of ``exceptions``; ``channel`` /
``message_ts`` locate its Slack message for the reminder thread.

Revision ID: 0015
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("sla_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("remind_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("due_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("reminded_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("escalated_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("channel", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("message_ts", sa.String(length=32), nullable=True))
        batch.create_index("ix_payments_sla_state_due", ["sla_state", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_index("ix_payments_sla_state_due")
        for col in ("message_ts", "channel", "escalated_at", "reminded_at", "due_at", "remind_at", "sla_state"):
            batch.drop_column(col)
