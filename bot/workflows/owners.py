"""Owners of exceptions (issue 21): who sees an exception through.

Every exception gets an owner when it opens (:func:`owner_for`): the advertiser's ``account_owner``,
else the person who started the work (a run, an edit — not the system), else the legal entity's
``default_owner`` (scenario keys). Anyone working the desk can take it ("Assign to me") or hand it
to another desk member ("Assign…"): :func:`assign` checks both, records ``exception.assigned``
(owner, previous owner) in the audit log and queues ``exception.updated`` so the message shows the
new owner. The owner gets the SLA reminder in a DM (:mod:`bot.slack.sla`); the escalation still goes
to the managers' channel.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.errors import Conflict, NotFound
from bot.workflows import audit
from bot.workflows.effects import notify
from bot.workflows.users import access_user_with_role
from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, Advertiser, BillingException, LegalEntity

DESK_ROLES = frozenset({"operator", "approver", "finance_manager", "admin"})


def is_person(actor: str | None) -> bool:
    """A Slack user id (not ``system``, ``cli:…`` or another machine actor)."""
    return actor is not None and actor[:1] in ("U", "W") and ":" not in actor


def owner_for(s: Session, *, advertiser_id: str, legal_entity_id: str, started_by: str | None) -> str | None:
    """The rule: the advertiser's account owner, else who started the work, else the entity's default."""
    adv = s.get(Advertiser, advertiser_id)
    if adv is not None and adv.account_owner:
        return adv.account_owner
    if is_person(started_by):
        return started_by
    le = s.get(LegalEntity, legal_entity_id)
    return le.default_owner if le is not None else None


def assign(db: Database, *, exception_id: int, owner: str, actor: str, key: Ed25519PrivateKey | None,
           now: datetime | None = None) -> tuple[str | None, str]:
    """Make ``owner`` the owner of the open exception; returns ``(previous, owner)``. ``actor`` and
    ``owner`` must both work the desk (operator, approver, finance manager or admin)."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        access_user_with_role(s, actor, DESK_ROLES, "assigning an exception")
        access_user_with_role(s, owner, DESK_ROLES, "owning an exception")
        exc = s.execute(select(BillingException).where(BillingException.id == exception_id)
                        .with_for_update()).scalar_one_or_none()
        if exc is None:
            raise NotFound(f"exception {exception_id} does not exist")
        if exc.state not in OPEN_EXCEPTION_STATES:
            raise Conflict(f"exception {exception_id} is already {exc.state}; only open exceptions are assigned",
                           code="already_decided")
        previous = exc.owner
        if previous == owner:
            return previous, owner
        exc.owner = owner
        exc.updated_at = now
        s.flush()
        audit.record(s, key=key, actor=actor, action="exception.assigned", subject_type="exception",
                     subject_id=exc.id, now=now, payload={"owner": owner, "previous": previous})
        notify(s, "exception.updated", exception_id=exc.id)
        return previous, owner
