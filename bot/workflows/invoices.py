"""Invoices: read them, and correct them with credit notes (never by rewriting).

A credit note cancels all or some lines of an issued invoice, or part of them (a quantity or an amount,
issue 20): it repeats them with negated amounts, under the original's VAT treatment and locked exchange
rate, is numbered in the legal entity's own credit-note series (gapless, like invoices), and references
the original. A line is never credited beyond what it billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from billing.credits import CreditAsk, Credited, credit_line, left
from billing.errors import Invalid, NotAllowed, NotFound
from billing.fx import fx_json
from billing.invoice import InvoiceLineDraft, build_invoice, locked_from_json
from billing.tax import VatTreatment
from bot.workflows.billing_run import Context, store_invoice
from bot.workflows.dispatch import dispatch_states
from storage.db import Database
from storage.models import Invoice, InvoiceLine, LegalEntity
from storage.queries import resolve_advertisers


def find_invoice(s: Session, number: str, *, legal_entity_id: str | None = None) -> Invoice:
    q = (select(Invoice).options(selectinload(Invoice.lines), joinedload(Invoice.advertiser),
                                 joinedload(Invoice.legal_entity))
         .where(Invoice.number == number.strip()))
    if legal_entity_id:
        q = q.where(Invoice.legal_entity_id == legal_entity_id)
    rows = list(s.execute(q).unique().scalars())
    if not rows:
        raise NotFound(f"invoice {number} not found")
    if len(rows) > 1:
        raise Invalid(f"invoice number {number} exists for several legal entities "
                      f"({', '.join(r.legal_entity_id for r in rows)}): name the legal entity")
    return rows[0]


def credit_note(
    db: Database, *, number: str, line_ids: list[int] | None, reason: str, actor: str,
    key: Ed25519PrivateKey | None, today: date, legal_entity_id: str | None = None, now: datetime | None = None,
) -> Invoice:
    """Cancel all (``line_ids=None``) or the given lines of invoice ``number`` with a credit note, at once.

    The surfaces never call this: a credit note is requested and issued only when a second
    ``finance_manager`` approves it (:mod:`bot.workflows.credit_notes`), which calls :func:`issue_credit_note`."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        return issue_credit_note(s, number=number, line_ids=line_ids, reason=reason, actor=actor, key=key,
                                 today=today, legal_entity_id=legal_entity_id, now=now)


def credited_by_line(s: Session, original: Invoice) -> dict[int, Credited]:
    """What the credit notes of ``original`` took from each of its lines so far (issue 20: a line may be
    credited several times in part, never beyond what it billed)."""
    out: dict[int, Credited] = {}
    units = {x.id: x.unit for x in original.lines}
    rows = s.execute(
        select(InvoiceLine.credited_line_id, InvoiceLine.quantity, InvoiceLine.amount, InvoiceLine.unit)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.references_invoice_id == original.id, InvoiceLine.credited_line_id.is_not(None)))
    for credited_id, qty, amount, unit in rows:
        if credited_id is None:
            continue
        c = out.get(credited_id, Credited())
        took_qty = -qty if unit == units.get(credited_id) else Decimal(0)  # lump sums take amount only
        out[credited_id] = Credited(c.quantity + took_qty, c.amount - amount)
    return out


def check_creditable(s: Session, number: str, line_ids: list[int] | None, *, legal_entity_id: str | None = None,
                     asks: list[CreditAsk] | None = None) -> tuple[Invoice, list[InvoiceLineDraft]]:
    """The invoice ``number`` and the (negated) lines a credit note of it would hold, or the reason it
    cannot: all lines with something left (``line_ids`` and ``asks`` None), whole ``line_ids``, or
    ``asks`` (a quantity or an amount per line, :mod:`billing.credits`)."""
    original = find_invoice(s, number, legal_entity_id=legal_entity_id)
    if original.kind != "invoice":
        raise NotAllowed(f"{number} is a {original.kind.replace('_', ' ')}; only invoices can be credited",
                         code="kind")
    return original, _credit_drafts(original, line_ids, asks, credited_by_line(s, original))


