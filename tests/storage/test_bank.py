"""The camt reader on edge cases (tests/fixtures/bank/camt053_v08_edge_cases.xml): several statements,
entries without a bank reference, bad entries, debits, reversals, returns. The expected values are what
the reader gave before its flattening was made faster (one account record per statement, the
transaction's paths bound once per entry), so a file imported before and after reads the same — in
particular the content hash that identifies an entry without a reference (a re-import must not add it)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from storage.bank import read_statement

EDGE = Path(__file__).resolve().parents[1] / "fixtures" / "bank" / "camt053_v08_edge_cases.xml"
IBAN = "DE89370400440532013000"


def test_entries_read_per_statement_with_stable_ids_for_entries_without_a_reference() -> None:
    st = read_statement(EDGE)
    assert st.format == "camt.053.001.08"
    got = [(e.account, e.entry_ref, e.amount, e.currency, e.kind, e.payer_name, e.payer_iban, e.payer_bic,
            e.remittance, e.end_to_end_id, e.location.split(":", 1)[1]) for e in st.entries]
    assert got == [
        (IBAN, "sha256:0b10dd9399d0352dabd41bb2dc97a976", Decimal("10.00"), "EUR", "credit", "A B", None, None,
         "one two three RF18539007547034", None, "statement 1:entry 1"),
        (IBAN, "TX9", Decimal("-5.00"), "EUR", "debit", "Vendor", "DE02120300000000202051", "BYLADEM1001", None,
         "E2E-1", "statement 1:entry 3"),
        (IBAN, "R1", Decimal("7.00"), "EUR", "reversal", None, None, None, None, None, "statement 1:entry 4"),
        (IBAN, "R2", Decimal("8.00"), "EUR", "return", None, "DE12500105170648489890", None, None, None,
         "statement 1:entry 5"),
        ("12345", "NR", Decimal("1.5"), "USD", "credit", None, None, None, None, None, "statement 2:entry 1"),
        (IBAN, "sha256:63e20adc88ae06470d6b9cc2ee0eb2fb", Decimal("4.5"), "CHF", "credit", None, None, None, None,
         None, "statement 4:entry 1"),
    ]
    assert st.entries[0].booking_date.isoformat() == "2026-04-09" and st.entries[0].value_date is None
    assert str(st.entries[1].value_date) == "2026-04-10"


def test_bad_entries_name_their_statement_entry_and_reason_with_their_xml() -> None:
    st = read_statement(EDGE)
    assert [(b.location.split(":", 1)[1], b.reason) for b in st.bad] == [
        ("statement 1:entry 2", "Amt: not an amount: 'abc'"),
        ("statement 1:entry 6", "the entry is not booked (Sts PDNG); only booked entries are payments"),
        ("statement 1:entry 7", "BookgDt: not a date: '2026-13-09'"),
        ("statement 2:entry 2", "unknown currency '' in Amt/@Ccy"),
        ("statement 2:entry 3", "unknown currency '' in Amt/@Ccy"),
    ]
    assert "<Amt Ccy=\"EUR\">abc</Amt>" in st.bad[0].raw
    assert "<Cd>PDNG</Cd>" in st.bad[1].raw and "<Amt>3.5</Amt>" in st.bad[4].raw
