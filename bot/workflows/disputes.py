"""Disputes (issue 20): a client's challenge of an invoice, from opening to an evidence-backed outcome.

A dispute names the invoice, a category, the disputed lines and amount, the client's contact and
reference, and an owner. While it is ``open`` (or ``proposed``: a credit proposal waits for approval)
the invoice is out of dunning (:func:`bot.workflows.dunning.held_invoices`). It ends in one of three ways,
each one conditional UPDATE on the dispute's state (a double click changes nothing):

- **credited**: "Propose credit" requests a partial credit note for the disputed lines (computed from the
  evidence where it can: the third-party quantity of the line's days), which waits for a finance manager
  other than the proposer (:mod:`bot.workflows.credit_notes`); approving it issues the credit note and
  resolves the dispute with the credited amount; rejecting it reopens the dispute;
- **rejected** with a reason for the client;
- **withdrawn** by the client.

SLA timers are data, like exceptions' (:mod:`bot.workflows.sla`): ``remind_at`` and ``due_at`` from the
category's SLA (the scenario file's ``dispute_sla``, else :data:`DEFAULT_SLA_HOURS`), each fired once by
a conditional UPDATE.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from billing.credits import CreditAsk
from billing.errors import Conflict, Invalid, NotAllowed, NotFound
from billing.money import fmt
from billing.variance import resolve_tolerance
from bot.workflows import audit
from bot.workflows.comments import Comment, capture_thread_message, comments_of
from bot.workflows.credit_notes import request_in
from bot.workflows.effects import notify
from bot.workflows.invoices import find_invoice
from bot.workflows.users import access_user_with_role
from storage.db import Database
from storage.loader import DISPUTE_SLA_KEY
from storage.models import (
    DISPUTE_CATEGORIES,
    OPEN_DISPUTE_STATES,
    Advertiser,
    BillingException,
    Campaign,
    CampaignItem,
    CreditNoteRequest,
    Decision,
    DeliveryFact,
    Dispute,
    Invoice,
    InvoiceLine,
    LegalEntity,
    PreInvoice,
    Setting,
    User,
)
from storage.settings import get_settings

#: Who opens disputes and proposes credits, and who rejects them or records a withdrawal.
OPEN_ROLES = frozenset({"finance_manager", "approver", "cash_applier", "operator"})
RESOLVE_ROLES = frozenset({"finance_manager"})
#: Hours to resolve a dispute per category when the scenario file names none (reminder at half).
DEFAULT_SLA_HOURS: dict[str, float] = {
    "tracking_disagreement": 120.0, "invalid_traffic": 120.0, "make_good_not_applied": 72.0,
    "rate_disagreement": 72.0, "duplicate_billing": 48.0, "other": 120.0,
}
CATEGORY_TEXT = {c: c.replace("_", " ") for c in DISPUTE_CATEGORIES}
#: the delivered figure a rate type bills, and the factor from it to the invoice line's quantity
METRIC = {"cpm": ("impressions", Decimal("0.001")), "cpc": ("clicks", Decimal(1)),
          "cpa": ("conversions", Decimal(1)), "cpl": ("conversions", Decimal(1))}


def check_category(category: str) -> str:
    c = category.strip().lower().replace("-", "_").replace(" ", "_")
    if c not in DISPUTE_CATEGORIES:
        raise Invalid(f"category: {category!r} is not one of {', '.join(DISPUTE_CATEGORIES)}")
    return c


# --------------------------------------------------------------------------- SLA per category


def sla_hours(s: Session, category: str) -> tuple[float, float]:
    """(hours to resolve, hours to the reminder) for ``category``: the scenario file's ``dispute_sla``,
    else :data:`DEFAULT_SLA_HOURS` with the reminder at half."""
    row = s.get(Setting, DISPUTE_SLA_KEY)
    conf: dict[str, Any] = json.loads(row.value) if row is not None else {}
    entry = conf.get(category) or {}
    hours = float(entry.get("hours") or DEFAULT_SLA_HOURS.get(category, 120.0))
    remind = float(entry.get("remind_hours") or hours / 2)
    return hours, min(remind, hours)


# --------------------------------------------------------------------------- opening


def open_dispute(  # noqa: PLR0913 - a dispute's fields, each named
    db: Database, *, number: str, category: str, reason: str, actor: str, key: Ed25519PrivateKey | None,
    line_ids: list[int] | None = None, amount: Decimal | None = None, client_contact: str | None = None,
    client_reference: str | None = None, owner: str | None = None, legal_entity_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Open a dispute on invoice ``number`` (all its lines unless ``line_ids``; the amount defaults to the
    disputed lines' net). One open dispute per invoice; the invoice leaves dunning until it ends."""
    now = now or datetime.now(UTC)
    category = check_category(category)
    problems = []
    if not reason.strip():
        problems.append("reason: say what the client disputes")
    if amount is not None and amount <= 0:
        problems.append(f"amount: must be positive, not {amount}")
    if problems:
        raise Invalid(problems)
    with db.transaction() as s:
        access_user_with_role(s, actor, OPEN_ROLES, "opening a dispute")
        if owner and owner != actor:
            access_user_with_role(s, owner, OPEN_ROLES | RESOLVE_ROLES, "owning a dispute")
        inv = find_invoice(s, number, legal_entity_id=legal_entity_id)
        if inv.kind != "invoice":
            raise NotAllowed(f"{inv.number} is a credit note; only invoices can be disputed", code="kind")
        open_one = s.execute(select(Dispute.id).where(Dispute.invoice_id == inv.id,
                                                      Dispute.state.in_(OPEN_DISPUTE_STATES))).scalars().first()
        if open_one is not None:
            raise Conflict(f"invoice {inv.number} already has open dispute #{open_one}", code="open_dispute")
        by_id = {x.id: x for x in inv.lines}
        ids = list(line_ids) if line_ids else [x.id for x in sorted(inv.lines, key=lambda r: r.position)]
        bad = [f"line {i} is not on invoice {inv.number}" for i in ids if i not in by_id]
        if bad:
            raise Invalid(bad)
        lines_net = sum((by_id[i].amount for i in ids), Decimal(0))
        disputed = amount if amount is not None else lines_net
        if disputed > lines_net:
            raise Invalid(f"amount: {fmt(disputed, inv.currency)} {inv.currency} is more than the disputed lines "
                          f"bill ({fmt(lines_net, inv.currency)} {inv.currency})")
        hours, remind = sla_hours(s, category)
        d = Dispute(invoice_id=inv.id, invoice_number=inv.number, category=category, reason=reason.strip(),
                    lines=ids, amount=disputed, currency=inv.currency,
                    client_contact=(client_contact or "").strip() or None,
                    client_reference=(client_reference or "").strip() or None, owner=owner or actor,
                    opened_by=actor, state="open", opened_at=now, credited=Decimal(0),
                    remind_at=now + timedelta(hours=remind), due_at=now + timedelta(hours=hours))
        s.add(d)
        s.flush()
        audit.record(s, key=key, actor=actor, action="dispute.opened", subject_type="dispute", subject_id=d.id,
                     now=now, payload={"invoice": inv.number, "category": category, "lines": ids,
                                       "amount": fmt(disputed, inv.currency), "currency": inv.currency,
                                       "reason": d.reason,
                                       "client_contact": d.client_contact, "client_reference": d.client_reference,
                                       "owner": d.owner, "due_at": d.due_at.isoformat() if d.due_at else None})
        notify(s, "dispute.opened", dispute_id=d.id)
        return d.id


