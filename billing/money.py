"""Money: ``Decimal`` amounts, ISO 4217 currencies with their minor units, explicit rounding.

Rules (DESIGN.md "Domain rules"):
- Never a float. Build amounts with :func:`money` (from str/int/Decimal); floats are refused.
- Rounding is explicit: :func:`round_money` rounds half-up to the currency's minor unit unless a
  different mode is passed. Distribution *cuts* (rounds down) and gives the remainder to the last
  period, see ``billing.distribution``.
- Sums reconcile exactly: :func:`allocate` splits an amount by weights so that the parts sum to the
  whole to the minor unit.

>>> money("7000")
Decimal('7000')
>>> round_money(Decimal("2.345"), "EUR")
Decimal('2.35')
>>> round_money(Decimal("1234.5"), "JPY")
Decimal('1235')
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

from babel.numbers import get_currency_precision, list_currencies

from billing.errors import Invalid

# ISO 4217 alphabetic codes Babel knows (it carries CLDR's currency data, including minor units).
_KNOWN = frozenset(list_currencies())

ZERO = Decimal(0)


def check_currency(code: str) -> str:
    """Return the upper-cased ISO 4217 code or raise :class:`Invalid` naming it."""
    c = (code or "").strip().upper()
    if len(c) != 3 or c not in _KNOWN:
        raise Invalid(f"unknown currency {code!r} (expected an ISO 4217 code such as EUR)", code="currency")
    return c


def is_currency(code: str) -> bool:
    return (code or "").strip().upper() in _KNOWN


def minor_units(currency: str) -> int:
    """Digits after the decimal point for a currency (EUR 2, JPY 0, KWD 3)."""
    return int(get_currency_precision(check_currency(currency)))


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def money(value: str | int | Decimal, currency: str | None = None) -> Decimal:
    """The one constructor for money amounts.

    Accepts strings (``"7000.00"``, ``"1,5"`` is refused), ints and Decimals. Floats are refused
    because they cannot represent cents exactly. With ``currency`` the value must already be a
    whole number of minor units (``money("1.005", "EUR")`` raises), which is what input files need.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise Invalid(f"money must not be a float or bool: {value!r}", code="money")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise Invalid(f"not an amount: {value!r}", code="money") from None
    else:
        raise Invalid(f"not an amount: {value!r}", code="money")
    if not d.is_finite():
        raise Invalid(f"not a finite amount: {value!r}", code="money")
    if currency is not None:
        q = quantum(currency)
        if d != d.quantize(q, rounding=ROUND_DOWN):
            raise Invalid(f"{value} has more decimals than {check_currency(currency)} allows", code="money")
        d = d.quantize(q)
    return d


def round_money(value: Decimal, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round to the currency's minor unit, half-up by default (commercial rounding)."""
    return value.quantize(quantum(currency), rounding=rounding)


def cut_money(value: Decimal, currency: str) -> Decimal:
    """Cut (truncate toward zero) to the minor unit; used where a remainder is assigned elsewhere."""
    return value.quantize(quantum(currency), rounding=ROUND_DOWN)


def fmt(value: Decimal, currency: str | None = None) -> str:
    """Plain machine format: ``"7000.00"`` (two decimals for EUR), as the CLI's JSON prints money."""
    q = quantum(currency) if currency else Decimal("0.01")
    return str(value.quantize(q, rounding=ROUND_HALF_UP))


def allocate(total: Decimal, weights: Sequence[Decimal | int], currency: str) -> list[Decimal]:
    """Split ``total`` by ``weights``: each part is cut to the minor unit, the remainder goes to the
    last part with a non-zero weight, so ``sum(parts) == total`` exactly.

    >>> allocate(Decimal("9000.00"), [7, 2], "EUR")
    [Decimal('7000.00'), Decimal('2000.00')]
    >>> allocate(Decimal("100.00"), [1, 1, 1], "EUR")
    [Decimal('33.33'), Decimal('33.33'), Decimal('33.34')]
    """
    ws = [Decimal(w) for w in weights]
    if any(w < 0 for w in ws):
        raise Invalid("allocation weights must not be negative")
    wsum = sum(ws, ZERO)
    q = quantum(currency)
    if not ws:
        return []
    if wsum == 0:
        raise Invalid("allocation weights must not all be zero")
    parts = [cut_money(total * w / wsum, currency) if w else ZERO.quantize(q) for w in ws]
    last = max(i for i, w in enumerate(ws) if w)
    parts[last] = (total - sum((p for i, p in enumerate(parts) if i != last), ZERO)).quantize(q)
    return parts
