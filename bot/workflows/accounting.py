"""The accounting export (issue 19, item 2): invoices and credit notes handed to accounting in batches.

``export_accounting(db, fmt="datev", period="2026-10", …)`` collects the legal entity's documents
issued in the period that were not yet exported in that format, snapshots their ledger entries
(:mod:`billing.accounting`) and the file header in an ``export_batches`` row, marks each document
with the batch (``exported_documents``: a document is exported at most once per format — the primary
key refuses a second, concurrent export of it), audits ``accounting.exported`` and notifies
``accounting.exported`` (the file goes to the managers' channel after commit). The same batch books
the payment allocations and write-offs (issue 18) of the legal entity's invoices dated in the period
(a payment by its booking day, a write-off by its day) not yet exported in that format, each marked
with the batch (``exported_allocations``); money applied later to an earlier month goes into a new
batch of that month. Running it again exports nothing new. ``batch_id=N`` re-writes batch N from its
snapshot, byte for byte (its SHA-256 is checked), whatever master data changed since.

The file itself is written by a writer passed in (:mod:`bot.exports`), as PDFs are by the renderer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.accounting import AllocationFacts, Chart, DocumentFacts, Entry, allocation_entry, entry
from billing.errors import Conflict, Invalid, NotFound
from billing.money import quantum
from billing.periods import parse_period
from bot.workflows import audit
from bot.workflows.effects import notify
from bot.workflows.users import access_user_with_role
from storage.db import Database
from storage.models import (
    EXPORT_FORMATS,
    Advertiser,
    ExportBatch,
    ExportedAllocation,
    ExportedDocument,
    Invoice,
    LegalEntity,
    Payment,
    PaymentAllocation,
)

Writer = Callable[[Mapping[str, Any], Sequence[Entry]], bytes]

#: Who may hand documents to accounting.
EXPORT_ROLES = frozenset({"finance_manager", "operator", "admin"})


@dataclass(frozen=True)
class ExportResult:
    format: str
    legal_entity: str
    period: str
    batch_id: int | None  # None: nothing new to export
    documents: list[str] = field(default_factory=list)
    data: bytes | None = None
    header: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    rewritten: bool = False
    bookings: list[str] = field(default_factory=list)  # payments and write-offs: "payment INV-…"


def _split(entries: Sequence[Entry]) -> tuple[list[str], list[str]]:
    """The documents' numbers and the payment / write-off bookings of a batch's entries."""
    return ([e.number for e in entries if not e.is_allocation],
            [f"{e.kind.replace('_', '-')} {e.number}" for e in entries if e.is_allocation])


def access_export(s: Session, actor: str) -> None:
    """The actor may export: a known user holding one of :data:`EXPORT_ROLES`."""
    access_user_with_role(s, actor, EXPORT_ROLES, "exporting to accounting")


def _legal_entity(s: Session, legal_entity_id: str | None) -> LegalEntity:
    if legal_entity_id:
        le = s.get(LegalEntity, legal_entity_id)
        if le is None:
            raise NotFound(f"legal entity {legal_entity_id} not found")
        return le
    all_ = list(s.execute(select(LegalEntity).order_by(LegalEntity.id)).scalars())
    if len(all_) != 1:
        raise Invalid(f"name the legal entity to export (--legal-entity): {', '.join(x.id for x in all_) or 'none'}")
    return all_[0]


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise Invalid(f"unknown export format {fmt!r}: {', '.join(EXPORT_FORMATS)}")


def export_accounting(
    db: Database, *, fmt: str, period: str | None, actor: str, key: Ed25519PrivateKey | None, now: datetime,
    writer: Writer, legal_entity_id: str | None = None, batch_id: int | None = None,
) -> ExportResult:
    """Export the period's documents not yet exported in ``fmt`` as a new batch, or re-write ``batch_id``."""
    _check_format(fmt)
    if batch_id is not None:
        return rewrite_batch(db, batch_id=batch_id, fmt=fmt, writer=writer)
    if not period:
        raise Invalid("give the --period to export (e.g. 2026-10), or --batch ID to re-write a batch")
    p = parse_period(period)
    try:
        with db.transaction() as s:
            access_export(s, actor)
            le = _legal_entity(s, legal_entity_id)
            chart = Chart.from_settings(le.accounting)
            fy = chart.fiscal_year_begin(p.start)
            if chart.fiscal_year_begin(p.end) != fy:
                raise Invalid(f"{p.label} spans two fiscal years (the year starts in month {chart.fiscal_year_start}): "
                              "a batch holds one fiscal year; export the parts separately")
            exported = select(ExportedDocument.invoice_id).where(ExportedDocument.format == fmt)
            invoices = list(s.execute(
                select(Invoice).where(Invoice.legal_entity_id == le.id, Invoice.issue_date >= p.start,
                                      Invoice.issue_date <= p.end, Invoice.id.not_in(exported))
                .order_by(Invoice.issue_date, Invoice.id)).scalars())
            allocations = _allocations(s, le.id, fmt, p.start, p.end)
            if not invoices and not allocations:
                return ExportResult(format=fmt, legal_entity=le.id, period=p.label, batch_id=None)
            entries = _entries(s, invoices, chart, le.currency) + _allocation_entries(s, allocations, chart,
                                                                                     le.currency)
            documents, bookings = _split(entries)
            batch = ExportBatch(format=fmt, legal_entity_id=le.id, period=p.label, period_start=p.start,
                                period_end=p.end, header={}, entries=[e.as_json() for e in entries],
                                documents=len(entries), sha256="", created_by=actor, created_at=now)
            s.add(batch)
            s.flush()
            header = {
                "format": fmt, "batch": batch.id, "legal_entity": le.id, "legal_entity_name": le.name,
                "period": p.label, "date_from": p.start.isoformat(), "date_to": p.end.isoformat(),
                "created_at": now.isoformat(), "exported_by": actor, "currency": le.currency,
                "consultant_number": chart.consultant_number, "client_number": chart.client_number,
                "fiscal_year_begin": fy.isoformat(), "account_length": chart.account_length, "skr": chart.skr,
                "label": f"billbot {le.id} {p.label}"[:30],
            }
            data = writer(header, entries)
            batch.header = header
            batch.sha256 = hashlib.sha256(data).hexdigest()
            s.add_all(ExportedDocument(format=fmt, invoice_id=i.id, batch_id=batch.id) for i in invoices)
            s.add_all(ExportedAllocation(format=fmt, allocation_id=a.id, batch_id=batch.id) for a, _ in allocations)
            s.flush()
            audit.record(s, key=key, actor=actor, action="accounting.exported", subject_type="export_batch",
                         subject_id=batch.id, now=now,
                         payload={"format": fmt, "legal_entity": le.id, "period": p.label, "sha256": batch.sha256,
                                  "documents": documents, "allocations": [a.id for a, _ in allocations]})
            notify(s, "accounting.exported", batch_id=batch.id)
            return ExportResult(format=fmt, legal_entity=le.id, period=p.label, batch_id=batch.id,
                                documents=documents, data=data, header=header, sha256=batch.sha256,
                                bookings=bookings)
    except IntegrityError:
        raise Conflict(f"another {fmt} export of {p.label} ran at the same moment: run it again to export "
                       "what is left", code="export_running") from None


