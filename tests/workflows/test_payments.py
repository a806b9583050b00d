"""Money in: bank files → payments → cash application → invoice payment states, on real-shaped
camt.053 (001.02 and 001.08), camt.054 and MT940 files from tests/fixtures/bank/."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from billing.errors import NotAllowed
from bot.workflows import payments as wf
from storage.db import Database
from storage.models import AuditLog, Payment, PaymentAllocation, QuarantineRow
from tests.factories import add_user, base, invoice, utc

BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank"
ORDER = ("camt053_v02.xml", "mt940.sta", "camt053_v08.xml", "camt054_v08.xml")


@pytest.fixture
def ledger(db: Database) -> dict[str, int]:
    """Five invoices issued 2026-03-01 (due 2026-03-31) and one issued 2026-03-20 (due 2026-04-19)."""
    base(db)
    add_user(db, "UCASH", ["cash_applier"])
    made = {n: invoice(db, number=n, created_at=utc(2026, 3, 1, 9), gross=g, advertiser=a) for n, g, a in (
        ("INV-2026-000001", "1190.00", "adv-1"), ("INV-2026-000002", "595.00", "adv-1"),
        ("INV-2026-000003", "238.00", "adv-1"), ("INV-2026-000004", "1000.00", "adv-2"),
        ("INV-2026-000005", "500.00", "adv-2"))}
    made["INV-2026-000006"] = invoice(db, number="INV-2026-000006", created_at=utc(2026, 3, 20, 9), gross="300.00",
                                      advertiser="adv-1")
    return made


def _import_all(db: Database, key: Any) -> list[wf.ImportResult]:
    return [wf.import_statement(db, BANK / f, actor="UOPS", key=key, now=utc(2026, 4, 12, 8)) for f in ORDER]


def _states(db: Database, today: date) -> dict[str, tuple[str, str, str]]:
    figures = wf.invoice_payments(db, today=today)
    with db.read() as s:
        from storage.models import Invoice
        numbers = dict(s.execute(select(Invoice.id, Invoice.number)).all())
    return {numbers[i]: (f.payment_state, str(f.paid), str(f.open_amount)) for i, f in figures.items()}


def _counts(db: Database) -> tuple[int, int, int, int]:
    with db.read() as s:
        return tuple(int(s.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[return-value]
                     for t in (Payment, PaymentAllocation, AuditLog, QuarantineRow))


def test_import_match_and_reimport(db: Database, key: Any, ledger: dict[str, int]) -> None:
    v02, mt, v08, n054 = _import_all(db, key)
    assert (v02.format, mt.format, v08.format, n054.format) == ("camt.053.001.02", "mt940", "camt.053.001.08",
                                                                 "camt.054.001.08")
    assert (v02.entries, v02.inserted, v02.quarantined) == (3, 2, 1)
    assert v02.outcomes == {"matched": 1, "partial": 1}  # 833.00 for two invoices; 400.00 on account of 1000.00
    assert mt.outcomes == {"matched": 1, "unmatched": 1}  # 600.00 by the payer IBAN learned above; 77.77 unknown
    assert v08.outcomes == {"matched": 1} and n054.outcomes == {"overpaid": 1}

    by_ref = {p.remittance: p for p in wf.list_payments(db)}
    assert by_ref["RF94INV2026000001"].allocations == [("INV-2026-000001", Decimal("1190.00"), "reference")]
    assert by_ref["Rechnungen INV-2026-000002 und INV-2026-000003"].allocations == [
        ("INV-2026-000002", Decimal("595.00"), "reference"), ("INV-2026-000003", Decimal("238.00"), "reference")]
    assert by_ref["Restzahlung"].allocations == [("INV-2026-000004", Decimal("600.00"), "iban")]
    assert by_ref["Restzahlung"].payer_iban == "DE12500105170648489890"
    over = by_ref["RF83INV2026000005"]
    assert (over.state, over.unapplied) == ("overpaid", Decimal("20.00"))
    kinds = {p.remittance: (p.kind, p.state, p.amount) for p in wf.list_payments(db)}
    assert kinds["Kontofuehrungsgebuehren 03/2026"] == ("debit", "not_a_payment", Decimal("-12.50"))
    assert kinds["Ruecklastschrift"] == ("return", "not_a_payment", Decimal("-120.00"))
    assert kinds["Storno Gutschrift"] == ("reversal", "not_a_payment", Decimal("-30.00"))
    assert kinds["Zahlung Projekt Fruehling"] == ("credit", "unmatched", Decimal("77.77"))
    # a person settles: the partial 400.00 (600.00 open then), the unmatched 77.77, the 20.00 over-payment
    assert len(v02.exceptions) == 1 and len(mt.exceptions) == 1 and len(n054.exceptions) == 1

    with db.read() as s:
        bad = s.execute(select(QuarantineRow)).scalar_one()
    assert (bad.source, bad.location) == ("bank", "camt053_v02.xml:statement 1:entry 3")
    assert "payer IBAN 'DE00123' is not valid" in bad.reason

    assert _states(db, date(2026, 4, 15)) == {
        "INV-2026-000001": ("paid", "1190.00", "0.00"), "INV-2026-000002": ("paid", "595.00", "0.00"),
        "INV-2026-000003": ("paid", "238.00", "0.00"), "INV-2026-000004": ("paid", "1000.00", "0.00"),
        "INV-2026-000005": ("paid", "500.00", "0.00"), "INV-2026-000006": ("open", "0.00", "300.00")}

    # every allocation row is in a signed audit record, and the chain verifies
    import json

    from bot.workflows.audit import verify_chain
    with db.read() as s:
        listed = [tuple(a) for r in s.execute(select(AuditLog.payload).where(AuditLog.action == "payments.applied"))
                  .scalars() for a in json.loads(r)["allocations"]]
        rows = [(a.payment_id, a.invoice_id, str(a.amount.quantize(Decimal("0.01"))), a.method)
                for a in s.execute(select(PaymentAllocation).order_by(PaymentAllocation.id)).scalars()]
        assert verify_chain(s, key.public_key()).ok
    assert [(p, i, str(Decimal(a).quantize(Decimal("0.01"))), m) for p, i, a, m in listed] == rows and len(rows) == 6

    before = _counts(db)
    again = _import_all(db, key)
    assert [r.inserted for r in again] == [0, 0, 0, 0]
    assert [r.unchanged for r in again] == [2, 3, 3, 1]
    assert _counts(db) == before  # a file imported twice changes nothing, not even the audit log


def test_partial_payment_state_and_open_amount(db: Database, key: Any, ledger: dict[str, int]) -> None:
    wf.import_statement(db, BANK / "camt053_v02.xml", actor="UOPS", key=key, now=utc(2026, 4, 6, 8))
    states = _states(db, date(2026, 3, 15))
    assert states["INV-2026-000004"] == ("partially_paid", "400.00", "600.00")
    assert _states(db, date(2026, 4, 15))["INV-2026-000004"] == ("overdue", "400.00", "600.00")


def test_unmatched_payment_allocated_by_hand_with_roles_and_separation_of_duties(
        db: Database, key: Any, ledger: dict[str, int]) -> None:
    _import_all(db, key)
    unmatched = next(p for p in wf.list_payments(db) if p.state == "unmatched")
    cands = wf.payment_candidates(db, unmatched.id)
    assert [c.number for c in cands][:1] == ["INV-2026-000006"]  # the only invoice still open

    with pytest.raises(NotAllowed, match="cash_applier or finance_manager"):
        wf.allocate(db, payment_id=unmatched.id, invoice_number="INV-2026-000006", actor="UAPP1", key=key)
    got = wf.allocate(db, payment_id=unmatched.id, invoice_number="INV-2026-000006", actor="UCASH", key=key,
                      now=utc(2026, 4, 13, 9))
    assert got == Decimal("77.77")
    assert _states(db, date(2026, 4, 15))["INV-2026-000006"] == ("partially_paid", "77.77", "222.23")
    assert _states(db, date(2026, 4, 20))["INV-2026-000006"] == ("overdue", "77.77", "222.23")

    with pytest.raises(NotAllowed, match="finance_manager"):
        wf.write_off(db, invoice_number="INV-2026-000006", actor="UCASH", key=key, reason="small client")
    # a finance manager who allocated money to an invoice does not write off its difference
    over = next(p for p in wf.list_payments(db) if p.state == "overpaid")
    # the over-payment's 20.00, allocated by a finance manager
    wf.allocate(db, payment_id=over.id, invoice_number="INV-2026-000006", actor="UFM2", key=key)
    with pytest.raises(NotAllowed, match="someone else"):
        wf.write_off(db, invoice_number="INV-2026-000006", actor="UFM2", key=key, reason="small client")
    written = wf.write_off(db, invoice_number="INV-2026-000006", actor="UFM1", key=key, reason="small client")
    assert written == Decimal("202.23")
    assert _states(db, date(2026, 4, 20))["INV-2026-000006"] == ("written_off", "97.77", "0.00")
    with db.read() as s:
        actions = list(s.execute(select(AuditLog.action, AuditLog.actor).where(
            AuditLog.action.in_(("payment.allocated", "invoice.written_off")), AuditLog.actor != "system")))
    assert actions == [("payment.allocated", "UCASH"), ("payment.allocated", "UFM2"), ("invoice.written_off", "UFM1")]


def test_refund_of_an_overpayment_needs_a_finance_manager(db: Database, key: Any, ledger: dict[str, int]) -> None:
    wf.import_statement(db, BANK / "camt054_v08.xml", actor="UOPS", key=key, now=utc(2026, 4, 12, 8))
    over = wf.list_payments(db)[0]
    with pytest.raises(NotAllowed, match="finance_manager"):
        wf.refund(db, payment_id=over.id, actor="UCASH", key=key, reason="paid twice")
    assert wf.refund(db, payment_id=over.id, actor="UFM1", key=key, reason="paid twice") == Decimal("20.00")
    assert (wf.list_payments(db)[0].state, wf.list_payments(db)[0].unapplied) == ("refunded", Decimal("0"))


def test_bulk_inserted_rows_are_stored_as_sqlalchemy_stores_them(db: Database, key: Any,
                                                                 ledger: dict[str, int]) -> None:
    """On SQLite the import writes payments and allocations straight through the driver; what it stores
    must be byte for byte what SQLAlchemy's own INSERT stores for the same values (money as exact
    decimal strings, dates and datetimes in SQLAlchemy's formats). Checked by reading every row back,
    deleting it and inserting it again through SQLAlchemy, in a transaction rolled back."""
    from sqlalchemy import delete, insert

    _import_all(db, key)
    tables = (Payment.__table__, PaymentAllocation.__table__)
    with db.transaction() as s:
        conn = s.connection()
        raw = {t.name: conn.exec_driver_sql(f"SELECT * FROM {t.name} ORDER BY id").all() for t in tables}
        values = {t.name: [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))] for t in tables}
        assert len(raw["payments"]) == 9 and len(raw["payment_allocations"]) == 6
        # exact decimal strings on SQLite (not floats); NUMERIC on PostgreSQL
        assert {type(r.amount) for r in raw["payments"]} == ({str} if conn.dialect.name == "sqlite" else {Decimal})
        conn.execute(delete(PaymentAllocation))
        conn.execute(delete(Payment))
        for t in tables:
            conn.execute(insert(t), values[t.name])
        again = {t.name: conn.exec_driver_sql(f"SELECT * FROM {t.name} ORDER BY id").all() for t in tables}
        assert again == raw
        s.rollback()