# --------------------------------------------------------------------------- resolution


def _dispute(s: Session, dispute_id: int) -> Dispute:
    d = s.get(Dispute, dispute_id)
    if d is None:
        raise NotFound(f"dispute #{dispute_id} not found")
    return d


ACTION_TEXT = {"reject": "Rejecting a dispute", "record a withdrawal of": "Recording a dispute's withdrawal",
               "propose a credit on": "Proposing a credit on a dispute"}


def access_dispute(s: Session, actor: str, d: Dispute, action: str) -> User:
    """Who may act on a dispute: proposing a credit needs an opening role; rejecting and recording a
    withdrawal a finance manager; every action only while the dispute is open (one condition a line)."""
    roles = OPEN_ROLES if action == "propose a credit on" else RESOLVE_ROLES
    user = access_user_with_role(s, actor, roles, ACTION_TEXT.get(action, action))
    if d.state == "proposed":
        raise Conflict(f"dispute #{d.id} has credit proposal #{d.credit_request_id} waiting for approval",
                       code="proposal_pending")
    if d.state not in OPEN_DISPUTE_STATES:
        raise Conflict(f"dispute #{d.id} was already {d.state} by {d.resolved_by}", code="already_resolved")
    return user


def _move(s: Session, d: Dispute, to: str, frm: tuple[str, ...], **values: Any) -> None:
    """The one conditional UPDATE every state change of a dispute is (``WHERE state IN frm``)."""
    res = s.execute(update(Dispute).where(Dispute.id == d.id, Dispute.state.in_(frm)).values(state=to, **values)
                    .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"dispute #{d.id} was changed by someone else at the same moment", code="already_resolved")
    s.refresh(d)


