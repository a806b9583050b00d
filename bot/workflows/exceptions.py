"""The exception lifecycle: open (upsert by key), update in place, reopen, close.

An exception is keyed (``BillingException.key`` is unique), so re-running a check never duplicates:

- no row with the key → a new ``pending`` exception with its SLA timers
  (``remind_at = now + SLA/2``, ``due_at = now + SLA``) and the number of approvals it needs;
- an open one (``pending``/``escalated``) → its amount, evidence, summary, cause and subject hash
  are updated in place; SLA timers and Slack message are kept; approvals so far are kept only
  while the subject hash is unchanged — a new subject clears them (:func:`reset_approvals`,
  audited as ``exception.approvals_reset``): an approval counts for what was approved, never
  for content changed after it;
- a decided one (``approved``/``rejected``/``forced``) whose subject hash is unchanged → left alone:
  the decision stands for what was decided on;
- a decided one whose subject changed, or a ``closed`` one (the condition had gone and is back) →
  reopened as ``pending`` with new SLA timers and without the old decision.

Locking: the row is read ``SELECT … FOR UPDATE`` (PostgreSQL; SQLite write transactions are
``BEGIN IMMEDIATE``), and an insert that loses a race on the unique key is retried as an update
inside a savepoint, so two concurrent checks of one pre-invoice still leave one row.
Every change writes an audit record and queues ``exception.opened`` / ``exception.updated`` /
``exception.closed`` (payload ``exception_id``) for after commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.errors import Conflict, NotFound
from billing.signatures import canonical_json
from bot.workflows import audit, review
from bot.workflows.effects import notify
from bot.workflows.owners import owner_for
from storage.models import OPEN_EXCEPTION_STATES, BillingException, LegalEntity
from storage.settings import get_settings

DECIDED_STATES = ("approved", "rejected", "forced")


def _jsonable(evidence: dict[str, Any]) -> dict[str, Any]:
    """The evidence as the database will hand it back (tuples → lists, Decimals → strings)."""
    out: dict[str, Any] = json.loads(canonical_json(evidence))
    return out


def _sla(now: datetime, rules: dict[str, Any] | None = None) -> tuple[datetime, datetime]:
    """``(remind_at, due_at)``: the routing rule's reminder plan and SLA, default half of SLA_HOURS."""
    return review.timers(rules, now)


def _channel(s: Session, legal_entity_id: str) -> str:
    le = s.get(LegalEntity, legal_entity_id)
    return (le.exceptions_channel if le is not None else None) or get_settings().exceptions_channel


def _audit_payload(e: BillingException, **extra: Any) -> dict[str, Any]:
    return {
        "key": e.key, "kind": e.kind, "state": e.state, "preinvoice_id": e.preinvoice_id,
        "advertiser_id": e.advertiser_id, "amount": format(e.amount.normalize(), "f"), "currency": e.currency,
        "cause": e.cause, "subject_hash": e.subject_hash, "owner": e.owner,
        "due_at": e.due_at.isoformat() if e.due_at else None, **extra,
    }


def _by_key(s: Session, key: str) -> BillingException | None:
    return s.execute(select(BillingException).where(BillingException.key == key).with_for_update()).scalar_one_or_none()


