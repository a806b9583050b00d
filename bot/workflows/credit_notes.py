"""Credit notes need a second finance manager (issue 14, maker-checker).

``billbot credit-note NUMBER --reason …`` (or Slack) only *requests* a credit note: the request names
the invoice, the lines and the amount to be credited, and waits. A ``finance_manager`` other than the
requester approves it — only then is the credit note numbered (gapless, in the legal entity's
credit-note series) and issued, in the approving transaction; a Reject drops the request. Both are
one conditional UPDATE (``WHERE state = 'pending'``), so a double click or a concurrent decision
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.credits import CreditAsk
from billing.errors import Conflict, Invalid, NotAllowed, NotFound
from bot.workflows import audit
from bot.workflows.effects import notify
from bot.workflows.invoices import check_creditable, issue_credit_note
from bot.workflows.users import access_user_with_role
from storage.db import Database
from storage.models import CreditNoteRequest, Invoice, User

APPROVER_ROLE = "finance_manager"

CreditDecision = Literal["approve", "reject"]


def request_credit_note(
    db: Database, *, number: str, line_ids: list[int] | None, reason: str, actor: str,
    key: Ed25519PrivateKey | None, legal_entity_id: str | None = None, now: datetime | None = None,
    asks: list[CreditAsk] | None = None,
) -> CreditNoteRequest:
    """Ask for a credit note of all (``line_ids=None``) or some lines of invoice ``number``, or of a
    quantity or an amount per line (``asks``, issue 20); checked now (the lines exist and still have
    that much to credit), issued when a second finance manager approves."""
    with db.transaction() as s:
        return request_in(s, number=number, line_ids=line_ids, reason=reason, actor=actor, key=key,
                          legal_entity_id=legal_entity_id, now=now or datetime.now(UTC), asks=asks)


def request_in(
    s: Session, *, number: str, line_ids: list[int] | None, reason: str, actor: str,
    key: Ed25519PrivateKey | None, now: datetime, legal_entity_id: str | None = None,
    asks: list[CreditAsk] | None = None, dispute_id: int | None = None,
) -> CreditNoteRequest:
    """:func:`request_credit_note` in the caller's transaction (a dispute's credit proposal)."""
    if not reason or not reason.strip():
        raise Invalid("a credit note needs a reason")
    original, lines = check_creditable(s, number, line_ids, legal_entity_id=legal_entity_id, asks=asks)
    waiting = s.execute(select(CreditNoteRequest.id).where(
        CreditNoteRequest.invoice_id == original.id, CreditNoteRequest.state == "pending")).scalars().first()
    if waiting is not None:
        raise Conflict(f"credit-note request #{waiting} for {original.number} is still waiting for approval",
                       code="pending_request")
    req = CreditNoteRequest(
        invoice_id=original.id, invoice_number=original.number,
        line_ids=[a.line_id for a in asks] if asks is not None else line_ids, reason=reason.strip(),
        amount=sum((x.amount for x in lines), Decimal(0)), currency=original.currency, state="pending",
        requested_by=actor, requested_at=now, partial=asks_json(asks), dispute_id=dispute_id)
    s.add(req)
    s.flush()
    audit.record(s, key=key, actor=actor, action="credit_note.requested", subject_type="credit_note_request",
                 subject_id=req.id, now=now,
                 payload={"invoice": original.number, "lines": [x.credited_line_id for x in lines],
                          "partial": req.partial, "reason": req.reason, "net": str(req.amount),
                          "currency": req.currency, "dispute": dispute_id})
    notify(s, "credit_note.requested", request_id=req.id)
    return req


def access_credit_note_request(s: Session, actor: str, req: CreditNoteRequest, decision: CreditDecision) -> User:
    """Who may decide on a credit-note request: a known finance manager who did not request it, while it waits."""
    user = access_user_with_role(s, actor, frozenset({APPROVER_ROLE}), "deciding on a credit note")
    if req.requested_by == actor:
        raise NotAllowed(f"you requested credit note #{req.id}: another finance manager must {decision} it",
                         code="own_request")
    if req.state != "pending":
        raise Conflict(f"credit-note request #{req.id} was already {req.state} by {req.decided_by}",
                       code="already_decided")
    return user


def decide_credit_note(
    db: Database, *, request_id: int, decision: CreditDecision, actor: str, key: Ed25519PrivateKey | None,
    today: date, reason: str | None = None, now: datetime | None = None,
) -> CreditNoteRequest:
    """Approve (number and issue the credit note) or reject a credit-note request, in one transaction."""
    now = now or datetime.now(UTC)
    if decision == "reject" and not (reason or "").strip():
        raise Invalid("a rejection needs a reason")
    with db.transaction() as s:
        req = s.get(CreditNoteRequest, request_id)
        if req is None:
            raise NotFound(f"credit-note request #{request_id} not found")
        access_credit_note_request(s, actor, req, decision)
        state = "approved" if decision == "approve" else "rejected"
        result = s.execute(update(CreditNoteRequest)
                           .where(CreditNoteRequest.id == req.id, CreditNoteRequest.state == "pending")
                           .values(state=state, decided_by=actor, decided_at=now,
                                   decision_reason=(reason or "").strip() or None)
                           .execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"credit-note request #{req.id} was decided by someone else at the same moment",
                           code="already_decided")
        s.refresh(req)
        payload: dict[str, Any] = {"invoice": req.invoice_number, "requested_by": req.requested_by,
                                   "reason": req.decision_reason}
        if decision == "approve":
            cn = issue_credit_note(
                s, number=req.invoice_number, line_ids=req.line_ids, reason=req.reason, actor=actor, key=key,
                today=today, now=now, legal_entity_id=_legal_entity(s, req.invoice_id), asks=asks_from(req.partial),
                approvals=[{"credit_note_by": req.requested_by, "at": req.requested_at.isoformat()},
                           {"approved_by": actor, "at": now.isoformat()}])
            req.credit_note_id = cn.id
            payload["credit_note"] = cn.number
        if req.dispute_id is not None:  # a dispute's credit proposal: the dispute ends with it (or reopens)
            from bot.workflows.disputes import credit_decided

            credit_decided(s, req, actor=actor, key=key, now=now)
        audit.record(s, key=key, actor=actor, action=f"credit_note.{state}", subject_type="credit_note_request",
                     subject_id=req.id, now=now, payload=payload)
        notify(s, "credit_note.decided", request_id=req.id)
        return req


def asks_json(asks: list[CreditAsk] | None) -> list[dict[str, Any]] | None:
    if asks is None:
        return None
    return [{"line": a.line_id, "quantity": None if a.quantity is None else _canonical(a.quantity),
             "amount": None if a.amount is None else _canonical(a.amount, places=2)} for a in asks]


def _canonical(d: Decimal, *, places: int = 0) -> str:
    """``20`` for 20.000000 (PostgreSQL's NUMERIC scale), amounts with at least two decimals (``12.50``)."""
    text = format(d.normalize(), "f")
    decimals = len(text.partition(".")[2])
    return format(d, f".{places}f") if decimals < places else text


def asks_from(partial: list[Any] | None) -> list[CreditAsk] | None:
    if partial is None:
        return None
    return [CreditAsk(int(p["line"]), None if p.get("quantity") is None else Decimal(p["quantity"]),
                      None if p.get("amount") is None else Decimal(p["amount"])) for p in partial]


def _legal_entity(s: Session, invoice_id: int) -> str | None:
    inv = s.get(Invoice, invoice_id)
    return inv.legal_entity_id if inv is not None else None


@dataclass(frozen=True)
class CreditNoteRequestView:
    id: int
    invoice: str
    lines: list[int] | None
    reason: str
    amount: Decimal
    currency: str
    state: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    credit_note: str | None
    partial: list[dict[str, Any]] | None = None  # [{line, quantity, amount}] of a partial credit
    dispute: int | None = None


def list_requests(db: Database, *, state: str | None = None) -> list[CreditNoteRequestView]:
    with db.read() as s:
        q = select(CreditNoteRequest).order_by(CreditNoteRequest.id)
        if state:
            q = q.where(CreditNoteRequest.state == state)
        rows = list(s.execute(q).scalars())
        numbers = {i: n for i, n in s.execute(select(Invoice.id, Invoice.number).where(
            Invoice.id.in_([r.credit_note_id for r in rows if r.credit_note_id])))}
        return [CreditNoteRequestView(r.id, r.invoice_number, r.line_ids, r.reason, r.amount, r.currency, r.state,
                                      r.requested_by, r.requested_at, r.decided_by, r.decided_at,
                                      numbers.get(r.credit_note_id) if r.credit_note_id else None,
                                      r.partial, r.dispute_id) for r in rows]