def days_open(d: Dispute, now: datetime) -> int:
    return max(0, (now - d.opened_at).days)


def _resolve(s: Session, d: Dispute, to: str, *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
             resolution: str | None, credited: Decimal = Decimal(0)) -> None:
    _move(s, d, to, OPEN_DISPUTE_STATES, resolved_at=now, resolved_by=actor, resolution=resolution,
          credited=credited, days_open=days_open(d, now))
    audit.record(s, key=key, actor=actor, action=f"dispute.{to}", subject_type="dispute", subject_id=d.id, now=now,
                 payload={"invoice": d.invoice_number, "outcome": to, "credited": fmt(credited, d.currency),
                          "currency": d.currency, "days_open": d.days_open, "resolution": resolution})
    notify(s, "dispute.updated", dispute_id=d.id)


def reject_dispute(db: Database, *, dispute_id: int, reason: str, actor: str, key: Ed25519PrivateKey | None,
                   now: datetime | None = None) -> Dispute:
    """"Reject dispute": the invoice stands; ``reason`` is what the client is told."""
    if not reason.strip():
        raise Invalid("reason: a rejected dispute needs a reason for the client")
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        d = _dispute(s, dispute_id)
        access_dispute(s, actor, d, "reject")
        _resolve(s, d, "rejected", actor=actor, key=key, now=now, resolution=reason.strip())
        return d


def withdraw_dispute(db: Database, *, dispute_id: int, actor: str, key: Ed25519PrivateKey | None,
                     note: str | None = None, now: datetime | None = None) -> Dispute:
    """"Withdrawn by client": the client dropped the challenge; the invoice returns to dunning."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        d = _dispute(s, dispute_id)
        access_dispute(s, actor, d, "record a withdrawal of")
        _resolve(s, d, "withdrawn", actor=actor, key=key, now=now,
                 resolution=(note or "").strip() or "withdrawn by the client")
        return d


def propose_credit(db: Database, *, dispute_id: int, actor: str, key: Ed25519PrivateKey | None,
                   asks: list[CreditAsk] | None = None, reason: str | None = None,
                   now: datetime | None = None) -> CreditNoteRequest:
    """"Propose credit": a partial credit-note request for the disputed lines (``asks``, else computed from
    the evidence by :func:`suggest_credit`) that waits for a finance manager other than ``actor``."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        d = _dispute(s, dispute_id)
        access_dispute(s, actor, d, "propose a credit on")
        if asks is None:
            asks = suggest_credit(s, d)
        if not asks:
            raise Invalid(f"dispute #{d.id}: the evidence gives no quantity to credit; name a quantity or an "
                          "amount per line")
        inv = s.get(Invoice, d.invoice_id)
        assert inv is not None
        req = request_in(s, number=d.invoice_number, line_ids=None, asks=asks, actor=actor, key=key, now=now,
                         legal_entity_id=inv.legal_entity_id, dispute_id=d.id,
                         reason=(reason or "").strip() or f"Dispute #{d.id} ({CATEGORY_TEXT[d.category]}): {d.reason}")
        _move(s, d, "proposed", ("open",), credit_request_id=req.id)
        audit.record(s, key=key, actor=actor, action="dispute.credit_proposed", subject_type="dispute",
                     subject_id=d.id, now=now, payload={"invoice": d.invoice_number, "request": req.id,
                                                        "net": fmt(req.amount, req.currency),
                                                        "partial": req.partial})
        notify(s, "dispute.updated", dispute_id=d.id)
        return req