def open_exception(  # noqa: PLR0915 - the upsert's four cases read top to bottom, as the module docstring lists them
    s: Session,
    *,
    kind: str,
    key: str,
    legal_entity_id: str,
    advertiser_id: str,
    preinvoice_id: int | None,
    billing_run_id: int | None,
    period_start: date | None,
    period_end: date | None,
    amount: Decimal,
    currency: str,
    cause: str,
    summary: str,
    evidence: dict[str, Any],
    subject_hash: str,
    started_by: str | None,
    now: datetime,
    signing_key: Ed25519PrivateKey | None,
) -> BillingException:
    """Open, update, reopen or leave the exception with ``key`` (see the module docstring).

    Returns the row (flushed). ``started_by`` is who started the work (separation of duties: they
    may not decide it); an update keeps the original starter unless it was unknown.
    """
    ev = _jsonable(evidence)
    actor = started_by or "system"
    row = _by_key(s, key)
    if row is None:
        row = _new_row(s, kind=kind, key=key, legal_entity_id=legal_entity_id, advertiser_id=advertiser_id,
                       preinvoice_id=preinvoice_id, billing_run_id=billing_run_id, period_start=period_start,
                       period_end=period_end, amount=amount, currency=currency, cause=cause, summary=summary,
                       evidence=ev, subject_hash=subject_hash, started_by=started_by, now=now)
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:  # a concurrent check inserted the same key first: update that one
            existing = _by_key(s, key)
            if existing is None:
                raise
            row = existing
        else:
            _record_opened(s, row, actor=actor, signing_key=signing_key, now=now)
            return row

    if row.state in DECIDED_STATES and row.subject_hash == subject_hash:
        return row  # the decision stands for exactly this subject

    reopen = row.state not in OPEN_EXCEPTION_STATES
    changed = (
        reopen
        or row.amount != amount
        or row.cause != cause
        or row.summary != summary
        or row.subject_hash != subject_hash
        or row.currency != currency
        or _jsonable(row.evidence or {}) != ev
    )
    if not changed:
        return row  # an unchanged re-run: nothing to record
    previous = {"state": row.state, "amount": format(row.amount.normalize(), "f"), "subject_hash": row.subject_hash,
                "decision": row.decision, "decided_by": row.decided_by}
    row.amount = amount
    row.currency = currency
    row.cause = cause
    row.summary = summary
    row.evidence = ev
    subject_changed = row.subject_hash != subject_hash
    row.subject_hash = subject_hash
    row.review = review.snapshot(s, kind=kind, legal_entity_id=legal_entity_id, advertiser_id=advertiser_id,
                                 amount=amount, cause=cause)
    row.approvals_needed = review.approvals_needed(row.review, amount)
    row.billing_run_id = billing_run_id if billing_run_id is not None else row.billing_run_id
    row.period_start = period_start if period_start is not None else row.period_start
    row.period_end = period_end if period_end is not None else row.period_end
    if row.started_by is None:
        row.started_by = started_by
    if row.owner is None:
        row.owner = owner_for(s, advertiser_id=row.advertiser_id, legal_entity_id=row.legal_entity_id,
                              started_by=row.started_by)
    row.updated_at = now
    row.version = row.version + 1
    if reopen:
        row.state = "pending"
        row.remind_at, row.due_at = _sla(now, row.review)
        row.reminded_at = None
        row.escalated_at = None
        row.decided_at = None
        row.decided_by = None
        row.decision = None
        row.reason = None
        row.approvals = []
        row.channel = _channel(s, legal_entity_id)
    s.flush()
    if subject_changed and not reopen:
        reset_approvals(s, row, why="the subject changed", actor=actor, signing_key=signing_key, now=now)
    action = "exception.opened" if reopen else "exception.updated"
    audit.record(s, key=signing_key, actor=actor, action=action, subject_type="exception", subject_id=row.id,
                 payload=_audit_payload(row, reopened=reopen, previous=previous), now=now)
    notify(s, action, exception_id=row.id)
    return row


def _new_row(s: Session, *, kind: str, key: str, legal_entity_id: str, advertiser_id: str,
             preinvoice_id: int | None, billing_run_id: int | None, period_start: date | None,
             period_end: date | None, amount: Decimal, currency: str, cause: str, summary: str,
             evidence: dict[str, Any], subject_hash: str, started_by: str | None, now: datetime) -> BillingException:
    """A new ``pending`` exception with its SLA timers, routed by the review rules (not yet added to
    the session)."""
    rules = review.snapshot(s, kind=kind, legal_entity_id=legal_entity_id, advertiser_id=advertiser_id,
                            amount=amount, cause=cause)
    remind_at, due_at = _sla(now, rules)
    return BillingException(
        key=key, kind=kind, state="pending", legal_entity_id=legal_entity_id, advertiser_id=advertiser_id,
        preinvoice_id=preinvoice_id, billing_run_id=billing_run_id, period_start=period_start,
        period_end=period_end, amount=amount, currency=currency, cause=cause, summary=summary, evidence=evidence,
        subject_hash=subject_hash, approvals_needed=review.approvals_needed(rules, amount), approvals=[],
        review=rules,
        started_by=started_by, created_at=now, updated_at=now, remind_at=remind_at, due_at=due_at,
        channel=_channel(s, legal_entity_id), version=1,
        owner=owner_for(s, advertiser_id=advertiser_id, legal_entity_id=legal_entity_id, started_by=started_by),
    )


def _record_opened(s: Session, row: BillingException, *, actor: str, signing_key: Ed25519PrivateKey | None,
                   now: datetime) -> None:
    audit.record(s, key=signing_key, actor=actor, action="exception.opened", subject_type="exception",
                 subject_id=row.id, payload=_audit_payload(row), now=now)
    notify(s, "exception.opened", exception_id=row.id)