def rewrite_batch(db: Database, *, batch_id: int, fmt: str | None, writer: Writer) -> ExportResult:
    """Batch ``batch_id`` written again from its snapshot: the same bytes as when it was exported."""
    with db.read() as s:
        batch = s.get(ExportBatch, batch_id)
        if batch is None:
            raise NotFound(f"export batch {batch_id} not found")
        if fmt is not None and batch.format != fmt:
            raise Invalid(f"batch {batch_id} is a {batch.format} export, not {fmt}")
        entries = [Entry.from_json(x) for x in batch.entries]
        data = writer(batch.header, entries)
        sha = hashlib.sha256(data).hexdigest()
        if sha != batch.sha256:
            raise Conflict(f"batch {batch_id} does not re-write to the exported file (sha256 {sha[:12]}… instead of "
                           f"{batch.sha256[:12]}…): the writer changed since", code="export_changed")
        documents, bookings = _split(entries)
        return ExportResult(format=batch.format, legal_entity=batch.legal_entity_id, period=batch.period,
                            batch_id=batch.id, documents=documents, data=data,
                            header=dict(batch.header), sha256=sha, rewritten=True, bookings=bookings)


def batch_file(db: Database, batch_id: int, writer_for: Callable[[str], Writer]) -> ExportResult:
    """The file of batch ``batch_id`` (what the Slack reaction uploads)."""
    with db.read() as s:
        batch = s.get(ExportBatch, batch_id)
        fmt = batch.format if batch is not None else None
    if fmt is None:
        raise NotFound(f"export batch {batch_id} not found")
    return rewrite_batch(db, batch_id=batch_id, fmt=fmt, writer=writer_for(fmt))


