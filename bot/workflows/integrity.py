"""Business rows against the audit log: a row changed outside the workflows is named.

The audit log proves itself (hashes, chain, signatures, anchors); this proves the rows it speaks of.
Each invoice, credit note, pre-invoice and decision is recomputed from the database and compared with
what its latest audit record says about it:

- an invoice or credit note: its number, currency and totals with its ``*.finalized`` record, and its
  content hash recomputed from the row and its lines (the document's legal content) with the hash in it;
- a pre-invoice: its content hash recomputed from its lines with the latest record carrying one
  (created, updated, edited, approved, approval voided), its net with the sum of its lines, and an
  approval on it with a ``preinvoice.approved`` record of that very content;
- a decision: its decision, actor, reason, time and subject hash with its ``decision.recorded`` record.

Read-only; a few queries whatever the size (rows and records are read in bulk).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.invoice import InvoiceDraft, InvoiceLineDraft, invoice_hash
from billing.preinvoice import net_of
from storage.mapping import line_drafts, preinvoice_hash
from storage.models import AuditLog, Decision, Invoice, PreInvoice


def check_rows(s: Session) -> list[str]:
    """Every business row that differs from its audited state, each named with what differs."""
    latest, approvals, decisions = _audited(s)
    return [*_check_invoices(s, latest), *_check_preinvoices(s, latest, approvals), *_check_decisions(s, decisions)]


def _audited(s: Session) -> tuple[dict[tuple[str, str], dict[str, Any]], set[tuple[str, str]],
                                  dict[int, dict[str, Any]]]:
    """The latest payload carrying a content hash per (subject type, id); the (pre-invoice, hash) pairs
    approved; the ``decision.recorded`` payload per decision id."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    approvals: set[tuple[str, str]] = set()
    decisions: dict[int, dict[str, Any]] = {}
    q = (select(AuditLog.subject_type, AuditLog.subject_id, AuditLog.action, AuditLog.payload)
         .where(AuditLog.subject_type.in_(("invoice", "preinvoice", "exception"))).order_by(AuditLog.id))
    for subject_type, subject_id, action, text in s.execute(q):
        if subject_type == "exception":
            if action == "decision.recorded":
                body = json.loads(text)
                decisions[int(body["decision_id"])] = body
            continue
        if '"content_hash"' not in text:  # most records (PDF rendered, pending, …) say nothing of content
            continue
        body = json.loads(text)
        latest[(subject_type, subject_id)] = body
        if action == "preinvoice.approved":
            approvals.add((subject_id, str(body["content_hash"])))
    return latest, approvals, decisions


def _dec(v: Any) -> Decimal | None:
    try:
        return Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None


def _check_invoices(s: Session, latest: dict[tuple[str, str], dict[str, Any]]) -> Iterable[str]:
    rows = list(s.execute(select(Invoice).options(selectinload(Invoice.lines)).order_by(Invoice.id)).scalars())
    numbers = {i.id: i.number for i in rows}
    for inv in rows:
        what = f"{inv.kind.replace('_', ' ')} {inv.number}"
        audited = latest.get(("invoice", str(inv.id)))
        if audited is None:
            yield f"{what}: no audit record (written outside the workflows)"
            continue
        fields = [f for f in ("number", "currency") if str(getattr(inv, f)) != str(audited.get(f))]
        fields += [f for f in ("net", "vat", "gross") if getattr(inv, f) != _dec(audited.get(f))]
        if inv.content_hash != audited.get("content_hash"):
            fields.append("content hash")
        elif not fields and _recomputed_hash(inv, numbers) != inv.content_hash:  # totals are in it too
            fields.append("content (lines, dates, parties or VAT)")
        if fields:
            yield f"{what}: {', '.join(fields)} differ{'s' if len(fields) == 1 else ''} from its audited state"


def _recomputed_hash(inv: Invoice, numbers: dict[int, str]) -> str:
    lines = tuple(InvoiceLineDraft(
        description=x.description, quantity=x.quantity, unit=x.unit, unit_price=x.unit_price, amount=x.amount,
        campaign=x.campaign, item_id=x.item_id, period_start=x.period_start, period_end=x.period_end,
        preinvoice_id=x.preinvoice_id, preinvoice_line_id=x.preinvoice_line_id, credited_line_id=x.credited_line_id,
    ) for x in sorted(inv.lines, key=lambda x: (x.position, x.id)))
    draft = InvoiceDraft(
        kind=inv.kind, currency=inv.currency, issue_date=inv.issue_date, due_date=inv.due_date,
        service_start=inv.service_start, service_end=inv.service_end, lines=lines, net=inv.net, vat=inv.vat,
        gross=inv.gross, vat_rate=inv.vat_rate, vat_category=inv.vat_category, vat_note=inv.vat_note, fx=inv.fx,
        parties=dict(inv.parties or {}), reason=inv.reason,
        references=numbers.get(inv.references_invoice_id) if inv.references_invoice_id else None,
    )
    return invoice_hash(draft, number=inv.number, legal_entity_id=inv.legal_entity_id,
                        advertiser_id=inv.advertiser_id)


def _check_preinvoices(s: Session, latest: dict[tuple[str, str], dict[str, Any]],
                       approvals: set[tuple[str, str]]) -> Iterable[str]:
    q = select(PreInvoice).options(selectinload(PreInvoice.lines)).order_by(PreInvoice.id)
    for pi in s.execute(q).scalars():
        what = f"pre-invoice {pi.id}"
        audited = latest.get(("preinvoice", str(pi.id)))
        if audited is None:
            yield f"{what}: no audit record (written outside the workflows)"
            continue
        fields = []
        recomputed = preinvoice_hash(pi)
        if recomputed != audited.get("content_hash"):
            fields.append("lines")
        elif pi.content_hash != recomputed:
            fields.append("content hash")
        if pi.net != net_of(line_drafts(pi)):
            fields.append("net")
        if fields:
            yield f"{what}: {', '.join(fields)} differ{'s' if len(fields) == 1 else ''} from its audited state"
        if pi.state in ("approved", "invoiced") and (
                pi.approved_hash is None or (str(pi.id), pi.approved_hash) not in approvals):
            yield f"{what}: its approval ({pi.state}) has no audit record approving that content"


def _at(v: datetime) -> str:
    return v.isoformat()


def _check_decisions(s: Session, decisions: dict[int, dict[str, Any]]) -> Iterable[str]:
    for d in s.execute(select(Decision).order_by(Decision.id)).scalars():
        what = f"decision {d.id} on exception {d.exception_id}"
        audited = decisions.get(d.id)
        if audited is None:
            yield f"{what}: no audit record (written outside the workflows)"
            continue
        actor = (audited.get("actor") or {}).get("id")
        fields = [name for name, mine, theirs in (
            ("decision", d.decision, audited.get("decision")), ("actor", d.actor_id, actor),
            ("exception", d.exception_id, audited.get("exception_id")), ("reason", d.reason, audited.get("reason")),
            ("subject hash", d.subject_hash, audited.get("subject_sha256")),
            ("time", _at(d.decided_at), audited.get("at")),
        ) if mine != theirs]
        if fields:
            yield f"{what}: {', '.join(fields)} differ{'s' if len(fields) == 1 else ''} from its audited state"
