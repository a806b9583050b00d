"""Decisions on exceptions: Approve, Reject, Force (DESIGN.md "Exceptions and decisions").

| kind              | approve                         | reject               | force                             |
|-------------------|---------------------------------|----------------------|-----------------------------------|
| ``variance``      | bill the computed amount        | hold the pre-invoice | bill the booked amount (override) |
| ``below_threshold`` | accept the skip (items carry) | write the items off | invoice now, below the threshold  |
| ``stale_source``  | refused (sync, or Force)        | hold the pre-invoice | bill the data as it is (override) |

Reject and Force need a reason; Force and a below-threshold write-off (money leaving) need
``finance_manager``; a refusal names who can decide instead; nobody decides on work they started
or edited; a variance held for correction gets an owner (:mod:`bot.workflows.held`); above the
two-approver amount two different approvers must approve. Every decision is one atomic
conditional UPDATE (see :func:`decide`), writes a :class:`~storage.models.Decision` row and a
signed audit record, and queues ``exception.decided`` for after commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.errors import BillingError, Conflict, Invalid, NotAllowed, NotFound
from billing.signatures import content_hash
from bot.workflows import audit, billing_run, held, manual_invoices, preinvoices, review
from bot.workflows.effects import notify
from bot.workflows.users import ProfileLookup, display_name, ensure_user, users_with_role
from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, AuditLog, BillingException, Decision, PreInvoice, User
from storage.settings import local_time

DecisionKind = Literal["approve", "reject", "force"]
DECISIONS: tuple[DecisionKind, ...] = get_args(DecisionKind)
DECIDED_STATE: dict[str, str] = {"approve": "approved", "reject": "rejected", "force": "forced"}
NEEDS_REASON = frozenset({"reject", "force"})
APPROVER_ROLES = frozenset({"approver", "finance_manager"})


class Refused(NotAllowed):
    """The actor may not decide this (role, separation of duties): told, and audited as
    ``decision.refused``. Other NotAllowed errors (e.g. a pre-invoice with problems) are not refusals."""


@dataclass(frozen=True)
class DecisionOutcome:
    exception_id: int
    decision: DecisionKind
    final: bool  # False while more approvals are needed ("1 of 2 approvals")
    approvals: int
    approvals_needed: int
    decision_id: int
    audit_id: int
    subject_hash: str
    actor: str
    invoice_ids: tuple[int, ...] = field(default=())


# --------------------------------------------------------------------------- what is decided on


def _num(d: Decimal | None) -> str | None:
    """Canonical text of a number: the same on SQLite (exact text) and PostgreSQL (NUMERIC(20,6))."""
    return None if d is None else format(d.normalize(), "f")


def subject_document(exc: BillingException) -> dict[str, Any]:
    """What a decision on ``exc`` binds to: the exception's figures and, for a variance, the
    pre-invoice content. Its SHA-256 travels in the button value; any change makes the message stale."""
    doc: dict[str, Any] = {
        "exception": {
            "id": exc.id, "kind": exc.kind, "key": exc.key, "advertiser": exc.advertiser_id,
            "amount": _num(exc.amount), "currency": exc.currency, "cause": exc.cause,
            "subject_hash": exc.subject_hash,
            "period_start": exc.period_start.isoformat() if exc.period_start else None,
            "period_end": exc.period_end.isoformat() if exc.period_end else None,
        }
    }
    pi = exc.preinvoice
    if pi is not None:
        doc["preinvoice"] = {
            "id": pi.id, "content_hash": pi.content_hash, "net": _num(pi.net), "currency": pi.currency,
            "period_start": pi.period_start.isoformat(), "period_end": pi.period_end.isoformat(),
            "edited_by": pi.edited_by,
            "lines": [
                {"description": ln.description, "quantity": _num(ln.quantity),
                 "unit_price": _num(ln.unit_price), "amount": _num(ln.amount)}
                for ln in pi.lines
            ],
        }
    return doc


def subject_hash_of(exc: BillingException) -> str:
    return content_hash(subject_document(exc))


# --------------------------------------------------------------------------- who may decide


def _when(at: datetime | None) -> str:
    return local_time(at, empty="an earlier time")


def already_decided_message(exc: BillingException) -> str:
    """"Already approved by <@U…> at 2026-03-02 11:15 CET" (``BILLBOT_TIMEZONE``; Slack renders the mention)."""
    who = f"<@{exc.decided_by}>" if exc.decided_by else "someone"
    state = exc.state if exc.state != "closed" else "closed"
    return f"Already {state} by {who} at {_when(exc.decided_at or exc.updated_at)}."


def valid_approvals(exc: BillingException) -> list[dict[str, Any]]:
    """The approvals given on the exception's CURRENT subject: each approval records the subject
    hash it was given on, and one given on other content (changed since) counts for nothing."""
    digest = subject_hash_of(exc)
    return [a for a in (exc.approvals or []) if isinstance(a, dict) and a.get("subject") == digest]


def approvers_so_far(exc: BillingException) -> list[str]:
    return [str(a.get("user")) for a in valid_approvals(exc)]


EDIT_ACTIONS = ("preinvoice.line_edited", "preinvoice.line_added", "preinvoice.line_deleted")


def editors_of(s: Session, preinvoice_id: int) -> set[str]:
    """Everyone who ever edited the pre-invoice, from its edit history in the audit log (every
    editor, not only the last one: an edit by someone else later does not make an editor a checker)."""
    return set(s.execute(
        select(AuditLog.actor).where(AuditLog.subject_type == "preinvoice",
                                     AuditLog.subject_id == str(preinvoice_id),
                                     AuditLog.action.in_(EDIT_ACTIONS)).distinct()
    ).scalars())


#: The choice's name in refusals, as the buttons say it (``Write off needs a finance manager: …``)
CHOICE_NAME: dict[tuple[str, str], str] = {
    ("variance", "approve"): "Approve", ("variance", "reject"): "Hold for correction", ("variance", "force"): "Force",
    ("below_threshold", "approve"): "Carry over", ("below_threshold", "reject"): "Write off",
    ("below_threshold", "force"): "Invoice now",
    ("manual_change", "approve"): "Accept the change", ("manual_change", "reject"): "Hold for correction",
    ("stale_source", "reject"): "Hold for correction", ("stale_source", "force"): "Bill as it is",
}
#: A below-threshold Reject writes the items off (money leaving): like Force, a finance manager's call.
FINANCE_MANAGER_CHOICES = frozenset({("variance", "force"), ("below_threshold", "force"),
                                     ("below_threshold", "reject"), ("stale_source", "force")})
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
WHO_CAN_SHOWN = 6


def who_can(s: Session, roles: frozenset[str], *, exclude: set[str]) -> str:
    """``<@U1>, <@U2>`` — the users who hold one of ``roles``, minus ``exclude`` (Slack renders the
    mentions; only well-formed Slack ids are written, so the text is safe markup)."""
    ids = [i for i in users_with_role(s, roles, exclude=frozenset(exclude)) if _SLACK_ID.match(i)]
    if not ids:
        return "nobody holds that role yet"
    shown = ", ".join(f"<@{i}>" for i in ids[:WHO_CAN_SHOWN])
    return shown + (f" and {len(ids) - WHO_CAN_SHOWN} more" if len(ids) > WHO_CAN_SHOWN else "")


def _choice(exc: BillingException, decision: str) -> str:
    return CHOICE_NAME.get((exc.kind, decision), decision.capitalize())


def _deciders_but(s: Session | None, exc: BillingException, decision: str, *also: str | None) -> str:
    if s is None:
        return "see the roles (`billbot users list`)"
    roles = frozenset({"finance_manager"}) if (exc.kind, decision) in FINANCE_MANAGER_CHOICES else APPROVER_ROLES
    exclude = {x for x in (exc.started_by, *also) if x}
    if exc.preinvoice is not None:
        exclude |= {x for x in (exc.preinvoice.created_by, exc.preinvoice.edited_by) if x}
        exclude |= editors_of(s, exc.preinvoice.id)
    return who_can(s, roles, exclude=exclude)


def access_exception_for_decision(
    s: Session, user: User, exception_id: int, decision: DecisionKind, *, explain: bool = True,
    group_lookup: review.GroupLookup | None = None,
) -> BillingException:
    """The exception ``user`` may ``decide`` on, or the reason they may not (one condition per line).

    Raises NotFound, Invalid, Conflict (already decided — tells by whom), Refused (role,
    separation of duties — naming who can decide, unless ``explain`` is False; the caller audits
    those as ``decision.refused``).
    """
    exc = s.get(BillingException, exception_id)
    roles = user.role_names
    me = user.slack_id
    if exc is None:
        raise NotFound(f"exception {exception_id} does not exist")

    def who() -> str:
        return _deciders_but(s if explain else None, exc, decision, me)

    if decision not in DECISIONS:
        raise Invalid(f"decision: must be one of {', '.join(DECISIONS)} (got {decision!r})")
    if exc.state not in OPEN_EXCEPTION_STATES:
        raise Conflict(already_decided_message(exc), code="already_decided")
    if decision == "force" and exc.kind == "manual_change":
        raise Invalid("force: a manual change is approved or rejected by a second person, never forced")
    if decision == "approve" and exc.kind == "stale_source":
        raise Invalid("approve: stale source data is not approved — sync the source (the next run bills the "
                      "pre-invoice from the new data) or Force with a reason (finance manager) to bill it as it is")
    if (exc.kind, decision) in FINANCE_MANAGER_CHOICES and "finance_manager" not in roles:
        raise Refused(f"{_choice(exc, decision)} needs a finance manager: {who()}.",
                      code="finance_manager_required")
    if decision != "force" and not roles & APPROVER_ROLES:
        raise Refused(f"{_choice(exc, decision)} needs an approver: {who()}.",
                      code="approver_required")
    if decision != "force" and (outside := review.outside_group(exc, me, group_lookup)):
        raise Refused(outside, code="not_in_approver_group")  # Force stays the finance managers' override
    if exc.started_by == me:
        raise Refused("You started this work, so someone else must decide it: "
                      f"{who()}.", code="own_work")
    if exc.preinvoice is not None and exc.preinvoice.created_by == me:
        raise Refused("You created this pre-invoice, so someone else must decide it: "
                      f"{who()}.", code="own_work")
    if exc.preinvoice is not None and (exc.preinvoice.edited_by == me or me in editors_of(s, exc.preinvoice.id)):
        raise Refused("You edited this pre-invoice, so someone else must decide it: "
                      f"{who()}.", code="own_work")
    if decision == "force" and me in approvers_so_far(exc):
        raise Refused("You already approved this, so someone else must complete it: two approvals mean "
                      f"two different people, whatever their roles ({who()}).",
                      code="own_approval")
    if decision == "approve" and me in approvers_so_far(exc):
        raise Conflict(
            f"You already approved this ({len(approvers_so_far(exc))} of {exc.approvals_needed} approvals); "
            "a second, different approver is needed.", code="already_approved_by_you")
    return exc


# --------------------------------------------------------------------------- consequences


def _open_exceptions_on(s: Session, preinvoice_id: int, *, other_than: int) -> int:
    rows = s.execute(
        select(BillingException.id).where(
            BillingException.preinvoice_id == preinvoice_id,
            BillingException.state.in_(OPEN_EXCEPTION_STATES),
            BillingException.id != other_than,
        )
    ).all()
    return len(rows)


def _carried_items(s: Session, exc: BillingException) -> list[int]:
    """The pre-invoices a below-threshold skip held back: named in the evidence, else every approved,
    not yet invoiced pre-invoice of the advertiser up to the skipped period."""
    named = (exc.evidence or {}).get("preinvoice_ids")
    if named:
        return [int(i) for i in named]
    q = select(PreInvoice.id).where(
        PreInvoice.advertiser_id == exc.advertiser_id,
        PreInvoice.state == "approved",
        PreInvoice.invoice_id.is_(None),
    )
    if exc.period_end is not None:
        q = q.where(PreInvoice.period_end <= exc.period_end)
    return [int(i) for i in s.execute(q.order_by(PreInvoice.id)).scalars()]


def _apply_stale(s: Session, exc: BillingException, decision: DecisionKind, *, actor: str, reason: str | None,
                 key: Ed25519PrivateKey | None, now: datetime) -> tuple[int, ...]:
    """Issue 21: Force bills the data as it is (once no other exception is open), Reject holds the
    pre-invoice; Approve never gets here (refused in :func:`access_exception_for_decision`)."""
    if exc.preinvoice_id is None:
        raise Invalid(f"exception {exc.id}: a stale_source check without a pre-invoice cannot be decided")
    if decision == "reject":
        preinvoices.hold_preinvoice(s, exc.preinvoice_id, reason=reason, actor=actor, signing_key=key, now=now)
    elif decision == "force" and _open_exceptions_on(s, exc.preinvoice_id, other_than=exc.id) == 0:
        preinvoices.approve_preinvoice(s, exc.preinvoice_id, actor=actor, signing_key=key, now=now)
    return ()


def _apply(  # noqa: C901 - the decision table: one branch per kind and decision
    s: Session, exc: BillingException, decision: DecisionKind, *, actor: str, reason: str | None,
    key: Ed25519PrivateKey | None, now: datetime, today: date,
) -> tuple[int, ...]:
    """Move the pre-invoice / items on, per the decision table. Returns invoice ids created (Force
    on a below-threshold skip)."""
    if exc.kind == "variance":
        if exc.preinvoice_id is None:
            raise Invalid(f"exception {exc.id}: a variance without a pre-invoice cannot be decided")
        if decision == "approve":
            # the pre-invoice becomes billable only once none of its other exceptions is open
            if _open_exceptions_on(s, exc.preinvoice_id, other_than=exc.id) == 0:
                preinvoices.approve_preinvoice(s, exc.preinvoice_id, actor=actor, signing_key=key, now=now)
        elif decision == "reject":
            preinvoices.hold_preinvoice(s, exc.preinvoice_id, reason=reason, actor=actor, signing_key=key, now=now)
            held.start_hold_timers(s, exc, now=now)
        else:
            preinvoices.override_to_booked(s, exc.preinvoice_id, actor=actor, signing_key=key, now=now)
        return ()
    if exc.kind == "stale_source":
        return _apply_stale(s, exc, decision, actor=actor, reason=reason, key=key, now=now)
    if exc.kind == "manual_change":  # maker-checker: the checker accepts or rejects the edit
        if exc.preinvoice_id is None:
            raise Invalid(f"exception {exc.id}: a manual change without a pre-invoice cannot be decided")
        if decision == "approve":
            if _open_exceptions_on(s, exc.preinvoice_id, other_than=exc.id) == 0:
                preinvoices.approve_preinvoice(s, exc.preinvoice_id, actor=actor, signing_key=key, now=now)
            return ()
        if decision == "reject":
            preinvoices.hold_preinvoice(s, exc.preinvoice_id, reason=reason, actor=actor, signing_key=key, now=now)
            held.start_hold_timers(s, exc, now=now)
            return ()
        raise Invalid("force: a manual change is approved or rejected by a second person, never forced")
    if exc.kind == "below_threshold":
        if decision == "approve":
            return ()  # the skip stands; the items wait for the next run
        if decision == "reject":
            billing_run.withdraw_items(s, advertiser_id=exc.advertiser_id, preinvoice_ids=_carried_items(s, exc),
                               actor=actor, signing_key=key, reason=reason, now=now)
            return ()
        if exc.period_end is None:
            raise Invalid(f"exception {exc.id}: a below-threshold skip without a period cannot be invoiced")
        invoices = billing_run.finalize_for_advertiser(
            s, advertiser_id=exc.advertiser_id, period_end=exc.period_end, actor=actor, signing_key=key,
            today=today, billing_run_id=exc.billing_run_id, ignore_threshold=True,
        )
        return tuple(int(inv.id) for inv in invoices or ())
    raise Invalid(f"exception {exc.id}: unknown kind {exc.kind!r}")


# --------------------------------------------------------------------------- review controls (issue 21)


def check_checklist(exc: BillingException, decision: str, checked: Sequence[str]) -> list[str]:
    """The exception's checklist for ``decision``, all ticked, or Invalid naming what is not."""
    missing = review.missing_items(exc, decision, checked)
    if missing:
        raise Invalid(f"checklist: tick every item before you {decision}; not ticked: " + "; ".join(missing),
                      code="checklist_incomplete")
    return review.checklist_for(exc, decision)


