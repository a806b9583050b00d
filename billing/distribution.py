"""Distribution of linear (booked) campaign items over billing periods (DESIGN.md "Distribution").

- unit ``amount``: the item's amount is split over the periods;
  unit ``quantity``: the booked quantity is split, and each period bills quantity × price;
- basis ``day_based``: by the days the item runs in each period; ``even``: an equal share for every
  period the item runs in, regardless of its days;
- shares are cut to the minor unit (whole units for quantities) and the remainder goes to the
  last period, so the periods always sum to the item exactly.

Worked example (weeks start on Sunday), 9,000.00 EUR running 2019-12-01..2019-12-09, day-based:

>>> from billing.periods import billing_periods
>>> ps = billing_periods(date(2019, 12, 1), date(2019, 12, 9), "weekly", start_of_week=6)
>>> distribute_amount(Decimal("9000.00"), ps, date(2019, 12, 1), date(2019, 12, 9), "day_based", currency="EUR")
[Decimal('7000.00'), Decimal('2000.00')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from billing.errors import Invalid
from billing.money import ZERO, allocate, quantum
from billing.periods import Period

BASES = ("day_based", "even")
UNITS = ("amount", "quantity")


def weights(periods: Sequence[Period], start: date, end: date, basis: str) -> list[int]:
    """Weight of each period for an item running ``start``..``end``: its days in the period
    (``day_based``) or 1 for every period it runs in (``even``)."""
    if basis not in BASES:
        raise Invalid(f"unknown period basis {basis!r} (expected day_based or even)", code="basis")
    days = [p.overlap_days(start, end) for p in periods]
    return days if basis == "day_based" else [1 if d else 0 for d in days]


def _split(total: Decimal, ws: Sequence[int], q: Decimal) -> list[Decimal]:
    """Cut each share to ``q``; the remainder goes to the last period with a weight."""
    if not any(ws):
        return [ZERO.quantize(q) for _ in ws]
    wsum = sum(ws)
    parts = [(total * w / wsum).quantize(q, rounding=ROUND_DOWN) if w else ZERO.quantize(q) for w in ws]
    last = max(i for i, w in enumerate(ws) if w)
    parts[last] = total - sum((p for i, p in enumerate(parts) if i != last), ZERO)
    return parts


def distribute_amount(
    total: Decimal, periods: Sequence[Period], start: date, end: date, basis: str, *, currency: str
) -> list[Decimal]:
    """Split an amount over ``periods``; the parts sum to ``total`` exactly and share its sign."""
    ws = weights(periods, start, end, basis)
    if not any(ws):
        return [ZERO.quantize(quantum(currency)) for _ in ws]
    return allocate(total, ws, currency)


def distribute_quantity(
    total: Decimal, periods: Sequence[Period], start: date, end: date, basis: str
) -> list[Decimal]:
    """Split a booked quantity into whole units per period, remainder to the last.

    >>> from billing.periods import billing_periods
    >>> ps = billing_periods(date(2026, 1, 1), date(2026, 12, 31), "monthly")
    >>> set(distribute_quantity(Decimal(7800000), ps, date(2026, 1, 1), date(2026, 12, 31), "even"))
    {Decimal('650000')}
    """
    return _split(total, weights(periods, start, end, basis), Decimal(1))


def unit_price(rate: Decimal, rate_type: str | None) -> Decimal:
    """Price of one unit: ``cpm`` rates are per 1,000 impressions, everything else per unit."""
    return rate / 1000 if rate_type == "cpm" else rate


def price_quantity(quantity: Decimal, rate: Decimal, rate_type: str | None, currency: str) -> Decimal:
    """quantity × price, rounded half-up to the currency's minor unit."""
    return (quantity * unit_price(rate, rate_type)).quantize(quantum(currency), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Share:
    """One period's share of a linear item."""

    period: Period
    days: int
    amount: Decimal
    quantity: Decimal | None = None  # unit=quantity items only


def distribute_item(
    *,
    unit: str,
    basis: str,
    start: date,
    end: date,
    periods: Sequence[Period],
    currency: str,
    amount: Decimal | None = None,
    booked_quantity: Decimal | None = None,
    rate: Decimal | None = None,
    rate_type: str | None = None,
) -> list[Share]:
    """Distribute one linear item over all billing periods of its campaign.

    unit ``amount`` needs ``amount``; unit ``quantity`` needs ``booked_quantity`` and either ``rate``
    (amount per period = quantity × price, half-up) or ``amount`` (split by the quantity shares,
    so the periods still sum to the amount exactly).
    """
    if unit not in UNITS:
        raise Invalid(f"unknown unit {unit!r} (expected amount or quantity)", code="unit")
    days = [p.overlap_days(start, end) for p in periods]
    if unit == "amount":
        if amount is None:
            raise Invalid("an item with unit amount needs an amount", code="amount")
        parts = distribute_amount(amount, periods, start, end, basis, currency=currency)
        return [Share(p, d, a) for p, d, a in zip(periods, days, parts, strict=True)]
    if booked_quantity is None:
        raise Invalid("an item with unit quantity needs a booked_quantity", code="quantity")
    qs = distribute_quantity(booked_quantity, periods, start, end, basis)
    if rate is not None:
        amounts = [price_quantity(q, rate, rate_type, currency) for q in qs]
    elif amount is not None:
        amounts = (allocate(amount, qs, currency) if any(qs)
                   else [ZERO.quantize(quantum(currency)) for _ in qs])
    else:
        raise Invalid("an item with unit quantity needs a rate or an amount", code="rate")
    return [Share(p, d, a, q) for p, d, a, q in zip(periods, days, amounts, qs, strict=True)]
