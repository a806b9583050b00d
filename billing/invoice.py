"""Invoices and credit notes as data: lines, totals, VAT, locked FX, content hash.

Rules (DESIGN.md "Invoices"):
- one invoice per advertiser, legal entity and currency — and per VAT treatment and purchase-order number
  (the billing run splits those, ``bot.workflows.billing_run.invoice_parts``) — lines grouped by campaign
  and service period;
- net = sum of the lines; VAT = net × rate, half-up, once per invoice; gross = net + VAT exactly;
- when the invoice currency differs from the legal entity's, the rate is locked with its date and
  source, and the totals are also stated in the entity's currency;
- a credit note repeats the cancelled lines with negated quantities and amounts, under the original's
  VAT treatment and locked rate, and references the original.

>>> from billing.tax import VatTreatment
>>> line = InvoiceLineDraft(description="Search", quantity=Decimal(1), unit="lump sum",
...                         unit_price=Decimal("100.05"), amount=Decimal("100.05"))
>>> inv = build_invoice(lines=[line], currency="EUR", vat=VatTreatment(Decimal(19), "S", None, "domestic"),
...                     fx=None, issue_date=date(2026, 3, 1), payment_terms_days=14)
>>> inv.net, inv.vat, inv.gross, inv.due_date
(Decimal('100.05'), Decimal('19.01'), Decimal('119.06'), datetime.date(2026, 3, 15))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from billing.documents.model import document_quantity, line_amount
from billing.errors import Invalid
from billing.fx import LockedRate, convert, locked_rate
from billing.money import ZERO
from billing.preinvoice import canonical_number
from billing.signatures import content_hash
from billing.tax import VatTreatment, vat_amount


@dataclass(frozen=True)
class InvoiceLineDraft:
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    campaign: str | None = None
    item_id: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    preinvoice_id: int | None = None
    preinvoice_line_id: int | None = None
    credited_line_id: int | None = None
    computation: Mapping[str, Any] = field(default_factory=dict)

    def sort_key(self) -> tuple[str, date, date, int, int]:
        return (self.campaign or "", self.period_start or date.min, self.period_end or date.min,
                self.preinvoice_id or 0, self.preinvoice_line_id or 0)


@dataclass(frozen=True)
class InvoiceDraft:
    kind: str
    currency: str
    issue_date: date
    due_date: date
    service_start: date | None
    service_end: date | None
    lines: tuple[InvoiceLineDraft, ...]
    net: Decimal
    vat: Decimal
    gross: Decimal
    vat_rate: Decimal
    vat_category: str
    vat_note: str | None
    fx: dict[str, str] | None
    parties: Mapping[str, Any] = field(default_factory=dict)
    approvals: tuple[Mapping[str, Any], ...] = ()
    reason: str | None = None
    references: str | None = None  # credit notes: the original's number


def _fx_json(locked: LockedRate | None, net: Decimal, vat: Decimal, gross: Decimal) -> dict[str, str] | None:
    if locked is None or locked.from_ == locked.to:
        return None
    return {**locked.as_json(), "net": str(convert(net, locked)), "vat": str(convert(vat, locked)),
            "gross": str(convert(gross, locked))}


def line_problems(lines: Sequence[InvoiceLineDraft], currency: str) -> list[str]:
    """Lines whose amount is not what a receiver recomputes from the document (EN 16931 BT-131 =
    BT-129 × BT-146 / BT-149, :func:`billing.documents.model.line_amount`), each named.

    >>> line_problems([InvoiceLineDraft("Display", Decimal("883.44"), "1,000 impressions", Decimal("4.05"),
    ...                                 Decimal("3577.93"))], "EUR")
    []
    """
    problems = []
    for i, x in enumerate(lines, start=1):
        qty, _unit, base = document_quantity(x.quantity, x.unit, x.unit_price, x.amount, currency,
                                             computation=x.computation)
        expected = line_amount(qty, x.unit_price, base, currency)
        if expected != x.amount:
            problems.append(f"line {i} ({x.description}): {qty} × {x.unit_price} / {base} = {expected}, "
                            f"not {x.amount}")
    return problems


def build_invoice(
    *,
    lines: Sequence[InvoiceLineDraft],
    currency: str,
    vat: VatTreatment,
    fx: LockedRate | None,
    issue_date: date,
    payment_terms_days: int,
    parties: Mapping[str, Any] | None = None,
    approvals: Sequence[Mapping[str, Any]] = (),
    kind: str = "invoice",
    reason: str | None = None,
    references: str | None = None,
    due_date: date | None = None,
) -> InvoiceDraft:
    """Totals that reconcile exactly: net = Σ lines, gross = net + VAT (VAT half-up on the net).
    ``due_date`` (from :func:`billing.terms.due_date`) else issue date + payment terms."""
    ordered = tuple(sorted(lines, key=InvoiceLineDraft.sort_key))
    problems = line_problems(ordered, currency)
    if problems:  # refused before a number is spent
        raise Invalid(problems, code="line_arithmetic")
    net = sum((x.amount for x in ordered), ZERO)
    tax = vat_amount(net, vat.rate, currency)
    gross = net + tax
    starts = [x.period_start for x in ordered if x.period_start]
    ends = [x.period_end for x in ordered if x.period_end]
    return InvoiceDraft(
        kind=kind, currency=currency, issue_date=issue_date,
        due_date=due_date or issue_date + timedelta(days=payment_terms_days),
        service_start=min(starts) if starts else None, service_end=max(ends) if ends else None,
        lines=ordered, net=net, vat=tax, gross=gross, vat_rate=vat.rate, vat_category=vat.category,
        vat_note=vat.note, fx=_fx_json(fx, net, tax, gross), parties=dict(parties or {}),
        approvals=tuple(approvals), reason=reason, references=references,
    )


def credit_lines(lines: Sequence[InvoiceLineDraft]) -> list[InvoiceLineDraft]:
    """The lines of a credit note cancelling ``lines``: negated quantities and amounts."""
    return [replace(x, quantity=-x.quantity, amount=-x.amount) for x in lines]


def locked_from_json(fx: Mapping[str, Any] | None) -> LockedRate | None:
    return locked_rate(fx)


def invoice_hash(draft: InvoiceDraft, *, number: str, legal_entity_id: str, advertiser_id: str) -> str:
    """SHA-256 of the legal content of an invoice (what the document and the audit log bind to)."""
    return content_hash({
        "number": number, "kind": draft.kind, "legal_entity": legal_entity_id, "advertiser": advertiser_id,
        "issue_date": draft.issue_date, "due_date": draft.due_date, "currency": draft.currency,
        "service": [draft.service_start, draft.service_end],
        "net": canonical_number(draft.net), "vat": canonical_number(draft.vat), "gross": canonical_number(draft.gross),
        "vat_rate": canonical_number(draft.vat_rate), "vat_category": draft.vat_category, "vat_note": draft.vat_note,
        "fx": draft.fx, "parties": draft.parties, "references": draft.references, "reason": draft.reason,
        "lines": [{
            "description": x.description, "campaign": x.campaign, "item": x.item_id,
            "quantity": canonical_number(x.quantity), "unit": x.unit, "unit_price": canonical_number(x.unit_price),
            "amount": canonical_number(x.amount), "period": [x.period_start, x.period_end],
            "preinvoice": x.preinvoice_id, "credited_line": x.credited_line_id,
        } for x in draft.lines],
    })
