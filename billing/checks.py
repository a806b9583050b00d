"""Checks of a pre-invoice before it may be approved and finalized (STYLE.md #2).

Each ``check_*`` function takes a :class:`CheckInput` and returns its problems as values (a list of
strings, empty when fine). :data:`CHECKS` names them all; :func:`run_checks` runs every one, so the
operator sees all problems at once. A pre-invoice with problems is never approved or finalized.

>>> from datetime import date
>>> ci = CheckInput(currency="EUR", lines=(), seller_country="DE", seller_currency="EUR",
...                 seller_vat_id="DE811907980", buyer_country="DE", buyer_vat_id=None)
>>> run_checks(ci)
['has no lines', 'total is 0.00 EUR: nothing to bill']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from billing.addresses import PostalAddress, address_problems
from billing.fx import MAX_AGE_DAYS, LockedRate, missing_rate_text
from billing.money import fmt, is_currency, quantum
from billing.preinvoice import LineDraft, net_of
from billing.tax import VatProblem, vat_treatment


@dataclass(frozen=True)
class CheckInput:
    currency: str
    lines: Sequence[LineDraft]
    seller_country: str
    seller_currency: str
    seller_vat_id: str | None
    buyer_country: str
    buyer_vat_id: str | None
    fx: LockedRate | None = None  # the rate found for currency → seller currency (when they differ)
    fx_day: date | None = None  # the day the rate was looked up for
    fx_rule: str = "issue_date"  # the legal entity's FX rule (:data:`billing.fx.FX_RULES`)
    fx_max_age_days: int = MAX_AGE_DAYS
    seller_address: PostalAddress | None = None  # None: not known to the caller (not checked)
    buyer_address: PostalAddress | None = None
    po_number: str | None = None  # the campaign's purchase-order number, else the advertiser's default
    po_required: bool = False  # the advertiser's invoices must carry a PO number


Check = Callable[[CheckInput], list[str]]


def check_currency(ci: CheckInput) -> list[str]:
    bad = [c for c in {ci.currency, ci.seller_currency} if not is_currency(c)]
    return [f"unknown currency {c!r}" for c in sorted(bad)]


def check_lines(ci: CheckInput) -> list[str]:
    if not ci.lines:
        return ["has no lines"]
    if not is_currency(ci.currency):
        return []
    q = quantum(ci.currency)
    return [f"line {i + 1} ({x.description}): amount {x.amount} has more decimals than {ci.currency} allows"
            for i, x in enumerate(ci.lines) if x.amount != x.amount.quantize(q)]


def check_total(ci: CheckInput) -> list[str]:
    total = net_of(ci.lines)
    if total > 0 or not is_currency(ci.currency):
        return []
    what = "0.00" if total == 0 else fmt(total, ci.currency)
    return [f"total is {what} {ci.currency}: nothing to bill" if total == 0
            else f"total is negative ({what} {ci.currency})"]


def check_delivery_data(ci: CheckInput) -> list[str]:
    return [f"no delivery data for {x.description} ({x.item_id}) in this period"
            for x in ci.lines
            if x.kind == "item" and not x.edited and x.computation.get("billing") == "delivery"
            and not x.computation.get("has_data", True)]


def check_vat_data(ci: CheckInput) -> list[str]:
    problems = []
    if not ci.seller_vat_id:
        problems.append("missing VAT data: the legal entity has no VAT id")
    if not ci.buyer_country:
        problems.append("missing VAT data: the advertiser has no country")
        return problems
    t = vat_treatment(seller_country=ci.seller_country, buyer_country=ci.buyer_country,
                      buyer_vat_id=ci.buyer_vat_id)
    if isinstance(t, VatProblem):
        problems.append(t.message)
    return problems


def check_exchange_rate(ci: CheckInput) -> list[str]:
    if ci.currency == ci.seller_currency or ci.fx is not None or not is_currency(ci.currency):
        return []
    if ci.fx_day is None:
        return [f"missing exchange rate {ci.currency}→{ci.seller_currency}"]
    return [missing_rate_text(ci.currency, ci.seller_currency, rule=ci.fx_rule, on=ci.fx_day,
                              max_age_days=ci.fx_max_age_days)]


def check_addresses(ci: CheckInput) -> list[str]:
    """The seller's and the buyer's address hold what an invoice must state (EN 16931 country codes,
    § 14 Abs. 4 Nr. 1 UStG street, postcode and city: :func:`billing.addresses.address_problems`)."""
    problems = []
    for role, a in (("seller", ci.seller_address), ("buyer", ci.buyer_address)):
        if a is not None:
            problems += address_problems(role, a)
    return problems


def check_purchase_order(ci: CheckInput) -> list[str]:
    """An advertiser marked ``po_required`` gets no invoice without a purchase-order number (EN 16931
    BT-13): its accounts-payable team would send it back. The campaign's PO number counts, else the
    advertiser's default.

    >>> check_purchase_order(CheckInput(currency="EUR", lines=(), seller_country="DE", seller_currency="EUR",
    ...     seller_vat_id=None, buyer_country="DE", buyer_vat_id=None, po_required=True))[0][:38]
    'missing purchase-order number: the adv'
    """
    if ci.po_required and not (ci.po_number or "").strip():
        return ["missing purchase-order number: the advertiser requires one on every invoice "
                "(set po_number on the campaign or the advertiser)"]
    return []


CHECKS: tuple[Check, ...] = (
    check_currency,
    check_lines,
    check_total,
    check_delivery_data,
    check_vat_data,
    check_exchange_rate,
    check_addresses,
    check_purchase_order,
)


def run_checks(ci: CheckInput, checks: Sequence[Check] = CHECKS) -> list[str]:
    """Every problem of every check, in the order of :data:`CHECKS`."""
    return [p for check in checks for p in check(ci)]