def _review_payload(exc: BillingException, checklist: list[str]) -> dict[str, Any]:
    """What the signed record says of the review controls: only present under a rule or checklist,
    so records of exceptions without rules keep their former shape."""
    if not exc.review:
        return {}
    out: dict[str, Any] = {"rule": exc.review.get("rule", review.DEFAULT_RULE)}
    if exc.review.get("approvers"):
        out["approver_group"] = exc.review["approvers"]
    if checklist:
        out["checklist"] = [{"item": it, "checked": True} for it in checklist]
    return out


def auto_approve_on_timeout(
    db: Database, exception_id: int, *, now: datetime, key: Ed25519PrivateKey | None, today: date | None = None,
) -> DecisionOutcome | None:
    """The routing rule's timeout outcome ``auto_approve``: at expiry, a pending variance under the
    rule's small amount is approved by the system, audited as the system's decision naming the rule.

    Locking: one conditional UPDATE ``… WHERE id = :id AND state = 'pending' AND escalated_at IS NULL
    AND due_at <= :now AND version = :v`` (like the escalation claim it replaces): a concurrent sweep
    or a human decision in the same moment matches 0 rows and nothing is written. None when the rule
    does not auto-approve this exception or someone else moved it first."""
    today = today or now.date()
    with db.transaction() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None or exc.state != "pending" or exc.due_at is None or exc.due_at > now:
            return None
        if not review.auto_approves(exc):
            return None
        digest = subject_hash_of(exc)
        rule = str((exc.review or {}).get("rule"))
        below = ((exc.review or {}).get("sla") or {}).get("auto_approve_below")
        reason = (f"SLA expired at {_when(exc.due_at)}: routing rule {rule} approves variances under "
                  f"{below} {exc.currency} at expiry")
        res = s.execute(
            update(BillingException)
            .where(BillingException.id == exc.id, BillingException.state == "pending",
                   BillingException.escalated_at.is_(None), BillingException.due_at <= now,
                   BillingException.version == exc.version)
            .values(state="approved", decision="approve", decided_by="system", decided_at=now, reason=reason,
                    version=exc.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return None
        s.refresh(exc)
        _apply(s, exc, "approve", actor="system", reason=reason, key=key, now=now, today=today)
        row = Decision(exception_id=exc.id, decision="approve", actor_id="system", actor_name="billbot (SLA rule)",
                       actor_email=None, reason=reason, decided_at=now, subject_hash=digest)
        s.add(row)
        s.flush()
        entry = audit.record(
            s, key=key, actor="system", action="decision.recorded", subject_type="exception", subject_id=exc.id,
            now=now,
            payload={
                "decision_id": row.id, "exception_id": exc.id, "kind": exc.kind, "decision": "approve",
                "final": True, "approvals": None, "approvals_needed": exc.approvals_needed,
                "actor": {"id": "system", "name": "billbot (SLA rule)", "email": None},
                "at": now.astimezone(UTC).isoformat(), "reason": reason, "subject_sha256": digest,
                "amount": _num(exc.amount), "currency": exc.currency,
                "preinvoice_id": exc.preinvoice_id, "invoice_ids": [],
                "outcome": "auto_approve", "rule": rule, "auto_approve_below": below,
            },
        )
        row.audit_id = entry.id
        notify(s, "exception.decided", exception_id=exc.id, decision_id=row.id)
        return DecisionOutcome(exception_id=exc.id, decision="approve", final=True, approvals=0,
                               approvals_needed=exc.approvals_needed, decision_id=row.id, audit_id=entry.id,
                               subject_hash=digest, actor="system")


# --------------------------------------------------------------------------- the decision


def _refresh_profile(db: Database, actor: str, lookup: ProfileLookup | None, now: datetime) -> None:
    """Cache the actor's Slack name/email in its own short transaction, so the decision transaction
    never waits on a Slack round trip while holding its lock."""
    with db.read() as r:
        user = r.get(User, actor)
        fresh = user is not None and user.profile_fetched_at is not None and (
            now - user.profile_fetched_at).total_seconds() < 86400
    if user is None or (lookup is not None and not fresh):
        with db.transaction() as s:
            ensure_user(s, actor, lookup=lookup, now=now)


REFUSAL_AUDIT_INTERVAL = timedelta(hours=1)


def _refusal_recently_recorded(s: Session, actor: str, now: datetime) -> bool:
    """Refusals of someone with no billbot role are audited once per hour: any member of the
    workspace can click, and their clicks must not grow the signed log without limit. Refusals of
    people with a role (wrong role, own work) are each recorded."""
    user = s.get(User, actor)
    if user is not None and user.role_names:
        return False
    since = now - REFUSAL_AUDIT_INTERVAL
    return s.scalar(select(AuditLog.id).where(
        AuditLog.actor == actor, AuditLog.action == "decision.refused", AuditLog.at > since).limit(1)) is not None


def _record_refusal(
    db: Database, *, exception_id: int, decision: DecisionKind, actor: str, refusal: BillingError,
    key: Ed25519PrivateKey | None, now: datetime,
) -> None:
    with db.transaction() as s:
        if _refusal_recently_recorded(s, actor, now):
            return
        audit.record(s, key=key, actor=actor, action="decision.refused", subject_type="exception",
                     subject_id=exception_id, now=now,
                     payload={"exception_id": exception_id, "decision": decision, "actor": actor,
                              "code": refusal.code, "reason": refusal.message, "at": now.isoformat()})


def _check_stale(exc: BillingException, subject_hash: str) -> str:
    digest = subject_hash_of(exc)
    if subject_hash != digest:
        raise Conflict("This message was out of date (the figures changed since it was posted); "
                       "it has been refreshed, please look again.", code="stale")
    return digest


def preflight(
    db: Database, *, exception_id: int, decision: DecisionKind, actor: str, subject_hash: str,
    signing_key: Ed25519PrivateKey | None, now: datetime | None = None,
    lookup_profile: ProfileLookup | None = None, group_lookup: review.GroupLookup | None = None,
) -> BillingException:
    """The checks of :func:`decide` without deciding — run before a reason modal opens, so a refused
    click is told (and audited) at once instead of after typing a reason."""
    now = now or datetime.now(UTC)
    _refresh_profile(db, actor, lookup_profile, now)
    try:
        with db.read() as s:
            user = s.get(User, actor)
            assert user is not None  # _refresh_profile created it
            exc = access_exception_for_decision(s, user, exception_id, decision, group_lookup=group_lookup)
            _check_stale(exc, subject_hash)
            return exc
    except Refused as refusal:
        _record_refusal(db, exception_id=exception_id, decision=decision, actor=actor, refusal=refusal,
                        key=signing_key, now=now)
        raise


def decide(
    db: Database, *, exception_id: int, decision: DecisionKind, actor: str, subject_hash: str,
    reason: str | None = None, signing_key: Ed25519PrivateKey | None, now: datetime | None = None,
    today: date | None = None, lookup_profile: ProfileLookup | None = None,
    group_lookup: review.GroupLookup | None = None, checked: Sequence[str] = (),
) -> DecisionOutcome:
    """Record ``actor``'s ``decision`` on the exception and move its pre-invoice / items on.

    ``checked``: the checklist items the actor ticked (issue 21); when the exception's checklist
    for ``decision`` has items, every one must be ticked (Invalid ``checklist_incomplete`` names the
    missing ones) and they go into the signed record. ``group_lookup`` asks Slack for the members of
    the routing rule's user group.

    Locking: ONE atomic conditional UPDATE —
    ``UPDATE exceptions SET state=…, version=version+1 WHERE id=:id AND state IN ('pending',
    'escalated') AND version=:v`` — rather than ``SELECT … FOR UPDATE``, because the version guard
    also catches a change made between the click's read and its write (a first approval, a refreshed
    subject) and needs no lock held across the permission checks. On PostgreSQL a concurrent decider
    blocks on the row, re-evaluates the WHERE after the winner commits and matches 0 rows; on SQLite
    the write transaction is ``BEGIN IMMEDIATE`` so deciders queue. rowcount 0 → Conflict naming
    who decided first; nothing of the loser is written.

    Refusals (role, own work) are audited as ``decision.refused`` in a transaction of their own
    and re-raised; conflicts (double click, retry, stale message) change nothing.
    """
    now = now or datetime.now(UTC)
    today = today or now.date()
    reason = (reason or "").strip() or None
    if decision in NEEDS_REASON and reason is None:
        raise Invalid(f"reason: a reason is required to {decision}", code="reason_required")
    _refresh_profile(db, actor, lookup_profile, now)
    try:
        with db.transaction() as s:
            return _decide(s, exception_id=exception_id, decision=decision, actor=actor,
                           subject_hash=subject_hash, reason=reason, key=signing_key, now=now, today=today,
                           group_lookup=group_lookup, checked=checked)
    except Refused as refusal:
        _record_refusal(db, exception_id=exception_id, decision=decision, actor=actor, refusal=refusal,
                        key=signing_key, now=now)
        raise


def _decide(
    s: Session, *, exception_id: int, decision: DecisionKind, actor: str, subject_hash: str, reason: str | None,
    key: Ed25519PrivateKey | None, now: datetime, today: date,
    group_lookup: review.GroupLookup | None = None, checked: Sequence[str] = (),
) -> DecisionOutcome:
    user = ensure_user(s, actor, now=now)
    exc = access_exception_for_decision(s, user, exception_id, decision, group_lookup=group_lookup)
    digest = _check_stale(exc, subject_hash)
    checklist = check_checklist(exc, decision, checked)
    name = display_name(user, actor)

    approvals = valid_approvals(exc)  # approvals of an older subject are dropped, never counted
    if decision == "approve":
        approvals.append({"user": actor, "name": name, "at": now.isoformat(), "subject": digest})
    final = decision != "approve" or len(approvals) >= exc.approvals_needed
    values: dict[str, Any] = {"approvals": approvals, "version": exc.version + 1, "updated_at": now}
    if final:
        values.update(state=DECIDED_STATE[decision], decision=decision, decided_by=actor, decided_at=now,
                      reason=reason)
    result = s.execute(
        update(BillingException)
        .where(BillingException.id == exc.id,
               BillingException.state.in_(OPEN_EXCEPTION_STATES),
               BillingException.version == exc.version)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        winner = s.execute(
            select(BillingException).where(BillingException.id == exc.id)
            .execution_options(populate_existing=True)
        ).scalar_one()
        if winner.state in OPEN_EXCEPTION_STATES:
            raise Conflict("Someone recorded an approval at the same moment; please look again.",
                           code="concurrent_approval")
        raise Conflict(already_decided_message(winner), code="already_decided")
    s.refresh(exc)

    invoice_ids: tuple[int, ...] = ()
    if final and manual_invoices.is_cancel_request(exc):  # maker-checker: the checker cancels it, or not
        manual_invoices.decide_cancel(s, exc, decision, actor=actor, reason=reason, key=key, now=now)
    elif final:
        invoice_ids = _apply(s, exc, decision, actor=actor, reason=reason, key=key, now=now, today=today)

    row = Decision(exception_id=exc.id, decision=decision, actor_id=actor, actor_name=name,
                   actor_email=user.email, reason=reason, decided_at=now, subject_hash=digest)
    s.add(row)
    s.flush()
    pi = exc.preinvoice
    entry = audit.record(
        s, key=key, actor=actor, action="decision.recorded", subject_type="exception", subject_id=exc.id,
        now=now,
        payload={
            "decision_id": row.id, "exception_id": exc.id, "kind": exc.kind, "decision": decision,
            "final": final, "approvals": len(approvals) if decision == "approve" else None,
            "approvals_needed": exc.approvals_needed,
            "actor": {"id": actor, "name": name, "email": user.email},
            "at": now.astimezone(UTC).isoformat(), "reason": reason, "subject_sha256": digest,
            "amount": _num(exc.amount), "currency": exc.currency,
            "preinvoice_id": pi.id if pi is not None else None, "invoice_ids": list(invoice_ids),
            **_review_payload(exc, checklist),
        },
    )
    row.audit_id = entry.id
    notify(s, "exception.decided", exception_id=exc.id, decision_id=row.id)
    if invoice_ids:
        notify(s, "exception.invoiced", exception_id=exc.id, invoice_ids=list(invoice_ids))
    return DecisionOutcome(
        exception_id=exc.id, decision=decision, final=final,
        approvals=len(approvals), approvals_needed=exc.approvals_needed, decision_id=row.id,
        audit_id=entry.id, subject_hash=digest, actor=actor, invoice_ids=invoice_ids,
    )


# --------------------------------------------------------------------------- queries for the surfaces


def may_decide(s: Session, user: User, exc: BillingException) -> list[DecisionKind]:
    """Which decisions ``user`` could take on ``exc`` now (for the App Home queue)."""
    allowed: list[DecisionKind] = []
    # a routing rule naming only a Slack user group: its membership is asked of Slack at the click, not
    # for every row of a queue, so the queue lists it for every approver (listed users are checked here)
    def member_of_unlisted_group(_group: str) -> set[str]:
        return {user.slack_id}

    for d in DECISIONS:
        try:
            access_exception_for_decision(s, user, exc.id, d, explain=False,
                                          group_lookup=member_of_unlisted_group)
        except BillingError:
            continue
        allowed.append(d)
    return allowed


def queue_for(s: Session, user: User, *, limit: int = 20) -> list[BillingException]:
    """Open exceptions ``user`` may decide, oldest first."""
    rows = s.execute(
        select(BillingException)
        .where(BillingException.state.in_(OPEN_EXCEPTION_STATES))
        .order_by(BillingException.created_at, BillingException.id)
    ).scalars()
    out = []
    for exc in rows:
        if may_decide(s, user, exc):
            out.append(exc)
        if len(out) >= limit:
            break
    return out


def recent_decisions(s: Session, slack_id: str, *, limit: int = 10) -> list[Decision]:
    return list(s.execute(
        select(Decision).where(Decision.actor_id == slack_id)
        .order_by(Decision.decided_at.desc(), Decision.id.desc()).limit(limit)
    ).scalars())