def credit_decided(s: Session, req: CreditNoteRequest, *, actor: str, key: Ed25519PrivateKey | None,
                   now: datetime) -> None:
    """A dispute's credit proposal was decided (in :func:`bot.workflows.credit_notes.decide_credit_note`'s
    transaction): approved, the dispute ends ``credited`` with the credit note's net; rejected, it reopens."""
    d = s.get(Dispute, req.dispute_id)
    if d is None or d.state != "proposed" or d.credit_request_id != req.id:
        return
    if req.state == "approved":
        cn = s.get(Invoice, req.credit_note_id)
        credited = -cn.net if cn is not None else -req.amount
        _resolve(s, d, "credited", actor=actor, key=key, now=now, credited=credited,
                 resolution=f"credited by {cn.number if cn is not None else 'a credit note'}")
        return
    _move(s, d, "open", ("proposed",), credit_request_id=None)
    audit.record(s, key=key, actor=actor, action="dispute.reopened", subject_type="dispute", subject_id=d.id,
                 now=now, payload={"invoice": d.invoice_number, "request": req.id, "why": req.decision_reason})
    notify(s, "dispute.updated", dispute_id=d.id)


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class LineEvidence:
    line_id: int
    description: str
    quantity: Decimal
    unit: str
    amount: Decimal
    period: str
    metric: str | None  # impressions | clicks | conversions; None: not delivery-billed
    first_party: int | None
    third_party: int | None
    rule: str
    tolerance: str
    decisions: list[str]
    suggested_quantity: Decimal | None  # what the third-party figure says should be credited


def _decisions(s: Session, line: InvoiceLine) -> list[str]:
    if not line.preinvoice_id:
        return []
    out = []
    excs = list(s.execute(select(BillingException).where(BillingException.preinvoice_id == line.preinvoice_id)
                          .order_by(BillingException.id)).scalars())
    for e in excs:
        for dec in s.execute(select(Decision).where(Decision.exception_id == e.id).order_by(Decision.id)).scalars():
            why = f": {dec.reason}" if dec.reason else ""
            out.append(f"{e.kind.replace('_', ' ')} #{e.id} ({e.cause}) {dec.decision} by "
                       f"{dec.actor_name or dec.actor_id} on {dec.decided_at:%Y-%m-%d}, signed{why}")
    pre = s.get(PreInvoice, line.preinvoice_id)
    if not out and pre is not None and pre.approved_by:
        who = "the system (every check passed)" if pre.approved_by == "system" else pre.approved_by
        out.append(f"pre-invoice #{pre.id} approved by {who}"
                   + (f" on {pre.approved_at:%Y-%m-%d}" if pre.approved_at else ""))
    return out


