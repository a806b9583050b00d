"""Items held for correction (a rejected variance or manual change: "Hold for correction") have an
owner who is told, reminded per the SLA rules, and listed in the managers' digest with amounts.

The owner is the advertiser's account owner when one is set (``advertisers.account_owner``), else the
operator who started the run (the exception's ``started_by``, when it is a Slack user), else the
person who held it. Reminders reuse the exception's SLA timers, which an open exception no longer
needs once decided: on the hold, ``remind_at`` / ``due_at`` restart from the hold (SLA/2, SLA) and
``reminded_at`` is cleared; the sweep reminds the owner once, claimed by ONE conditional UPDATE
(``… SET reminded_at = :now WHERE id = :id AND state = 'rejected' AND reminded_at IS NULL AND
remind_at <= :now``), as for open exceptions (:mod:`bot.workflows.sla`). An item stops being held
when its pre-invoice is no longer ``held`` (corrected, checked again, or cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from bot.workflows.audit import record
from bot.workflows.effects import notify
from bot.workflows.owners import is_person
from storage.db import Database
from storage.models import Advertiser, BillingException, PreInvoice
from storage.settings import get_settings

HELD_KINDS = ("variance", "manual_change")


@dataclass(frozen=True)
class HeldItem:
    """One item held for correction, as the digest and the owner's DM show it."""

    exception_id: int
    preinvoice_id: int
    advertiser: str
    amount: Decimal  # the pre-invoice's net: what waits to be billed
    currency: str
    owner: str | None
    held_by: str | None
    held_at: datetime | None
    reason: str | None
    remind_at: datetime | None


def owner_of(exc: BillingException, advertiser: Advertiser | None) -> str | None:
    """Who owns the correction: the exception's owner (given when it opened by
    :func:`bot.workflows.owners.owner_for`, or whoever it was assigned to since), else — for exceptions
    opened before owners existed — the account owner or the operator who started the run, else the
    person who held it (Slack ids only — a run started from a shell has no one to tell)."""
    for who in (exc.owner, advertiser.account_owner if advertiser is not None else None, exc.started_by,
                exc.decided_by):
        if is_person(who):
            return who
    return None


def start_hold_timers(s: Session, exc: BillingException, *, now: datetime) -> str | None:
    """In the deciding transaction: the hold's SLA timers start now, and ``exception.held`` tells the
    owner after commit. Returns the owner."""
    hours = get_settings().sla_hours
    exc.remind_at, exc.due_at, exc.reminded_at = now + timedelta(hours=hours / 2), now + timedelta(hours=hours), None
    owner = owner_of(exc, s.get(Advertiser, exc.advertiser_id))
    notify(s, "exception.held", exception_id=exc.id, owner=owner)
    return owner


def _held_query() -> Select[BillingException, PreInvoice, Advertiser]:
    return (select(BillingException, PreInvoice, Advertiser)
            .join(PreInvoice, PreInvoice.id == BillingException.preinvoice_id)
            .join(Advertiser, Advertiser.id == BillingException.advertiser_id)
            .where(BillingException.state == "rejected", BillingException.kind.in_(HELD_KINDS),
                   PreInvoice.state == "held"))


def _item(exc: BillingException, pi: PreInvoice, adv: Advertiser) -> HeldItem:
    return HeldItem(exception_id=exc.id, preinvoice_id=pi.id, advertiser=adv.name, amount=pi.net,
                    currency=pi.currency, owner=owner_of(exc, adv), held_by=exc.decided_by, held_at=exc.decided_at,
                    reason=exc.reason, remind_at=exc.remind_at)


def held_items(s: Session, *, limit: int | None = None) -> list[HeldItem]:
    """Items held for correction now, the largest amounts first."""
    q = _held_query().order_by(PreInvoice.net.desc(), BillingException.id)
    if limit is not None:
        q = q.limit(limit)
    return [_item(e, p, a) for e, p, a in s.execute(q).all()]


def held_item(db: Database, exception_id: int) -> HeldItem | None:
    with db.read() as s:
        row = s.execute(_held_query().where(BillingException.id == exception_id)).first()
        if row is None:
            return None
        exc, pi, adv = row
        return _item(exc, pi, adv)


def due_reminders(db: Database, now: datetime) -> list[int]:
    """Held items whose reminder time passed and whose owner was not reminded yet."""
    with db.read() as s:
        return list(s.execute(
            select(BillingException.id).join(PreInvoice, PreInvoice.id == BillingException.preinvoice_id)
            .where(BillingException.state == "rejected", BillingException.kind.in_(HELD_KINDS),
                   PreInvoice.state == "held", BillingException.reminded_at.is_(None),
                   BillingException.remind_at.is_not(None), BillingException.remind_at <= now)
            .order_by(BillingException.id)).scalars())


def claim_reminder(db: Database, exc_id: int, now: datetime, key: Ed25519PrivateKey | None) -> bool:
    """One conditional UPDATE decides which sweeper reminds the owner (see the module docstring)."""
    with db.transaction() as s:
        res = s.execute(
            update(BillingException)
            .where(BillingException.id == exc_id, BillingException.state == "rejected",
                   BillingException.reminded_at.is_(None), BillingException.remind_at <= now)
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        record(s, key=key, actor="system", action="exception.held_reminded", subject_type="exception",
               subject_id=exc_id, payload={"reminded_at": now.isoformat()}, now=now)
    return True


def release_reminder(db: Database, exc_id: int, now: datetime, *, error: str, key: Ed25519PrivateKey | None) -> None:
    """Hand the claim back after a failed DM, only if nobody moved the row since."""
    with db.transaction() as s:
        res = s.execute(update(BillingException)
                        .where(BillingException.id == exc_id, BillingException.reminded_at == now)
                        .values(reminded_at=None).execution_options(synchronize_session=False))
        if res.rowcount == 1:  # type: ignore[attr-defined]
            record(s, key=key, actor="system", action="exception.held_reminder_failed", subject_type="exception",
                   subject_id=exc_id, payload={"error": error, "retry": True}, now=now)