def issue_credit_note(
    s: Session, *, number: str, line_ids: list[int] | None, reason: str, actor: str,
    key: Ed25519PrivateKey | None, today: date, now: datetime, legal_entity_id: str | None = None,
    approvals: list[dict[str, Any]] | None = None, asks: list[CreditAsk] | None = None,
) -> Invoice:
    """Number and issue the credit note in the caller's transaction."""
    if not reason or not reason.strip():
        raise Invalid("a credit note needs a reason")
    original, lines = check_creditable(s, number, line_ids, legal_entity_id=legal_entity_id, asks=asks)
    le = s.get(LegalEntity, original.legal_entity_id)
    assert le is not None
    vat = VatTreatment(original.vat_rate, original.vat_category, original.vat_note, "as original")
    draft = build_invoice(
        lines=lines, currency=original.currency, vat=vat,
        fx=locked_from_json(original.fx), issue_date=today, payment_terms_days=0,
        parties=dict(original.parties or {}),
        approvals=approvals or [{"credit_note_by": actor, "at": now.isoformat()}],
        kind="credit_note", reason=reason.strip(), references=original.number,
    )
    ctx = Context(period_end=today, period_label=None, actor=actor, key=key, today=today, now=now,
                  billing_run_id=None, rates=())
    return store_invoice(s, draft, le=le, advertiser_id=original.advertiser_id, series=le.credit_note_series,
                         ctx=ctx, references_invoice_id=original.id)


def _credit_drafts(original: Invoice, line_ids: list[int] | None, asks: list[CreditAsk] | None,
                   credited: dict[int, Credited]) -> list[InvoiceLineDraft]:
    by_id = {x.id: x for x in original.lines}
    if asks is None and line_ids is None:
        lines = [x for x in sorted(original.lines, key=lambda r: r.position)
                 if left(_line_draft(x), credited.get(x.id, Credited()))[1] != 0]
        if not lines:
            raise NotAllowed(f"every line of {original.number} is already credited", code="credited")
        asks = [CreditAsk(x.id) for x in lines]
    elif asks is None:
        asks = [CreditAsk(i) for i in line_ids or []]
    ids = [a.line_id for a in asks]
    problems = [f"line {i} is not on invoice {original.number}" for i in ids if i not in by_id]
    if len(set(ids)) != len(ids):
        problems.append("a line is named twice")
    if not ids:
        problems.append("name at least one line")
    drafts: list[InvoiceLineDraft] = []
    for a in sorted((a for a in asks if a.line_id in by_id), key=lambda a: by_id[a.line_id].position):
        try:
            drafts.append(credit_line(_line_draft(by_id[a.line_id]), ask=a,
                                      credited=credited.get(a.line_id, Credited()), currency=original.currency))
        except Invalid as e:
            problems += [p.replace(f"line {a.line_id} (", f"line {a.line_id} of {original.number} (", 1)
                         for p in e.problems]
    if problems:
        raise Invalid(problems, code="over_credit" if any("left to credit" in p or "already credited" in p
                                                          for p in problems) else "invalid")
    return drafts


def _line_draft(x: InvoiceLine) -> InvoiceLineDraft:
    return InvoiceLineDraft(description=x.description, quantity=x.quantity, unit=x.unit, unit_price=x.unit_price,
                            amount=x.amount, campaign=x.campaign, item_id=x.item_id, period_start=x.period_start,
                            period_end=x.period_end, preinvoice_id=x.preinvoice_id,
                            preinvoice_line_id=x.preinvoice_line_id, credited_line_id=x.id,
                            computation=dict(x.computation or {}))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class InvoiceLineView:
    id: int
    position: int
    campaign: str | None
    item: str | None
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    period_start: date | None
    period_end: date | None
    credited_line_id: int | None


