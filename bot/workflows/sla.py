"""SLA timers as data: the sweep that reminds and escalates open exceptions.

Each open exception carries ``remind_at`` (default: half its SLA) and ``due_at``. :func:`sweep`
runs every minute and at start-up, in any number of processes. Every step is claimed by ONE
conditional UPDATE whose row count decides who acts:

- reminder: ``UPDATE exceptions SET reminded_at = :now WHERE id = :id AND reminded_at IS NULL
  AND state IN ('pending', 'escalated') AND remind_at <= :now``
- escalation: ``UPDATE exceptions SET state = 'escalated', escalated_at = :now … WHERE id = :id
  AND escalated_at IS NULL AND state = 'pending' AND due_at <= :now``

A concurrent sweeper's UPDATE waits for the winner's row lock (PostgreSQL) or its
``BEGIN IMMEDIATE`` (SQLite), re-evaluates the WHERE clause and matches nothing. Because the state
lives in the row, a process that was down across ``due_at`` catches up on its first sweep — once.
Cash-application exceptions (payments a person must settle: unmatched, over- or under-paid beyond
the tolerance) carry the same timers in their ``payments`` row (``sla_state`` open → escalated,
``settled`` once decided); the sweep claims them with the same conditional UPDATEs
(:func:`claim_payment_reminder`, :func:`claim_payment_escalation`).
Slack is told after the claim commits (:mod:`bot.slack.sla` runs the sweep: it asks here what is due,
claims each row, says it, and on a failed post hands the claim back with :func:`release`, another
conditional UPDATE), so the next sweep retries and nothing is ever posted twice for one claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, joinedload

from bot.workflows import review
from bot.workflows.audit import record
from bot.workflows.effects import notify
from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, BillingException, Payment, User, UserRole

log = logging.getLogger(__name__)

OPEN_PAYMENT_SLA_STATES = ("open", "escalated")  # a cash-application exception's timers still run


def claim_reminder(db: Database, exc_id: int, now: datetime, key: Ed25519PrivateKey | None) -> datetime | None:
    """Claim the reminder due at the row's ``remind_at``. Under a routing rule's reminder plan
    (issue 21: e.g. 50 %, 75 %, 100 % of the SLA, then every N hours to the managers) the same
    UPDATE moves ``remind_at`` on to the plan's next point, guarded by the ``remind_at`` it read, so
    each point is claimed once; without one, ``remind_at`` stays and the reminder goes once.
    Returns the claimed point (for :func:`release`), None when there was nothing to claim."""
    with db.transaction() as s:
        exc = s.get(BillingException, exc_id)
        if exc is None or exc.remind_at is None:
            return None
        seen = exc.remind_at
        nxt, to_managers = review.next_reminder(exc, now)
        res = s.execute(
            update(BillingException)
            .where(BillingException.id == exc_id, BillingException.remind_at == seen,
                   or_(BillingException.reminded_at.is_(None), BillingException.reminded_at < seen),
                   BillingException.state.in_(OPEN_EXCEPTION_STATES), BillingException.remind_at <= now)
            .values(reminded_at=now, remind_at=nxt)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return None
        payload: dict[str, object] = {"reminded_at": now.isoformat()}
        if exc.review and exc.review.get("sla"):
            payload.update(rule=exc.review.get("rule"), due_at=seen.isoformat(),
                           to="managers" if to_managers else "approvers",
                           next=nxt.isoformat() if nxt is not None else None)
        record(s, key=key, actor="system", action="exception.reminded", subject_type="exception",
               subject_id=exc_id, payload=payload, now=now)
    return seen


def reminder_goes_to_managers(e: BillingException) -> bool:
    """A reminder after expiry (a repeat of the rule's plan) goes to the managers, not the approvers."""
    if not (e.review or {}).get("sla"):
        return False  # the default reminder names the approvers, however late it goes out
    return e.reminded_at is not None and e.due_at is not None and e.reminded_at > e.due_at


def claim_escalation(db: Database, exc_id: int, now: datetime, key: Ed25519PrivateKey | None) -> bool:
    with db.transaction() as s:
        res = s.execute(
            update(BillingException)
            .where(BillingException.id == exc_id, BillingException.escalated_at.is_(None),
                   BillingException.state == "pending", BillingException.due_at <= now)
            .values(state="escalated", escalated_at=now, updated_at=now, version=BillingException.version + 1)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        record(s, key=key, actor="system", action="exception.escalated", subject_type="exception",
               subject_id=exc_id, payload={"escalated_at": now.isoformat(), "from": "pending"}, now=now)
        notify(s, "exception.updated", exception_id=exc_id)
    return True


def release(db: Database, exc_id: int, now: datetime, what: str, *, error: str,
             key: Ed25519PrivateKey | None, claimed: datetime | None = None) -> None:
    """Hand a claim back after a failed Slack post, only if nobody moved the row since."""
    with db.transaction() as s:
        q = update(BillingException).where(BillingException.id == exc_id)
        if what == "reminder":  # the claimed point comes back (a rule's plan had moved remind_at on)
            q = q.where(BillingException.reminded_at == now).values(
                reminded_at=None, remind_at=claimed if claimed is not None else BillingException.remind_at)
        else:
            q = q.where(BillingException.escalated_at == now, BillingException.state == "escalated").values(
                state="pending", escalated_at=None, updated_at=now, version=BillingException.version + 1)
        res = s.execute(q.execution_options(synchronize_session=False))
        if res.rowcount == 1:  # type: ignore[attr-defined]
            record(s, key=key, actor="system", action=f"exception.{what}_failed", subject_type="exception",
                   subject_id=exc_id, payload={"error": error, "retry": True}, now=now)
            if what == "escalation":
                notify(s, "exception.updated", exception_id=exc_id)


def _users_with_role(s: Session, role: str) -> list[str]:
    return list(s.execute(
        select(User.slack_id).join(UserRole, UserRole.slack_id == User.slack_id)
        .where(UserRole.role == role).order_by(User.slack_id)
    ).scalars())


@dataclass(frozen=True)
class Due:
    """What a sweep at ``now`` has to do: exceptions to remind and to escalate, and who to tell."""

    remind: list[int]
    escalate: list[int]
    approvers: list[str]
    managers: list[str]
    remind_payments: list[int] = field(default_factory=list)  # cash-application exceptions (payment ids)
    escalate_payments: list[int] = field(default_factory=list)
    cash_appliers: list[str] = field(default_factory=list)


def due(db: Database, now: datetime) -> Due:
    """The exceptions whose reminder or due time has passed and that were not reminded/escalated yet."""
    with db.read() as s:
        remind_ids = list(s.execute(
            select(BillingException.id).where(
                BillingException.state.in_(OPEN_EXCEPTION_STATES),
                or_(BillingException.reminded_at.is_(None), BillingException.reminded_at < BillingException.remind_at),
                BillingException.remind_at.is_not(None), BillingException.remind_at <= now,
            ).order_by(BillingException.id)).scalars())
        escalate_ids = list(s.execute(
            select(BillingException.id).where(
                BillingException.state == "pending", BillingException.escalated_at.is_(None),
                BillingException.due_at.is_not(None), BillingException.due_at <= now,
            ).order_by(BillingException.id)).scalars())
        remind_payments = list(s.execute(
            select(Payment.id).where(
                Payment.sla_state.in_(OPEN_PAYMENT_SLA_STATES), Payment.reminded_at.is_(None),
                Payment.remind_at.is_not(None), Payment.remind_at <= now,
            ).order_by(Payment.id)).scalars())
        escalate_payments = list(s.execute(
            select(Payment.id).where(
                Payment.sla_state == "open", Payment.escalated_at.is_(None),
                Payment.due_at.is_not(None), Payment.due_at <= now,
            ).order_by(Payment.id)).scalars())
        return Due(remind_ids, escalate_ids, _users_with_role(s, "approver"), _users_with_role(s, "finance_manager"),
                   remind_payments, escalate_payments, _users_with_role(s, "cash_applier"))


def load_exception(db: Database, exc_id: int) -> BillingException:
    """The exception with its advertiser, detached for the message that names them."""
    with db.read() as s:
        e = s.execute(select(BillingException).options(joinedload(BillingException.advertiser))
                      .where(BillingException.id == exc_id)).scalar_one()
        s.expunge(e)
        return e


# --------------------------------------------------------------------------- cash-application exceptions


def claim_payment_reminder(db: Database, payment_id: int, now: datetime, key: Ed25519PrivateKey | None) -> bool:
    with db.transaction() as s:
        res = s.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.reminded_at.is_(None),
                   Payment.sla_state.in_(OPEN_PAYMENT_SLA_STATES), Payment.remind_at <= now)
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        record(s, key=key, actor="system", action="payment.reminded", subject_type="payment",
               subject_id=payment_id, payload={"reminded_at": now.isoformat()}, now=now)
    return True


def claim_payment_escalation(db: Database, payment_id: int, now: datetime, key: Ed25519PrivateKey | None) -> bool:
    with db.transaction() as s:
        res = s.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.escalated_at.is_(None), Payment.sla_state == "open",
                   Payment.due_at <= now)
            .values(sla_state="escalated", escalated_at=now)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        record(s, key=key, actor="system", action="payment.escalated", subject_type="payment",
               subject_id=payment_id, payload={"escalated_at": now.isoformat(), "from": "open"}, now=now)
    return True


def release_payment(db: Database, payment_id: int, now: datetime, what: str, *, error: str,
                    key: Ed25519PrivateKey | None) -> None:
    """Hand a payment's claim back after a failed Slack post, only if nobody moved the row since."""
    with db.transaction() as s:
        q = update(Payment).where(Payment.id == payment_id)
        if what == "reminder":
            q = q.where(Payment.reminded_at == now).values(reminded_at=None)
        else:
            q = q.where(Payment.escalated_at == now, Payment.sla_state == "escalated").values(
                sla_state="open", escalated_at=None)
        res = s.execute(q.execution_options(synchronize_session=False))
        if res.rowcount == 1:  # type: ignore[attr-defined]
            record(s, key=key, actor="system", action=f"payment.{what}_failed", subject_type="payment",
                   subject_id=payment_id, payload={"error": error, "retry": True}, now=now)


def load_payment(db: Database, payment_id: int) -> Payment:
    """The payment, detached, for the reminder / escalation message that names it."""
    with db.read() as s:
        p = s.execute(select(Payment).where(Payment.id == payment_id)).scalar_one()
        s.expunge(p)
        return p