def line_evidence(s: Session, d: Dispute) -> list[LineEvidence]:
    """Per disputed line: what was billed, first- vs third-party figures for the line's days, the rule and
    tolerance that applied, and the decisions with who signed them."""
    inv = s.get(Invoice, d.invoice_id)
    assert inv is not None
    by_id = {x.id: x for x in inv.lines}
    default_tol = get_settings().default_tolerance
    out = []
    for line_id in d.lines:
        li = by_id[int(line_id)]
        item = s.get(CampaignItem, li.item_id) if li.item_id else None
        period = f"{li.period_start}–{li.period_end}" if li.period_start and li.period_end else "—"
        metric, first, third, suggested = None, None, None, None
        rule, tol_text = "billed as booked (manual line)", "—"
        if item is not None:
            camp = s.get(Campaign, item.campaign_id)
            adv = s.get(Advertiser, camp.advertiser_id) if camp is not None else None
            le = s.get(LegalEntity, adv.legal_entity_id) if adv is not None else None
            tol, src = resolve_tolerance(item=item.tolerance, campaign=camp.tolerance if camp else None,
                                         advertiser=adv.tolerance if adv else None,
                                         legal_entity=le.tolerance if le else None, default=default_tol)
            tol_text = f"{tol * 100:.0f} % ({src.replace('_', ' ')})"
            if item.billing == "delivery" and item.rate_type in METRIC and li.period_start and li.period_end:
                metric, factor = METRIC[item.rate_type]
                per = "per 1,000 impressions" if item.rate_type == "cpm" else f"per {metric[:-1]}"
                rate = _price(item.rate) if item.rate is not None else "?"
                rule = f"{item.rate_type.upper()}: first-party {metric} × {rate} {per}"
                sums: dict[str, Any] = dict(s.execute(
                    select(DeliveryFact.party, func.sum(getattr(DeliveryFact, metric)))
                    .where(DeliveryFact.item_id == item.id, DeliveryFact.day >= li.period_start,
                           DeliveryFact.day <= li.period_end).group_by(DeliveryFact.party)).all())
                first = int(sums["first_party"]) if sums.get("first_party") is not None else None
                third = int(sums["third_party"]) if sums.get("third_party") is not None else None
                if third is not None:
                    over = li.quantity - Decimal(third) * factor
                    suggested = over if over > 0 else None
            else:
                booked = f" {fmt(item.amount, inv.currency)}" if item.amount is not None else ""
                rule = f"linear: the booked amount{booked} distributed over the campaign's billing periods"
        out.append(LineEvidence(li.id, li.description, li.quantity, li.unit, li.amount, period, metric, first, third,
                                rule, tol_text, _decisions(s, li), suggested))
    return out


def suggest_credit(s: Session, d: Dispute) -> list[CreditAsk]:
    """The credit the evidence supports: per disputed line billed above the third-party figure, that
    difference (in the line's unit); a single disputed line without third-party figures: the disputed amount."""
    ev = line_evidence(s, d)
    asks = [CreditAsk(e.line_id, quantity=e.suggested_quantity) for e in ev if e.suggested_quantity]
    if not asks and len(ev) == 1 and d.amount > 0:
        asks = [CreditAsk(ev[0].line_id, amount=d.amount)]
    return asks


def evidence_summary(db: Database, dispute_id: int) -> list[str]:
    """The plain-language summary posted in the dispute's thread: one paragraph per disputed line."""
    with db.read() as s:
        d = _dispute(s, dispute_id)
        out = []
        for e in line_evidence(s, d):
            text = (f"Line {e.line_id} — {e.description} ({e.period}): billed {_n(e.quantity)} {e.unit}, "
                    f"{fmt(e.amount, d.currency)} {d.currency}.")
            if e.metric is not None:
                fp = "no data" if e.first_party is None else f"{e.first_party:,} {e.metric}"
                tp = "no data" if e.third_party is None else f"{e.third_party:,} {e.metric}"
                text += f"\nFirst party: {fp}; third party: {tp} for those days."
                if e.first_party and e.third_party is not None:
                    gap = (Decimal(e.first_party - e.third_party) / Decimal(e.first_party) * 100)
                    text += f" Difference {gap:.1f} %."
            text += f"\nRule: {e.rule}. Tolerance: {e.tolerance}."
            text += ("\nDecisions: " + "; ".join(e.decisions) + ".") if e.decisions else "\nDecisions: none recorded."
            if e.suggested_quantity:
                text += f"\nThe third-party figure supports a credit of {_n(e.suggested_quantity)} {e.unit}."
            out.append(text)
        return out