def insert_new(s: Session, specs: Sequence[dict[str, Any]]) -> dict[str, BillingException]:
    """Insert, with one flush, a ``pending`` exception for every spec whose key has no row yet.

    ``specs`` are :func:`open_exception`'s keyword arguments. The rows are returned by key WITHOUT
    their audit records: the caller passes each to :func:`record_opened` (in its own order, in
    this transaction) and takes :func:`open_exception` for the other specs. The insert runs in a
    savepoint: if a concurrent check inserted one of the keys first (unique key), it is rolled back
    and nothing is returned, so every spec takes :func:`open_exception`, which handles the race.
    """
    keys = [str(sp["key"]) for sp in specs]
    if not keys:
        return {}
    existing = set(s.execute(select(BillingException.key).where(BillingException.key.in_(keys))).scalars())
    new: dict[str, BillingException] = {}
    for sp in specs:
        if sp["key"] not in existing and sp["key"] not in new:
            args = {k: v for k, v in sp.items() if k != "signing_key"}
            new[sp["key"]] = _new_row(s, **{**args, "evidence": _jsonable(sp["evidence"])})
    if new:
        try:
            with s.begin_nested():
                s.add_all(new.values())
                s.flush()
        except IntegrityError:
            return {}
    return new


def record_opened(s: Session, row: BillingException, *, started_by: str | None,
                  signing_key: Ed25519PrivateKey | None, now: datetime) -> None:
    """The audit record and event of an exception inserted by :func:`insert_new`."""
    _record_opened(s, row, actor=started_by or "system", signing_key=signing_key, now=now)


def reset_approvals(s: Session, row: BillingException, *, why: str, actor: str,
                    signing_key: Ed25519PrivateKey | None, now: datetime) -> bool:
    """Drop the approvals given on an open exception whose subject changed since (an edit of its
    pre-invoice, a re-run with new figures). Audited as ``exception.approvals_reset`` and queued as
    the event of the same name (payload ``exception_id``, ``why``, ``dropped``: the approvers), so
    its Slack thread is told. True when there was something to drop."""
    if row.state not in OPEN_EXCEPTION_STATES or not row.approvals:
        return False
    dropped = [str(a.get("user")) for a in row.approvals if isinstance(a, dict)]
    row.approvals = []
    row.updated_at = now
    row.version = row.version + 1
    s.flush()
    audit.record(s, key=signing_key, actor=actor, action="exception.approvals_reset", subject_type="exception",
                 subject_id=row.id, payload=_audit_payload(row, why=why, dropped=dropped), now=now)
    notify(s, "exception.approvals_reset", exception_id=row.id, why=why, dropped=dropped)
    return True


def close_exception(
    s: Session,
    exception_id: int,
    *,
    reason: str,
    actor: str,
    signing_key: Ed25519PrivateKey | None,
    now: datetime,
) -> None:
    """Close an open exception whose condition is gone (e.g. a re-run no longer finds the variance).

    The row is locked ``SELECT … FOR UPDATE`` so a decision racing with the close sees one or the
    other: closing a decided exception raises :class:`Conflict`; closing a closed one is a no-op.
    """
    row = s.execute(
        select(BillingException).where(BillingException.id == exception_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"exception {exception_id} does not exist")
    if row.state == "closed":
        return
    if row.state not in OPEN_EXCEPTION_STATES:
        raise Conflict(f"exception {exception_id} is already {row.state}; it cannot be closed")
    previous = row.state
    row.state = "closed"
    row.reason = reason
    row.updated_at = now
    row.version = row.version + 1
    s.flush()
    audit.record(s, key=signing_key, actor=actor, action="exception.closed", subject_type="exception",
                 subject_id=row.id, payload=_audit_payload(row, reason=reason, previous_state=previous), now=now)
    notify(s, "exception.closed", exception_id=row.id)


def open_exceptions_for(s: Session, preinvoice_id: int) -> list[BillingException]:
    """The open (pending or escalated) exceptions of a pre-invoice, oldest first."""
    return list(
        s.execute(
            select(BillingException)
            .where(BillingException.preinvoice_id == preinvoice_id,
                   BillingException.state.in_(OPEN_EXCEPTION_STATES))
            .order_by(BillingException.id)
        ).scalars()
    )
