"""Delivery-based items: bill what was delivered in the period (DESIGN.md "Distribution").

- ``cpm``: impressions / 1,000 × rate;  ``cpc``: clicks × rate;
- ``cpa`` / ``cpl``: approved conversions (or logged events) × rate — pending and rejected
  conversions are never billed;
- ``flat``: the rate once for every period the item runs in.

Only first-party figures (our ad server / tracker) are the billing basis; third-party counts are for
the variance checks. Amounts are rounded half-up to the currency's minor unit.

>>> line = delivery_line(rate_type="cpm", rate=Decimal("4.20"), delivered=Delivered(impressions=18000),
...                      currency="EUR")
>>> line.quantity, line.unit_price, line.amount
(Decimal('18'), Decimal('4.20'), Decimal('75.60'))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.errors import Invalid
from billing.money import quantum

RATE_TYPES = ("cpm", "cpc", "cpa", "cpl", "flat")
UNIT_NAMES = {"cpm": "1,000 impressions", "cpc": "clicks", "cpa": "conversions", "cpl": "leads", "flat": "flat"}


@dataclass(frozen=True)
class DayFigures:
    """First-party figures of one item on one day (summed over first-party sources)."""

    day: date
    impressions: int = 0
    clicks: int = 0
    fact_rows: int = 0
    approved_conversions: int = 0
    conversion_rows: int = 0  # any status: shows that conversion data exists


@dataclass(frozen=True)
class Delivered:
    """What an item delivered in one period."""

    impressions: int = 0
    clicks: int = 0
    approved_conversions: int = 0
    fact_rows: int = 0
    conversion_rows: int = 0

    def has_data(self, rate_type: str) -> bool:
        if rate_type in ("cpa", "cpl"):
            return self.conversion_rows > 0 or self.fact_rows > 0
        return self.fact_rows > 0


def sum_days(days: Iterable[DayFigures], start: date, end: date) -> Delivered:
    imps = clicks = conv = facts = conv_rows = 0
    for d in days:
        if start <= d.day <= end:
            imps += d.impressions
            clicks += d.clicks
            conv += d.approved_conversions
            facts += d.fact_rows
            conv_rows += d.conversion_rows
    return Delivered(imps, clicks, conv, facts, conv_rows)


@dataclass(frozen=True)
class DeliveryLine:
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    computation: dict[str, Any] = field(default_factory=dict)


def delivery_line(*, rate_type: str, rate: Decimal, delivered: Delivered, currency: str) -> DeliveryLine:
    """The billed quantity, unit price and amount of a delivery item for one period."""
    if rate_type not in RATE_TYPES:
        raise Invalid(f"unknown rate type {rate_type!r} (expected one of {', '.join(RATE_TYPES)})", code="rate_type")
    if rate_type == "cpm":
        quantity = Decimal(delivered.impressions) / 1000
        basis = {"impressions": delivered.impressions}
    elif rate_type == "cpc":
        quantity = Decimal(delivered.clicks)
        basis = {"clicks": delivered.clicks}
    elif rate_type in ("cpa", "cpl"):
        quantity = Decimal(delivered.approved_conversions)
        basis = {"approved_conversions": delivered.approved_conversions}
    else:
        quantity = Decimal(1)
        basis = {}
    amount = (quantity * rate).quantize(quantum(currency), rounding=ROUND_HALF_UP)
    computation: dict[str, Any] = {
        "billing": "delivery", "rate_type": rate_type, "rate": str(rate), **basis,
        "has_data": rate_type == "flat" or delivered.has_data(rate_type),
    }
    return DeliveryLine(quantity, UNIT_NAMES[rate_type], rate, amount, computation)