def _price(d: Decimal) -> str:
    """A rate as written (``0.60``, ``0.0042``, ``4.05``): every digit, at least two decimals."""
    text = _n(d)
    decimals = len(text.partition(".")[2])
    return f"{d:.2f}" if decimals < 2 else text


def _n(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def store_message(db: Database, dispute_id: int, channel: str, ts: str) -> None:
    """Bookkeeping: where the dispute's Slack message (and so its thread) is."""
    with db.transaction() as s:
        s.execute(update(Dispute).where(Dispute.id == dispute_id).values(channel=channel, message_ts=ts)
                  .execution_options(synchronize_session=False))


def store_evidence(db: Database, dispute_id: int, path: str) -> None:
    """Bookkeeping: where the evidence pack built on opening went."""
    with db.transaction() as s:
        s.execute(update(Dispute).where(Dispute.id == dispute_id).values(evidence_path=path[:500])
                  .execution_options(synchronize_session=False))


def capture_comment(db: Database, *, channel: str, thread_ts: str, user: str, text: str, ts: str,
                    key: Ed25519PrivateKey | None, now: datetime | None = None) -> int | None:
    """A reply in a dispute's Slack thread, kept with the dispute (an audit record ``dispute.comment``, so
    it is signed and chained like everything else); the dispute's id, or None when the thread is not a
    dispute's. Slack's retries of one message (same ``ts``) are kept once. The one capture path for
    dispute and exception threads is :func:`bot.workflows.comments.capture_thread_message`."""
    with db.read() as s:
        d = s.execute(select(Dispute.id).where(Dispute.channel == channel, Dispute.message_ts == thread_ts)
                      ).scalars().first()
    if d is None:
        return None
    capture_thread_message(db, channel=channel, thread_ts=thread_ts, user=user, text=text, ts=ts, key=key, now=now)
    return int(d)


def comments(db: Database, dispute_id: int) -> list[Comment]:
    """The replies captured from the dispute's thread, oldest first (with their edits and deletions)."""
    return comments_of(db, "dispute", dispute_id)


# --------------------------------------------------------------------------- SLA sweep


@dataclass(frozen=True)
class DisputesDue:
    remind: list[int]
    escalate: list[int]


def due(db: Database, now: datetime) -> DisputesDue:
    with db.read() as s:
        base = select(Dispute.id).where(Dispute.state.in_(OPEN_DISPUTE_STATES)).order_by(Dispute.id)
        remind = list(s.execute(base.where(Dispute.reminded_at.is_(None), Dispute.remind_at.is_not(None),
                                           Dispute.remind_at <= now)).scalars())
        escalate = list(s.execute(base.where(Dispute.escalated_at.is_(None), Dispute.due_at.is_not(None),
                                             Dispute.due_at <= now)).scalars())
        return DisputesDue(remind, escalate)


def claim(db: Database, dispute_id: int, what: str, now: datetime, key: Ed25519PrivateKey | None) -> bool:
    """Claim a reminder or escalation with one conditional UPDATE (fires once across processes)."""
    col, when = ((Dispute.reminded_at, Dispute.remind_at) if what == "reminder"
                 else (Dispute.escalated_at, Dispute.due_at))
    with db.transaction() as s:
        res = s.execute(update(Dispute).where(Dispute.id == dispute_id, col.is_(None),
                                              Dispute.state.in_(OPEN_DISPUTE_STATES), when <= now)
                        .values({col.key: now}).execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        audit.record(s, key=key, actor="system", action=f"dispute.{'reminded' if what == 'reminder' else 'escalated'}",
                     subject_type="dispute", subject_id=dispute_id, now=now, payload={"at": now.isoformat()})
    return True


def release(db: Database, dispute_id: int, what: str, now: datetime) -> None:
    """Hand a claim back after a failed Slack post, so the next sweep retries."""
    col = Dispute.reminded_at if what == "reminder" else Dispute.escalated_at
    with db.transaction() as s:
        s.execute(update(Dispute).where(Dispute.id == dispute_id, col == now).values({col.key: None})
                  .execution_options(synchronize_session=False))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DisputeView:
    id: int
    invoice: str
    advertiser: str
    category: str
    state: str
    reason: str
    lines: list[int]
    amount: Decimal
    currency: str
    credited: Decimal
    client_contact: str | None
    client_reference: str | None
    owner: str
    opened_by: str
    opened_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    days_open: int | None
    due_at: datetime | None
    escalated: bool
    credit_request: int | None
    channel: str | None
    message_ts: str | None


def _view(d: Dispute, advertiser: str) -> DisputeView:
    return DisputeView(d.id, d.invoice_number, advertiser, d.category, d.state, d.reason, [int(x) for x in d.lines],
                       d.amount, d.currency, d.credited, d.client_contact, d.client_reference, d.owner, d.opened_by,
                       d.opened_at, d.resolved_at, d.resolved_by, d.resolution, d.days_open, d.due_at,
                       d.escalated_at is not None, d.credit_request_id, d.channel, d.message_ts)


def list_disputes(db: Database, *, state: str | None = None, invoice: str | None = None) -> list[DisputeView]:
    with db.read() as s:
        q = (select(Dispute, Advertiser.name).join(Invoice, Invoice.id == Dispute.invoice_id)
             .join(Advertiser, Advertiser.id == Invoice.advertiser_id).order_by(Dispute.id))
        if state == "open":
            q = q.where(Dispute.state.in_(OPEN_DISPUTE_STATES))
        elif state:
            q = q.where(Dispute.state == state)
        if invoice:
            q = q.where(Dispute.invoice_number == invoice.strip())
        return [_view(d, name) for d, name in s.execute(q).all()]


def get_dispute(db: Database, dispute_id: int) -> DisputeView:
    found = [v for v in list_disputes(db) if v.id == dispute_id]
    if not found:
        raise NotFound(f"dispute #{dispute_id} not found")
    return found[0]


@dataclass(frozen=True)
class DisputeStats:
    """The digest's dispute section."""

    open_count: int
    open_amount: dict[str, Decimal]  # per currency
    median_days_to_resolve: float | None  # disputes resolved in the window
    top_categories: list[tuple[str, int]]  # disputes opened in the window, most frequent first
    resolved: int = 0  # disputes resolved in the window

    @property
    def empty(self) -> bool:
        return not (self.open_count or self.top_categories or self.resolved)


def dispute_stats(db: Database, *, now: datetime, days: int = 90) -> DisputeStats:
    with db.read() as s:
        return dispute_stats_in(s, now=now, days=days)


def dispute_stats_in(s: Session, *, now: datetime, days: int = 90) -> DisputeStats:
    """Open disputes (count, amount per currency), the median days from opening to resolution of those
    resolved in the last ``days`` and the most frequent categories opened in them — so recurring causes
    show."""
    since = now - timedelta(days=days)
    rows = list(s.execute(select(Dispute)).scalars())
    open_amount: dict[str, Decimal] = defaultdict(Decimal)
    for d in rows:
        if d.state in OPEN_DISPUTE_STATES:
            open_amount[d.currency] += d.amount
    resolved = [(d.resolved_at - d.opened_at).total_seconds() / 86400 for d in rows
                if d.resolved_at is not None and d.resolved_at >= since]
    cats = Counter(d.category for d in rows if d.opened_at >= since)
    return DisputeStats(sum(1 for d in rows if d.state in OPEN_DISPUTE_STATES), dict(sorted(open_amount.items())),
                        round(statistics.median(resolved), 1) if resolved else None,
                        sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))[:3], len(resolved))
