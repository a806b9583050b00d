"""Promises to pay: recorded, listed and resolved (fulfilled, broken, cancelled).

A promise is an ``invoice_holds`` row of kind ``promise`` with the promised date in ``until``; while it is
``open`` and its date has not passed, dunning skips the invoice (:func:`bot.workflows.dunning.held_invoices`).
Resolving it is one conditional UPDATE (``… WHERE id = :id AND kind = 'promise' AND state = 'open'``), so two
people resolving the same promise at once get one resolution and a clear refusal; every step is audited.
Any resolution releases the dunning hold: a broken or cancelled promise lets the next dunning run send the
letter the invoice has reached; a fulfilled one needs the invoice paid (nothing open beyond the
``PAYMENT_TOLERANCE``), otherwise it is refused with what is still open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from billing.errors import Conflict, Invalid, NotAllowed, NotFound
from billing.money import quantum
from bot.workflows import audit
from bot.workflows.dunning import HOLD_ROLES, hold_invoice
from bot.workflows.payments import open_amounts
from storage.db import Database
from storage.models import Advertiser, Invoice, InvoiceHold, User
from storage.settings import get_settings

#: what a resolution sets ``state`` to, by the verb people use
OUTCOMES = {"fulfil": "fulfilled", "break": "broken", "cancel": "cancelled"}
STATES = ("open", *OUTCOMES.values())


@dataclass(frozen=True)
class PromiseView:
    id: int
    invoice: str
    advertiser: str
    until: date | None  # always set for a promise (hold_invoice refuses one without)
    reason: str
    state: str
    actor: str
    created_at: datetime
    open_amount: Decimal
    currency: str
    lapsed: bool  # still open, its date passed: dunning no longer skips the invoice


def record_promise(db: Database, *, number: str, until: date, reason: str, actor: str,
                   key: Ed25519PrivateKey | None, today: date, now: datetime | None = None) -> int:
    """A customer's promise to pay ``number`` by ``until`` (cash appliers, finance managers, approvers)."""
    if until < today:
        raise Invalid(f"until: the promised date {until.isoformat()} is in the past (today is {today.isoformat()})")
    return hold_invoice(db, number=number, kind="promise", reason=reason, actor=actor, key=key, until=until, now=now)


def list_promises(db: Database, *, today: date, state: str | None = None,
                  invoice: str | None = None) -> list[PromiseView]:
    """Promises, newest first, with what is still open on their invoice."""
    if state is not None and state not in STATES:
        raise Invalid(f"state: must be one of {', '.join(STATES)}, not {state!r}")
    with db.read() as s:
        q = (select(InvoiceHold, Invoice.number, Invoice.currency, Advertiser.name)
             .join(Invoice, Invoice.id == InvoiceHold.invoice_id)
             .join(Advertiser, Advertiser.id == Invoice.advertiser_id)
             .where(InvoiceHold.kind == "promise").order_by(InvoiceHold.id.desc()))
        if state:
            q = q.where(InvoiceHold.state == state)
        if invoice:
            q = q.where(Invoice.number == invoice.strip())
        rows = list(s.execute(q).all())
        balances = open_amounts(s, [h.invoice_id for h, *_ in rows]) if rows else {}
        return [PromiseView(h.id, str(number), str(adv), h.until, h.reason, h.state, h.actor, h.created_at,
                            balances.get(h.invoice_id, Decimal("0")), str(cur),
                            h.state == "open" and h.until is not None and h.until < today)
                for h, number, cur, adv in rows]


def resolve_promise(db: Database, *, promise_id: int, outcome: str, reason: str, actor: str,
                    key: Ed25519PrivateKey | None, now: datetime | None = None) -> PromiseView:
    """Fulfil, break or cancel an open promise (see the module docstring); returns it as resolved."""
    problems = []
    if outcome not in OUTCOMES:
        problems.append(f"outcome: must be fulfil, break or cancel, not {outcome!r}")
    if not reason or not reason.strip():
        problems.append("reason: say why")
    if problems:
        raise Invalid(problems)
    now = now or datetime.now(UTC)
    state = OUTCOMES[outcome]
    with db.transaction() as s:
        user = s.get(User, actor)
        if user is None or not user.role_names & HOLD_ROLES:
            raise NotAllowed("Resolving a payment promise needs the cash_applier, finance_manager or approver role.",
                             code="role_required")
        hold = s.get(InvoiceHold, promise_id)
        if hold is None or hold.kind != "promise":
            raise NotFound(f"payment promise {promise_id} not found")
        inv = s.get(Invoice, hold.invoice_id)
        assert inv is not None
        open_ = open_amounts(s, [inv.id])[inv.id].quantize(quantum(inv.currency))  # PostgreSQL keeps six places
        if state == "fulfilled" and open_ > get_settings().payment_tolerance:
            raise Conflict(f"invoice {inv.number} still has {open_} {inv.currency} open: record the payment first "
                           "(`billbot payments import` / `payments allocate`), or break the promise",
                           code="still_open")
        res = s.execute(update(InvoiceHold)
                        .where(InvoiceHold.id == promise_id, InvoiceHold.kind == "promise",
                               InvoiceHold.state == "open")
                        .values(state=state).execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            s.refresh(hold)
            raise Conflict(f"payment promise {promise_id} is already {hold.state}", code="already_resolved")
        audit.record(s, key=key, actor=actor, action=f"promise.{state}", subject_type="invoice", subject_id=inv.id,
                     payload={"promise": promise_id, "invoice": inv.number,
                              "until": hold.until.isoformat() if hold.until else None, "reason": reason.strip(),
                              "open": str(open_)}, now=now)
    today = now.date()
    return next(p for p in list_promises(db, today=today, invoice=inv.number) if p.id == promise_id)


__all__ = ["OUTCOMES", "PromiseView", "list_promises", "record_promise", "resolve_promise"]
