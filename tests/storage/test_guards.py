"""Issued invoices and the audit log cannot be rewritten: the ORM refuses, and on PostgreSQL a
trigger refuses raw SQL too. The audit chain verifies and names the first changed record."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from billing.errors import NotAllowed
from bot.workflows.audit import record, verify_chain
from storage.db import Database
from storage.models import Advertiser, Invoice, InvoiceLine, LegalEntity

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make_invoice(db: Database) -> int:
    with db.transaction() as s:
        s.add(LegalEntity(id="le", name="LE", country="DE", currency="EUR"))
        s.add(Advertiser(id="adv", name="Adv", legal_entity_id="le", currency="EUR", country="DE"))
        s.flush()
        inv = Invoice(number="INV-2026-000001", legal_entity_id="le", advertiser_id="adv", series="INV", year=2026,
                      seq=1, issue_date=date(2026, 11, 2), due_date=date(2026, 11, 16), currency="EUR",
                      net=Decimal("100.00"), vat=Decimal("19.00"), gross=Decimal("119.00"), vat_rate=Decimal("19"),
                      vat_category="S", content_hash="x" * 64, created_at=NOW)
        inv.lines = [InvoiceLine(description="Search", quantity=Decimal(1), unit="unit", unit_price=Decimal("100.00"),
                                 amount=Decimal("100.00"))]
        s.add(inv)
        s.flush()
        return inv.id


def test_the_orm_refuses_to_change_an_issued_invoice(db: Database) -> None:
    inv_id = make_invoice(db)
    with pytest.raises(NotAllowed, match="immutable .*net"), db.transaction() as s:
        s.get(Invoice, inv_id).net = Decimal("1.00")  # type: ignore[union-attr]
    with pytest.raises(NotAllowed, match="append-only"), db.transaction() as s:
        s.get(Invoice, inv_id).lines[0].amount = Decimal("1.00")  # type: ignore[union-attr]
    with pytest.raises(NotAllowed, match="never deleted"), db.transaction() as s:
        s.delete(s.get(Invoice, inv_id))
    with db.transaction() as s:  # rendering bookkeeping may change
        s.get(Invoice, inv_id).pdf_state = "done"  # type: ignore[union-attr]
    with db.read() as s:
        inv = s.get(Invoice, inv_id)
        assert inv is not None and inv.net == Decimal("100.00") and inv.pdf_state == "done"


def test_postgres_trigger_refuses_raw_sql(db: Database, backend: str) -> None:
    inv_id = make_invoice(db)
    if backend != "postgres":
        pytest.skip("the trigger exists on PostgreSQL only; SQLite relies on the ORM guard above")
    with pytest.raises(DBAPIError, match="immutable"), db.engine.begin() as c:
        c.execute(text("UPDATE invoices SET net = 1 WHERE id = :i"), {"i": inv_id})
    with db.engine.begin() as c:
        c.execute(text("UPDATE invoices SET pdf_state = 'failed' WHERE id = :i"), {"i": inv_id})
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as c:
        c.execute(text("UPDATE invoice_lines SET amount = 1"))


def test_the_audit_chain_verifies_and_names_a_changed_record(db: Database, key) -> None:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        for i in range(5):
            record(s, key=key, actor="U1", action="test.action", subject_type="thing", subject_id=i,
                   payload={"amount": Decimal("12.50"), "i": i}, now=NOW)
    with db.read() as s:
        assert verify_chain(s, key.public_key()).ok
    with db.engine.begin() as c:
        if db.dialect == "postgresql":
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable"))
        c.execute(text("UPDATE audit_log SET payload = replace(payload, '12.50', '12.51') WHERE id = 3"))
    with db.read() as s:
        res = verify_chain(s, key.public_key())
    assert not res.ok and res.first_bad == 3 and "record 3 was changed" in (res.problem or "")
