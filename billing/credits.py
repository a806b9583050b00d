"""Partial credits: how much of an invoice line a credit note may still take back, and the credit line.

Rules (issue 20, like Lago's and Stripe's credit notes):
- a line is credited by quantity (``quantity × unit price / price base`` of the original line, so the
  credit repeats the original's arithmetic), by amount (one lump sum), or whole (what is still left);
- never more than is still creditable per line: the quantity left is the line's quantity less what
  quantity credits took, the amount left its amount less every credit so far; asking for more is
  refused naming the line and what is left;
- the credit line is negated (the credit note's own VAT and FX follow the original's treatment and
  locked rate, see :func:`billing.invoice.build_invoice`).

>>> line = InvoiceLineDraft(description="Search clicks", quantity=Decimal(300), unit="clicks",
...                         unit_price=Decimal("0.60"), amount=Decimal("180.00"))
>>> c = credit_line(line, ask=CreditAsk(1, quantity=Decimal(20)), credited=Credited(), currency="EUR")
>>> c.quantity, c.unit, c.amount
(Decimal('-20'), 'clicks', Decimal('-12.00'))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from billing.documents.model import THOUSANDS_UNIT, document_quantity, line_amount
from billing.errors import Invalid
from billing.invoice import InvoiceLineDraft
from billing.money import ZERO, quantum

LUMP_SUM = "lump sum"


@dataclass(frozen=True)
class CreditAsk:
    """What to credit of one invoice line: ``quantity`` (in the line's unit), ``amount`` (net, in the
    invoice currency) or neither (everything still left)."""

    line_id: int
    quantity: Decimal | None = None
    amount: Decimal | None = None


@dataclass(frozen=True)
class Credited:
    """What earlier credit notes took from one line: quantity (quantity credits only) and amount (all)."""

    quantity: Decimal = ZERO
    amount: Decimal = ZERO


def _num(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _m(d: Decimal, currency: str) -> str:
    """``12.00 EUR``: money in messages at the currency's minor unit (PostgreSQL returns 12.000000)."""
    return f"{d.quantize(quantum(currency))} {currency}"


def left(line: InvoiceLineDraft, credited: Credited) -> tuple[Decimal, Decimal]:
    """(quantity, amount) still creditable on ``line``.

    >>> left(InvoiceLineDraft("x", Decimal(300), "clicks", Decimal("0.60"), Decimal("180.00")),
    ...      Credited(Decimal(20), Decimal("12.00")))
    (Decimal('280'), Decimal('168.00'))
    """
    return line.quantity - credited.quantity, line.amount - credited.amount


def _price_base(line: InvoiceLineDraft, currency: str) -> Decimal:
    _q, _u, base = document_quantity(line.quantity, line.unit, line.unit_price, line.amount, currency,
                                     computation=line.computation)
    return base


def credit_line(line: InvoiceLineDraft, *, ask: CreditAsk, credited: Credited, currency: str) -> InvoiceLineDraft:
    """The (negated) credit-note line taking ``ask`` from ``line``, or :class:`Invalid` naming the line
    and what is left of it."""
    name = f"line {ask.line_id} ({line.description})"
    qty_left, amount_left = left(line, credited)
    if amount_left == 0 or (line.amount > 0 > amount_left):
        raise Invalid(f"{name} is already credited", code="over_credit")
    if ask.quantity is not None and ask.amount is not None:
        raise Invalid(f"{name}: give a quantity or an amount, not both")
    partial = ask.quantity is not None or ask.amount is not None
    if partial and line.amount <= 0:
        raise Invalid(f"{name}: only a line with a positive amount can be credited in part")
    if ask.quantity is not None:
        return _by_quantity(line, ask.quantity, qty_left, amount_left, name=name, currency=currency)
    if ask.amount is not None:
        return _by_amount(line, ask.amount, amount_left, name, currency)
    if credited.amount == 0:  # untouched: the whole line, as it was
        return replace(line, quantity=-line.quantity, amount=-line.amount, credited_line_id=line.credited_line_id)
    base = _price_base(line, currency)
    if qty_left > 0 and _amount_of(line, qty_left, base, currency) == amount_left:
        return _by_quantity(line, qty_left, qty_left, amount_left, name=name, currency=currency)
    return _by_amount(line, amount_left, amount_left, name, currency)


def _amount_of(line: InvoiceLineDraft, quantity: Decimal, base: Decimal, currency: str) -> Decimal:
    if line.unit == THOUSANDS_UNIT:
        return line_amount(quantity * 1000, line.unit_price, Decimal(1000), currency)
    return line_amount(quantity, line.unit_price, base, currency)


def _by_quantity(line: InvoiceLineDraft, quantity: Decimal, qty_left: Decimal, amount_left: Decimal, *, name: str,
                 currency: str) -> InvoiceLineDraft:
    if quantity <= 0:
        raise Invalid(f"{name}: the quantity to credit must be positive, not {_num(quantity)}")
    if quantity > qty_left:
        raise Invalid(f"{name}: {_num(quantity)} {line.unit} asked, only {_num(qty_left)} {line.unit} left to credit",
                      code="over_credit")
    base = _price_base(line, currency)
    amount = _amount_of(line, quantity, base, currency)
    if amount > amount_left:
        raise Invalid(f"{name}: {_num(quantity)} {line.unit} are {_m(amount, currency)}, only "
                      f"{_m(amount_left, currency)} left to credit", code="over_credit")
    computation = {**dict(line.computation or {}), "price_base": _num(base),
                   "credit": {"by": "quantity", "quantity": _num(quantity), "of": _num(line.quantity)}}
    return replace(line, quantity=-quantity, amount=-amount, computation=computation)


def _by_amount(line: InvoiceLineDraft, amount: Decimal, amount_left: Decimal, name: str,
               currency: str) -> InvoiceLineDraft:
    if amount != amount.quantize(quantum(currency)):
        raise Invalid(f"{name}: {amount} has more decimals than {currency} allows")
    if amount <= 0:
        raise Invalid(f"{name}: the amount to credit must be positive, not {amount}")
    if amount > amount_left:
        raise Invalid(f"{name}: {_m(amount, currency)} asked, only {_m(amount_left, currency)} left to credit",
                      code="over_credit")
    computation = {**dict(line.computation or {}), "price_base": "1",
                   "credit": {"by": "amount", "amount": str(amount),
                              "of": str(line.amount.quantize(quantum(currency)))}}
    return replace(line, quantity=Decimal(-1), unit=LUMP_SUM, unit_price=amount, amount=-amount,
                   description=f"{line.description} (credit of {_m(amount, currency)})", computation=computation)