@dataclass(frozen=True)
class InvoiceView:
    id: int
    number: str
    kind: str
    advertiser_id: str
    advertiser: str
    legal_entity: str
    issue_date: date
    due_date: date
    service_start: date | None
    service_end: date | None
    currency: str
    net: Decimal
    vat: Decimal
    gross: Decimal
    vat_rate: Decimal
    vat_category: str
    vat_note: str | None
    fx: dict[str, Any] | None
    references: str | None
    reason: str | None
    billing_run_id: int | None
    content_hash: str
    pdf_state: str
    lines: list[InvoiceLineView]
    dispatch_state: str | None = None  # queued | sent | failed; None: never queued for mail


def _view(inv: Invoice, refs: dict[int, str], dispatch: dict[int, str] | None = None) -> InvoiceView:
    return InvoiceView(
        id=inv.id, number=inv.number, kind=inv.kind, advertiser_id=inv.advertiser_id, advertiser=inv.advertiser.name,
        legal_entity=inv.legal_entity_id, issue_date=inv.issue_date, due_date=inv.due_date,
        service_start=inv.service_start, service_end=inv.service_end, currency=inv.currency, net=inv.net,
        vat=inv.vat, gross=inv.gross, vat_rate=inv.vat_rate, vat_category=inv.vat_category, vat_note=inv.vat_note,
        fx=fx_json(inv.fx), references=refs.get(inv.references_invoice_id) if inv.references_invoice_id else None,
        reason=inv.reason, billing_run_id=inv.billing_run_id, content_hash=inv.content_hash, pdf_state=inv.pdf_state,
        lines=[InvoiceLineView(x.id, x.position, x.campaign, x.item_id, x.description, x.quantity, x.unit,
                               x.unit_price, x.amount, x.period_start, x.period_end, x.credited_line_id)
               for x in sorted(inv.lines, key=lambda r: r.position)],
        dispatch_state=(dispatch or {}).get(inv.id),
    )


def _refs(s: Session, invoices: list[Invoice]) -> dict[int, str]:
    ids = {i.references_invoice_id for i in invoices if i.references_invoice_id}
    if not ids:
        return {}
    return {int(i): str(n) for i, n in s.execute(select(Invoice.id, Invoice.number).where(Invoice.id.in_(ids)))}


def list_invoices(db: Database, *, advertisers: list[str] | None = None, kind: str | None = None,
                  billing_run_id: int | None = None, since: date | None = None) -> list[InvoiceView]:
    with db.read() as s:
        q = select(Invoice).options(selectinload(Invoice.lines), joinedload(Invoice.advertiser))
        adv_ids = resolve_advertisers(s, advertisers)
        if adv_ids is not None:
            q = q.where(Invoice.advertiser_id.in_(adv_ids))
        if kind:
            q = q.where(Invoice.kind == kind)
        if billing_run_id is not None:
            q = q.where(Invoice.billing_run_id == billing_run_id)
        if since is not None:
            q = q.where(Invoice.issue_date >= since)
        rows = list(s.execute(q.order_by(Invoice.issue_date, Invoice.id))
                    .unique().scalars())
        refs = _refs(s, rows)
        states = dispatch_states(s, [i.id for i in rows])
        return [_view(i, refs, states) for i in rows]


def get_invoice(db: Database, number: str, *, legal_entity_id: str | None = None) -> InvoiceView:
    with db.read() as s:
        inv = find_invoice(s, number, legal_entity_id=legal_entity_id)
        return _view(inv, _refs(s, [inv]), dispatch_states(s, [inv.id]))


def unrendered_invoices(db: Database, *, finalized_before: datetime, limit: int = 500) -> list[int]:
    """Invoices whose PDF is still ``pending`` although they were finalized before ``finalized_before``:
    their render job was never queued (finalized by a CLI without workers) or was lost."""
    with db.read() as s:
        return [int(i) for i in s.execute(
            select(Invoice.id).where(Invoice.pdf_state == "pending", Invoice.created_at < finalized_before)
            .order_by(Invoice.id).limit(limit)).scalars()]