@dataclass(frozen=True)
class BatchView:
    id: int
    format: str
    legal_entity: str
    period: str
    documents: int
    sha256: str
    created_by: str
    created_at: datetime


def list_batches(db: Database, *, fmt: str | None = None) -> list[BatchView]:
    with db.read() as s:
        q = select(ExportBatch).order_by(ExportBatch.id)
        if fmt:
            q = q.where(ExportBatch.format == fmt)
        return [BatchView(b.id, b.format, b.legal_entity_id, b.period, b.documents, b.sha256, b.created_by,
                          b.created_at) for b in s.execute(q).scalars()]


def _allocations(s: Session, legal_entity_id: str, fmt: str, start: date,
                 end: date) -> list[tuple[PaymentAllocation, date]]:
    """The legal entity's payment allocations and write-offs dated ``start``..``end`` (a payment by its
    booking day, a write-off by the day it was made) not yet exported in ``fmt``, in date order."""
    exported = select(ExportedAllocation.allocation_id).where(ExportedAllocation.format == fmt)
    rows = s.execute(
        select(PaymentAllocation, Payment.booking_date)
        .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
        .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
        .where(Invoice.legal_entity_id == legal_entity_id, PaymentAllocation.id.not_in(exported))).all()
    out = []
    for a, booked in rows:
        day = booked if a.kind == "payment" and booked is not None else a.created_at.date()
        if start <= day <= end and Decimal(a.amount) != 0:
            out.append((a, day))
    return sorted(out, key=lambda x: (x[1], x[0].id))


def _allocation_entries(s: Session, allocations: list[tuple[PaymentAllocation, date]], chart: Chart,
                        base_currency: str) -> list[Entry]:
    if not allocations:
        return []
    invoices = {i.id: i for i in s.execute(
        select(Invoice).where(Invoice.id.in_({a.invoice_id for a, _ in allocations}))).scalars()}
    facts = _facts(s, list(invoices.values()))
    out = []
    problems: list[str] = []
    for a, day in allocations:
        inv = invoices[a.invoice_id]
        amount = Decimal(a.amount).quantize(quantum(inv.currency))
        try:
            out.append(allocation_entry(AllocationFacts(a.kind, day, facts[inv.id], amount), chart=chart,
                                        base_currency=base_currency))
        except Invalid as e:
            problems.extend(e.problems)
    if problems:
        raise Invalid(problems, code="accounting")
    return out


def _facts(s: Session, invoices: list[Invoice]) -> dict[int, DocumentFacts]:
    """What the ledger needs of each invoice (buyer as on the document, debtor account of today)."""
    advertisers = {a.id: a for a in s.execute(
        select(Advertiser).where(Advertiser.id.in_({i.advertiser_id for i in invoices}))).scalars()}
    ref_ids = {i.references_invoice_id for i in invoices if i.references_invoice_id}
    refs = {int(i): str(n) for i, n in s.execute(
        select(Invoice.id, Invoice.number).where(Invoice.id.in_(ref_ids)))} if ref_ids else {}
    out = {}
    for inv in invoices:
        adv = advertisers[inv.advertiser_id]
        buyer = dict((inv.parties or {}).get("buyer") or {})
        out[inv.id] = DocumentFacts(
            number=inv.number, kind=inv.kind, issue_date=inv.issue_date, due_date=inv.due_date,
            buyer=str(buyer.get("name") or adv.name), buyer_vat_id=buyer.get("vat_id") or adv.vat_id,
            debtor_account=adv.debtor_account, vat_category=inv.vat_category, currency=inv.currency, net=inv.net,
            vat=inv.vat, gross=inv.gross, fx=inv.fx,
            references=refs.get(inv.references_invoice_id) if inv.references_invoice_id else None)
    return out


def _entries(s: Session, invoices: list[Invoice], chart: Chart, base_currency: str) -> list[Entry]:
    facts = _facts(s, invoices)
    out = []
    problems: list[str] = []
    for inv in invoices:
        doc = facts[inv.id]
        try:
            out.append(entry(doc, chart=chart, base_currency=base_currency))
        except Invalid as e:
            problems.extend(e.problems)
    if problems:
        raise Invalid(problems, code="accounting")
    return out
