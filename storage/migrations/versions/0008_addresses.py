"""Structured addresses and the seller's legal details (issue 15 item 5): street, postcode and city of
legal entities and advertisers, the advertiser's own customer number, and the register court and
number, managing directors, bank name and BIC a legal entity's documents state.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None

ADDRESS = (("street", 200), ("postcode", 16), ("city", 100))
LEGAL_ENTITY = (*ADDRESS, ("register_court", 100), ("register_number", 64), ("managing_directors", None),
                ("bank_name", 100), ("bic", 11))
ADVERTISER = (*ADDRESS, ("customer_number", 64))


def _type(length: int | None) -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.Text() if length is None else sa.String(length)


def upgrade() -> None:
    for table, columns in (("legal_entities", LEGAL_ENTITY), ("advertisers", ADVERTISER)):
        with op.batch_alter_table(table) as batch:
            for name, length in columns:
                batch.add_column(sa.Column(name, _type(length), nullable=True))


def downgrade() -> None:
    for table, columns in (("legal_entities", LEGAL_ENTITY), ("advertisers", ADVERTISER)):
        with op.batch_alter_table(table) as batch:
            for name, _length in reversed(columns):
                batch.drop_column(name)
