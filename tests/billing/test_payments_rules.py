"""Cash application, payment states, aging buckets and DSO — the pure rules of billing/payments.py."""

from __future__ import annotations

import doctest
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

import billing.payments as bp
from billing.payments import IncomingPayment, OpenInvoice, apply_cash, creditor_reference

D = Decimal


def inv(i: int, adv: str, amount: str, due: date = date(2026, 3, 31)) -> OpenInvoice:
    return OpenInvoice(i, f"INV-2026-{i:06d}", adv, "EUR", D(amount), date(2026, 3, 1), due)


def pay(i: int, amount: str, *, iban: str | None = None, name: str | None = None, text: str | None = None,
        currency: str = "EUR") -> IncomingPayment:
    return IncomingPayment(i, D(amount), currency, iban, name, text)


NAMES = {"nord": "Autohaus Nord", "sued": "Bäckerei Süd"}


def test_module_examples_hold() -> None:
    assert doctest.testmod(bp).failed == 0


def test_reference_with_spaces_in_the_text_names_the_invoice() -> None:
    ref = creditor_reference("INV-2026-000002")
    spaced = " ".join(ref[i:i + 4] for i in range(0, len(ref), 4))
    app = apply_cash([pay(1, "50.00", text=f"Zahlung {spaced} vielen Dank")], [inv(1, "nord", "50.00"),
                                                                              inv(2, "nord", "50.00")], {}, NAMES)
    assert [(a.invoice_id, a.amount, a.method) for a in app.allocations] == [(2, D("50.00"), "reference")]


def test_known_iban_without_text_settles_oldest_first_and_learns_nothing_new() -> None:
    invoices = [inv(1, "nord", "100.00", date(2026, 4, 30)), inv(2, "nord", "80.00", date(2026, 3, 31))]
    app = apply_cash([pay(1, "150.00", iban="DE02120300000000202051")], invoices,
                     {"DE02120300000000202051": "nord"}, NAMES)
    assert [(a.invoice_id, a.amount, a.method) for a in app.allocations] == [(2, D("80.00"), "iban"),
                                                                             (1, D("70.00"), "iban")]
    assert app.outcomes == {1: "partial"} and app.learned_ibans == {}


def test_exact_amount_wins_over_oldest_for_a_known_iban() -> None:
    invoices = [inv(1, "nord", "100.00", date(2026, 3, 1)), inv(2, "nord", "80.00", date(2026, 4, 1))]
    app = apply_cash([pay(1, "80.00", iban="X")], invoices, {"X": "nord"}, NAMES)
    assert [(a.invoice_id, a.amount) for a in app.allocations] == [(2, D("80.00"))]
    assert app.outcomes == {1: "matched"}


def test_payer_name_and_exact_amount_match_and_teach_the_iban() -> None:
    invoices = [inv(1, "sued", "238.00"), inv(2, "nord", "238.00")]
    app = apply_cash([pay(1, "238.00", iban="DE12500105170648489890", name="BAECKEREI SUED")], invoices, {},
                     {"nord": "Autohaus Nord", "sued": "Baeckerei Sued"})
    assert [(a.invoice_id, a.method) for a in app.allocations] == [(1, "name")]
    assert app.learned_ibans == {"DE12500105170648489890": "sued"}


def test_a_dissimilar_name_or_another_currency_stays_unmatched() -> None:
    invoices = [inv(1, "sued", "238.00")]
    assert apply_cash([pay(1, "238.00", name="Completely Other")], invoices, {}, NAMES).outcomes == {1: "unmatched"}
    usd = pay(2, "238.00", text="INV-2026-000001", currency="USD")
    assert apply_cash([usd], invoices, {}, NAMES).outcomes == {2: "unmatched"}


def test_two_payments_never_settle_the_same_cent_twice() -> None:
    app = apply_cash([pay(1, "60.00", text="INV-2026-000001"), pay(2, "60.00", text="INV-2026-000001")],
                     [inv(1, "nord", "100.00")], {}, NAMES)
    assert [(a.payment_id, a.amount) for a in app.allocations] == [(1, D("60.00")), (2, D("40.00"))]
    assert app.outcomes == {1: "partial", 2: "overpaid"} and app.unapplied[2] == D("20.00")


cents = st.integers(min_value=1, max_value=10**7).map(lambda c: D(c) / 100)


@given(st.lists(cents, min_size=1, max_size=6), st.lists(cents, min_size=1, max_size=6))
def test_allocations_never_exceed_payment_nor_invoice(pays: list[Decimal], opens: list[Decimal]) -> None:
    invoices = [OpenInvoice(i, f"N{i}", "nord", "EUR", o, date(2026, 1, 1), date(2026, 2, i % 27 + 1))
                for i, o in enumerate(opens)]
    payments = [IncomingPayment(100 + i, p, "EUR", "IB", None, None) for i, p in enumerate(pays)]
    app = apply_cash(payments, invoices, {"IB": "nord"}, NAMES)
    for p in payments:
        used = sum((a.amount for a in app.allocations if a.payment_id == p.id), D(0))
        assert used + app.unapplied[p.id] == p.amount and used >= 0
    for i in invoices:
        assert sum((a.amount for a in app.allocations if a.invoice_id == i.id), D(0)) <= i.open_amount
    assert sum((a.amount for a in app.allocations), D(0)) == min(sum(pays), sum(opens))


def test_payment_states() -> None:
    base = {"gross": D("100.00"), "credited": D(0), "paid": D(0), "written_off": D(0), "due_date": date(2026, 3, 31)}
    assert bp.payment_state(**base, today=date(2026, 3, 31)) == ("open", D("100.00"))
    assert bp.payment_state(**base, today=date(2026, 4, 1)) == ("overdue", D("100.00"))
    assert bp.payment_state(**{**base, "credited": D("100.00")}, today=date(2026, 4, 1)) == ("paid", D("0.00"))
    assert bp.payment_state(**{**base, "credited": D("30.00"), "paid": D("20.00")},
                            today=date(2026, 3, 1)) == ("partially_paid", D("50.00"))
    assert bp.payment_state(**{**base, "paid": D("10.00"), "written_off": D("90.00")},
                            today=date(2026, 5, 1)) == ("written_off", D("0.00"))
    assert bp.payment_state(**base, today=date(2026, 5, 1), disputed=True) == ("disputed", D("100.00"))


def test_dso_formula() -> None:
    # DSO = receivables ÷ credit sales of the period × days in the period
    assert bp.dso(D("45000"), D("135000"), 90) == D("30.0")
    assert bp.dso(D("1000"), D("0"), 90) is None


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/", min_size=1, max_size=30).filter(
    lambda t: any(c.isalnum() for c in t)))
def test_creditor_references_are_valid_iso11649_as_python_stdnum_checks(number: str) -> None:
    from stdnum import iso11649

    ref = creditor_reference(number)
    assert iso11649.is_valid(ref) and bp._valid_rf(ref)
    broken = ref[:4] + ("0" if ref[4] != "0" else "1") + ref[5:]
    assert bp._valid_rf(broken) == iso11649.is_valid(broken)
